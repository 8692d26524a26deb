"""The step tracker on the call patterns real samplers produce."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smoothcache_core import StepTracker


def run(timesteps: list[float]) -> tuple[list[tuple[int, int]], list[int]]:
    """(step, branch) of every evaluation, and the previous-generation lengths reported."""
    starts: list[int] = []
    tracker = StepTracker(starts.append)
    coordinates = []
    for t in timesteps:
        tracker.observe(t)
        coordinates.append((tracker.step, tracker.branch))
    return coordinates, starts


def test_split_cfg_is_two_branches_per_step():
    coordinates, _ = run([999, 999, 500, 500, 1, 1])
    assert coordinates == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]


def test_heun_repeats_a_sigma_across_steps_without_becoming_a_branch():
    # k-diffusion Heun: s0, s1 | s1, s2 | s2 (last step is Euler)
    coordinates, _ = run([1.0, 0.5, 0.5, 0.2, 0.2])
    assert coordinates == [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)]


def test_heun_with_split_cfg():
    coordinates, _ = run([1.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    assert coordinates == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]


def test_new_generation_when_the_timestep_goes_back_up():
    coordinates, starts = run([900, 600, 300, 900, 600])
    assert coordinates == [(0, 0), (1, 0), (2, 0), (0, 0), (1, 0)]
    assert starts == [0, 3]


def test_increasing_timesteps_are_a_direction_too():
    coordinates, starts = run([0.0, 0.5, 1.0, 0.0, 0.5])
    assert coordinates == [(0, 0), (1, 0), (2, 0), (0, 0), (1, 0)]
    assert starts == [0, 3]


def test_reset_starts_a_new_generation_without_judging_the_old_one():
    starts: list[int] = []
    tracker = StepTracker(starts.append)
    for t in (900, 600):
        tracker.observe(t)
    tracker.reset()
    assert tracker.step == -1
    tracker.observe(300)  # lower than before, still a new generation after reset
    assert (tracker.step, tracker.branch, starts) == (0, 0, [0, 0])


@given(
    steps=st.integers(2, 30),
    branches=st.integers(1, 3),
    generations=st.integers(1, 3),
    descending=st.booleans(),
)
def test_every_evaluation_gets_its_step_and_branch(steps, branches, generations, descending):
    grid = [float(i) for i in range(steps)]
    if descending:
        grid.reverse()
    calls = [t for _ in range(generations) for t in grid for _ in range(branches)]
    coordinates, starts = run(calls)
    expected = [(s, b) for _ in range(generations) for s in range(steps) for b in range(branches)]
    assert coordinates == expected
    assert starts == [0] + [steps] * (generations - 1)
