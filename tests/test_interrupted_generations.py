"""Every way a generation can stop early leaves nothing behind: the next one equals a fresh one.

A generation stops early through an exception or ``KeyboardInterrupt`` inside a component, between
steps (the scheduler or a callback), or by a loop that is simply abandoned (a preview). Guidance runs
as one batch or as two calls per step, conditional or unconditional first. Where the calls alone
cannot tell an abandoned generation from the next one, the engine computes instead of reusing and
counts it in ``stats()["ambiguous"]``.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from test_dit_pipeline import ATTN, FF, STEPS, generate

import smoothcache
from helpers import assert_pristine
from smoothcache.reference.pipelines import dit_transformer

SCHEDULE = {"attn1": ATTN, "ff": FF}
NULL = 1000  # the tiny DiT's unconditional class


class Stop(Exception):
    """Raised by the tests where a user's code would fail."""


def raising(exception: type[BaseException], at: int):
    """A forward hook that raises ``exception`` at the ``at``-th call of its module (1-based)."""
    calls = [0]

    def hook(_module, _args, _output):
        calls[0] += 1
        if calls[0] == at:
            raise exception("stopped")

    return hook


def sample(
    model,
    label: int,
    seed: int,
    guidance: str = "batch",
    stop_after: int | None = None,
    raise_after: int | None = None,
    exception: type[BaseException] = Stop,
    rebuild=None,
) -> torch.Tensor:
    """DDIM with guidance as one batch (``"batch"``) or two calls per step (``"cond-first"``,
    ``"uncond-first"``); ``stop_after=n`` abandons the loop after n steps, ``raise_after=n`` raises
    between step n and the next; ``rebuild()`` gives the batch's class labels anew at every step."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler()
    scheduler.set_timesteps(STEPS)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(seed))
    cond, null = torch.tensor([label]), torch.tensor([NULL])
    both = torch.cat([cond, null])  # the conditioning of every step, built once as pipelines do
    with torch.no_grad():
        for step, t in enumerate(scheduler.timesteps):
            if step == stop_after:
                break
            if step == raise_after:
                raise exception("stopped between steps")
            if guidance == "batch":
                labels = both if rebuild is None else rebuild()
                out = model(torch.cat([latents, latents]), timestep=t.expand(2), class_labels=labels).sample
                eps_c, eps_u = out[:, :4].chunk(2)
            else:
                order = (cond, null) if guidance == "cond-first" else (null, cond)
                first, second = (model(latents, timestep=t.expand(1), class_labels=c).sample[:, :4] for c in order)
                eps_c, eps_u = (first, second) if guidance == "cond-first" else (second, first)
            latents = scheduler.step(eps_u + 4.0 * (eps_c - eps_u), t, latents).prev_sample
    return latents


GUIDANCE = ["batch", "cond-first", "uncond-first"]


def calls_per_step(guidance: str) -> int:
    return 1 if guidance == "batch" else 2


@pytest.fixture(scope="module")
def model():
    return dit_transformer("tiny")


@pytest.fixture(scope="module")
def fresh(model):
    """A generation (label 3, seed 4) on a freshly wrapped model, per guidance mode."""
    results = {}
    for guidance in GUIDANCE:
        with smoothcache.wrap(model, schedule=SCHEDULE):
            results[guidance] = sample(model, 3, 4, guidance)
    return results


@pytest.mark.parametrize("exception", [Stop, KeyboardInterrupt])
@pytest.mark.parametrize(
    ("guidance", "at"),
    [("batch", 1), ("batch", 2), ("batch", 5), ("cond-first", 2), ("uncond-first", 3)],  # split: 2 calls per step
)
def test_an_exception_inside_a_component_leaves_no_stale_state(model, fresh, guidance, exception, at):
    hook = model.transformer_blocks[1].ff.register_forward_hook(raising(exception, at))
    try:
        with smoothcache.wrap(model, schedule=SCHEDULE) as handle:
            with pytest.raises(exception):
                sample(model, 7, 0, guidance)
            hook.remove()
            after = sample(model, 3, 4, guidance)
            assert handle.stats()["interrupted"] == (1 if exception is KeyboardInterrupt else 0)
    finally:
        hook.remove()
    assert torch.equal(after, fresh[guidance])
    assert_pristine(model)


@pytest.mark.parametrize("guidance", GUIDANCE)
@pytest.mark.parametrize("exception", [Stop, KeyboardInterrupt])
@pytest.mark.parametrize("steps", [1, 3])
def test_an_exception_between_steps_leaves_no_stale_state(model, fresh, guidance, exception, steps):
    with smoothcache.wrap(model, schedule=SCHEDULE):
        with pytest.raises(exception):
            sample(model, 7, 0, guidance, raise_after=steps, exception=exception)
        assert torch.equal(sample(model, 3, 4, guidance), fresh[guidance])


@pytest.mark.parametrize("guidance", GUIDANCE)
@pytest.mark.parametrize("steps", [1, 2, 4])
def test_an_abandoned_loop_leaves_no_stale_state(model, fresh, guidance, steps):
    with smoothcache.wrap(model, schedule=SCHEDULE) as handle:
        sample(model, 7, 0, guidance, stop_after=steps)
        assert torch.equal(sample(model, 3, 4, guidance), fresh[guidance])
        assert handle.stats()["ambiguous"] == 0


def test_an_abandoned_loop_after_half_a_step_leaves_no_stale_state(model, fresh):
    """Split guidance stopped between its two calls: the next generation's first call is a new latent."""
    with smoothcache.wrap(model, schedule=SCHEDULE):
        hook = model.register_forward_hook(raising(Stop, 1))
        try:
            with pytest.raises(Stop):
                sample(model, 7, 0, "cond-first")
        finally:
            hook.remove()
        assert torch.equal(sample(model, 3, 4, "cond-first"), fresh["cond-first"])


def first_reuse_computed(schedule: dict[str, list[int]]) -> dict[str, list[int]]:
    """``schedule`` with step 1 computed: what a generation whose start was ambiguous runs."""
    return {key: [table[0], 1, *table[2:]] for key, table in schedule.items()}


def test_same_seed_other_conditioning_after_an_abandoned_first_step_is_resolved_safely(model):
    """The same latents at the same first timestep: a second guidance branch, or a new generation after
    a one-step preview. Only the conditioning can tell, at the first reuse: it differs, so the
    generation computes there instead of reusing the preview's value."""
    with smoothcache.wrap(model, schedule=first_reuse_computed(SCHEDULE)):
        expected = sample(model, 3, 0)
    with smoothcache.wrap(model, schedule=SCHEDULE) as handle:
        sample(model, 7, 0, stop_after=1)
        after = sample(model, 3, 0)
        assert handle.stats()["ambiguous"] == 1
    assert torch.equal(after, expected)


@pytest.mark.parametrize("guidance", ["cond-first", "uncond-first"])
def test_split_guidance_after_an_abandoned_first_step_recomputes_the_first_reuse(model, guidance):
    """Same seed, another class: both calls of the next generation look like more branches of the
    preview's first step. At the first reuse, neither branch's conditioning is the very tensors
    that branch had at the first step, so neither may reuse the preview's value: both compute."""
    with smoothcache.wrap(model, schedule=SCHEDULE) as handle:
        sample(model, 7, 0, guidance, stop_after=1)
        handle.reset()  # count the second generation alone; reset() keeps nothing else
        sample(model, 3, 0, guidance)
        assert handle.stats()["refreshed"] == 0  # reset() ended the preview: nothing ambiguous
    with smoothcache.wrap(model, schedule=SCHEDULE) as handle:
        sample(model, 7, 0, guidance, stop_after=1)
        after = sample(model, 3, 0, guidance)
        stats = handle.stats()
    reused_at_step_1 = sum(1 for table in (ATTN, FF) if table[1] == 0) * 2  # per branch, two blocks
    assert stats["ambiguous"] == 1
    assert stats["refreshed"] == 2 * reused_at_step_1  # both branches
    assert torch.isfinite(after).all()


def test_same_inputs_after_an_abandoned_first_step_compute_where_the_reuse_is_in_doubt(model):
    """The same latents and conditioning values after a one-step preview: equal values do not say
    the calls belong to one generation, so the first reuse computes, and the output is that of a
    fresh generation computing there."""
    with smoothcache.wrap(model, schedule=first_reuse_computed(SCHEDULE)):
        expected = sample(model, 3, 0, "cond-first")
    with smoothcache.wrap(model, schedule=SCHEDULE) as handle:
        sample(model, 3, 0, "cond-first", stop_after=1)
        assert torch.equal(sample(model, 3, 0, "cond-first"), expected)
        assert handle.stats()["ambiguous"] == 1


def test_conditioning_built_anew_at_every_step_computes_the_first_reuse_every_time(model):
    """A loop that builds its conditioning anew at every step gives no sign that its second call
    continues its first: the first reuse computes, in every generation alike (no history)."""

    def rebuild() -> torch.Tensor:
        return torch.cat([torch.tensor([3]), torch.tensor([NULL])])

    with smoothcache.wrap(model, schedule=first_reuse_computed(SCHEDULE)):
        expected = sample(model, 3, 4, rebuild=rebuild)
    with smoothcache.wrap(model, schedule=SCHEDULE) as handle:
        outputs = [sample(model, 3, 4, rebuild=rebuild) for _ in range(2)]
        assert handle.stats()["ambiguous"] == 2
    assert torch.equal(outputs[0], expected) and torch.equal(outputs[1], expected)


def _loop(model, label: int, seed: int, steps: int, stop_after: int | None = None, offset: int = 0) -> torch.Tensor:
    """DDIM at ``steps`` steps (its timesteps moved down by ``offset``), guidance as one batch whose
    labels are built once; ``stop_after=n`` abandons it after n steps."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler()
    scheduler.set_timesteps(steps)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(seed))
    labels = torch.tensor([label, NULL])
    with torch.no_grad():
        for step, t in enumerate(scheduler.timesteps):
            if step == stop_after:
                break
            out = model(torch.cat([latents, latents]), timestep=(t - offset).expand(2), class_labels=labels).sample[:, :4]
            eps_c, eps_u = out.chunk(2)
            latents = scheduler.step(eps_u + 4.0 * (eps_c - eps_u), t, latents).prev_sample
    return latents


def test_a_loop_abandoned_after_one_evaluation_never_lends_its_values_to_the_next_one_starting_lower(model):
    """The next generation starts below the abandoned one's first timestep and continues its
    direction: the timesteps read as one generation. Its first evaluation may not reuse (it cannot
    be told from the abandoned one's second step), so nothing of the abandoned loop is reused; the
    rest runs as scheduled one step on, and an evaluation beyond the schedule computes, with a warning."""
    table = [1, 0, 1, 0, 1, 0]  # reuses at the second step: the abandoned loop's value would be taken there
    five = [1, *table[2:]]  # a 5-step generation, merged: its first computed, then the schedule one step on
    six = [1, *table[2:], 1]  # a 6-step one: the same, and its last evaluation is one beyond the schedule
    expected = {}
    for steps, shifted in ((5, five), (STEPS, six)):
        with smoothcache.wrap(model, schedule={"attn1": shifted, "ff": shifted}):
            expected[steps] = _loop(model, 3, 4, steps, offset=10)
    for steps in (5, STEPS):
        with smoothcache.wrap(model, schedule={"attn1": table, "ff": table}) as handle:
            _loop(model, 7, 0, STEPS, stop_after=1)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                merged = _loop(model, 3, 4, steps, offset=10)
            assert handle.stats()["ambiguous"] == 1
        assert torch.equal(merged, expected[steps])
        assert any("ended an abandoned generation" in str(w.message) for w in caught) == (steps == STEPS)


def test_a_generation_leaving_the_grid_it_started_on_starts_anew(model):
    """After a finished generation, one abandoned part-way on the same grid, then a generation whose
    timesteps lie below the abandoned one's last: it leaves the grid, so it is a new generation,
    exactly as it runs alone."""
    with smoothcache.wrap(model, schedule=SCHEDULE):
        alone = _loop(model, 3, 4, STEPS, offset=300)
    with smoothcache.wrap(model, schedule=SCHEDULE) as handle:
        _loop(model, 5, 1, STEPS)
        _loop(model, 7, 0, STEPS, stop_after=2)
        with pytest.warns(UserWarning, match="ran 2 model evaluations"):
            after = _loop(model, 3, 4, STEPS, offset=300)
        assert handle.stats()["ambiguous"] == 0
    assert torch.equal(after, alone)


@pytest.mark.parametrize("guidance", ["cond-first", "uncond-first"])
def test_split_guidance_reuses_as_scheduled_from_the_first_generation(model, guidance):
    """Two calls per step is not ambiguous when their conditioning stays the same tensors."""
    with smoothcache.wrap(model, schedule=SCHEDULE) as handle:
        sample(model, 3, 0, guidance)
        stats = handle.stats()
    scheduled = sum(1 for table in (ATTN, FF) for value in table if value == 0)
    assert stats["reused"] == 2 * 2 * scheduled  # two branches, two blocks
    assert stats["ambiguous"] == stats["refreshed"] == 0


# -- wrap(pipe): the scheduler's set_timesteps marks every generation's start ----------------------


def failing_step(scheduler, exception: type[BaseException], at: int):
    """Make ``scheduler.step`` raise at its ``at``-th call; returns how to restore it."""
    original, calls = scheduler.step, [0]

    def step(*args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            raise exception("scheduler failed")
        return original(*args, **kwargs)

    scheduler.step = step
    return lambda: vars(scheduler).pop("step")


@pytest.mark.parametrize("wrapped", ["pipe", "pipe.transformer"])
@pytest.mark.parametrize("exception", [Stop, KeyboardInterrupt])
@pytest.mark.parametrize("at", [1, 3])
def test_a_pipeline_stopped_in_its_scheduler_leaves_no_stale_state(dit_pipe, wrapped, exception, at):
    with smoothcache.wrap(dit_pipe, schedule=SCHEDULE):
        fresh = generate(dit_pipe, 4, labels=(3, 5))
    target = dit_pipe if wrapped == "pipe" else dit_pipe.transformer
    with smoothcache.wrap(target, schedule=SCHEDULE):
        restore = failing_step(dit_pipe.scheduler, exception, at)
        try:
            with pytest.raises(exception):
                generate(dit_pipe, 0, labels=(7, 8))
        finally:
            restore()
        assert torch.equal(generate(dit_pipe, 4, labels=(3, 5)), fresh)
    assert_pristine(dit_pipe.transformer)


@pytest.mark.parametrize("wrapped", ["pipe", "pipe.transformer"])
@pytest.mark.parametrize("at", [1, 3])
def test_a_pipeline_interrupted_inside_a_component_leaves_no_stale_state(dit_pipe, wrapped, at):
    with smoothcache.wrap(dit_pipe, schedule=SCHEDULE):
        fresh = generate(dit_pipe, 4, labels=(3, 5))
    target = dit_pipe if wrapped == "pipe" else dit_pipe.transformer
    hook = dit_pipe.transformer.transformer_blocks[0].attn1.register_forward_hook(raising(KeyboardInterrupt, at))
    with smoothcache.wrap(target, schedule=SCHEDULE):
        try:
            with pytest.raises(KeyboardInterrupt):
                generate(dit_pipe, 0, labels=(7, 8))
        finally:
            hook.remove()
        assert torch.equal(generate(dit_pipe, 4, labels=(3, 5)), fresh)


def test_sync_free_after_an_interrupted_component_starts_a_new_generation(model, fresh):
    with smoothcache.wrap(model, schedule=SCHEDULE, sync_free=True):
        expected = sample(model, 3, 4)
    hook = model.transformer_blocks[0].attn1.register_forward_hook(raising(KeyboardInterrupt, 3))
    with smoothcache.wrap(model, schedule=SCHEDULE, sync_free=True) as handle:
        try:
            with pytest.raises(KeyboardInterrupt):
                sample(model, 7, 0)
        finally:
            hook.remove()
        assert torch.equal(sample(model, 3, 4), expected)
        assert handle.stats()["interrupted"] == 1
    assert torch.equal(expected, fresh["batch"])


class _Unconditional(torch.nn.Module):
    """A denoiser without conditioning: ``forward(x, t)``."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.proj(x) * (t / 1000)


def test_without_conditioning_the_latent_tells_a_next_step_from_other_noise():
    """No conditioning tensors: at the second step the latent moved by the sampler's step (the same
    generation, reused as scheduled) or was replaced by other noise (a new generation after an
    abandoned one, starting lower: it computes)."""
    from helpers import ProjAdapter

    model = _Unconditional().eval()
    table = [1, 0, 1, 1]

    def loop(seed: int, timesteps: list[int]) -> torch.Tensor:
        x = torch.randn(2, 4, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            for t in timesteps:
                x = x - 0.05 * model(x, torch.tensor(float(t)))
        return x

    with smoothcache.wrap(model, adapter=ProjAdapter(_Unconditional), schedule={"proj": table}) as handle:
        loop(0, [900, 700, 500, 300])
        assert handle.stats()["reused"] == 1 and handle.stats()["ambiguous"] == 0
    with smoothcache.wrap(model, adapter=ProjAdapter(_Unconditional), schedule={"proj": [1, 1, 1, 1]}):
        expected = loop(1, [800, 600, 400])
    with smoothcache.wrap(model, adapter=ProjAdapter(_Unconditional), schedule={"proj": table}) as handle:
        loop(0, [900])  # abandoned after one evaluation
        assert torch.equal(loop(1, [800, 600, 400]), expected)  # its first evaluation computed, the rest as scheduled
        assert handle.stats()["ambiguous"] == 1
