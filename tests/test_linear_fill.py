"""The linear fill: skipped steps extend the line through the last two computed values of a component."""

from __future__ import annotations

import pytest
import torch

import smoothcache
from helpers import assert_pristine
from smoothcache import ProfileError, Schedule, ScheduleError
from smoothcache_core.fills import extrapolate
from smoothcache_core.schedule import _fill_weights, _keep_flags

STEPS = 8


def generate(pipe, seed: int = 0):
    return lambda: pipe(class_labels=[1, 2], num_inference_steps=STEPS, generator=torch.manual_seed(seed), output_type="pt").images


def test_ratios_and_kept_values_follow_the_table():
    flags = (True, True, False, False, True, False, True, True)
    # steps 2 and 3 extend the line through 0 and 1 by 1 and 2 spacings; step 5 through 1 and 4 by 1/3
    assert _fill_weights(flags, 2) == (None, None, (-1.0, 2.0), (-2.0, 3.0), None, pytest.approx((-1 / 3, 4 / 3)), None, None)
    assert _fill_weights((True, False, True), 2) == (None, None, None)  # one value computed: plain reuse
    assert _fill_weights(flags, 1) == (None,) * len(flags)
    # the parabola through 0, 1 and 4 at step 5 (the line where only two are computed)
    assert _fill_weights(flags, 3)[:4] == _fill_weights(flags, 2)[:4]
    assert _fill_weights(flags, 3)[5] == pytest.approx((4 * 1 / (-1 * -4), 5 * 1 / (1 * -3), 5 * 4 / (4 * 3)))
    # reuse keeps a value while the next step skips; linear also keeps the one before the last compute
    assert _keep_flags(flags, 1) == (False, True, True, False, True, False, False, False)
    assert _keep_flags(flags, 2) == (True, True, True, True, True, False, False, False)


def test_extrapolate_works_on_tensors_and_structures_and_leaves_the_rest():
    last, before = torch.tensor([3.0, 5.0]), torch.tensor([1.0, 4.0])
    half = (-0.5, 1.5)  # half a spacing past the last value
    assert torch.equal(extrapolate([before, last], half), torch.tensor([4.0, 5.5]))
    pair = extrapolate([(before, "tag"), (last, "tag")], (-1.0, 2.0))
    assert torch.equal(pair[0], torch.tensor([5.0, 6.0])) and pair[1] == "tag"
    assert extrapolate([torch.zeros(3), last], half) is last  # shapes differ: reuse
    assert extrapolate([torch.tensor([0, 0]), torch.tensor([1, 2])], half).tolist() == [1, 2]  # integers: reuse
    buffer = torch.empty(2)
    assert extrapolate([before, last], half, buffer) is buffer and torch.equal(buffer, torch.tensor([4.0, 5.5]))
    assert extrapolate([before, last], half, torch.empty(3)).shape == (2,)  # a buffer that does not fit: a new tensor
    # three values of t**2 at t = 0, 1, 2: the parabola gives 9 at t = 3 (the line would give 7)
    squares = [torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([4.0])]
    weights = (1.0, -3.0, 3.0)
    assert extrapolate(squares, weights).item() == 9.0
    buffer = torch.empty(1)
    assert extrapolate(squares, weights, buffer) is buffer and buffer.item() == 9.0 and squares[2].item() == 4.0
    leaf = last.clone().requires_grad_()
    filled = extrapolate([before, leaf], half, torch.empty(2))  # recording a graph: a new tensor, gradients flow
    filled.sum().backward()
    assert torch.equal(leaf.grad, torch.full((2,), 1.5))
    leaf = squares[2].clone().requires_grad_()
    extrapolate([*squares[:2], leaf], weights, torch.empty(1)).sum().backward()
    assert leaf.grad.item() == 3.0


def test_schedule_fill_round_trips_and_defaults_to_reuse(tmp_path):
    schedule = Schedule.fora(STEPS, 2, ["attn1", "ff"], fill="linear")
    path = tmp_path / "linear.json"
    schedule.save(path)
    assert Schedule.load(path).fill == "linear" and Schedule.load(path).resample(12).fill == "linear"
    assert "fill" not in Schedule.fora(STEPS, 2, ["attn1"]).to_dict()  # reuse files read as before
    assert Schedule.from_dict(Schedule.fora(STEPS, 2, ["attn1"]).to_dict()).fill == "reuse"
    with pytest.raises(ScheduleError, match="fill must be one of"):
        Schedule({"attn1": [1, 0, 1]}, {}, "cubic")


def test_linear_fill_extends_the_line_on_a_real_pipeline(dit_pipe):
    model = dit_pipe.transformer
    reference = generate(dit_pipe)()
    with smoothcache.wrap(dit_pipe, schedule=Schedule({"attn1": [1] * STEPS}, {}, "linear")):
        assert torch.equal(generate(dit_pipe)(), reference)  # nothing skipped: bit-identical

    table = [1, 1, 0, 0, 1, 0, 1, 1]
    schedule = Schedule({"attn1": table, "ff": table}, {}, "linear")
    seen: list[torch.Tensor] = []
    storage: list[int] = []

    def record(_module, _args, output):
        seen.append(output.clone())
        storage.append(output.data_ptr())

    hook = model.transformer_blocks[0].attn1.register_forward_hook(record)
    try:
        with smoothcache.wrap(dit_pipe, schedule=schedule) as handle:
            cached = generate(dit_pipe)()
            stats = handle.stats()
    finally:
        hook.remove()
    assert stats["reused"] == 3 * 2 * 2 and stats["cache_bytes"] == 0  # 3 steps x 2 types x 2 blocks; freed at the end
    assert len(seen) == STEPS
    torch.testing.assert_close(seen[2], seen[1] + (seen[1] - seen[0]))
    torch.testing.assert_close(seen[3], seen[1] + 2 * (seen[1] - seen[0]))
    torch.testing.assert_close(seen[5], seen[4] + (seen[4] - seen[1]) / 3)
    assert storage[2] == storage[3] == storage[5]  # every filled step writes one buffer: no allocation
    with smoothcache.wrap(dit_pipe, schedule=Schedule({"attn1": table, "ff": table})):
        reused = generate(dit_pipe)()
    assert torch.isfinite(cached).all() and not torch.equal(cached, reused) and not torch.equal(cached, reference)
    assert_pristine(model)


def test_quadratic_fill_extends_the_parabola_on_a_real_pipeline(dit_pipe):
    model = dit_pipe.transformer
    reference = generate(dit_pipe)()
    with smoothcache.wrap(dit_pipe, schedule=Schedule({"attn1": [1] * STEPS}, {}, "quadratic")):
        assert torch.equal(generate(dit_pipe)(), reference)  # nothing skipped: bit-identical

    table = [1, 0, 1, 0, 1, 0, 0, 1]  # step 1 reuses, step 3 takes the line, steps 5 and 6 the parabola
    seen: list[torch.Tensor] = []
    hook = model.transformer_blocks[0].attn1.register_forward_hook(lambda _module, _args, output: seen.append(output.clone()))
    try:
        with smoothcache.wrap(dit_pipe, schedule=Schedule({"attn1": table, "ff": table}, {}, "quadratic")) as handle:
            cached = generate(dit_pipe)()
            stats = handle.stats()
    finally:
        hook.remove()
    assert stats["reused"] == 4 * 2 * 2 and stats["cache_bytes"] == 0
    torch.testing.assert_close(seen[1], seen[0])
    torch.testing.assert_close(seen[3], 1.5 * seen[2] - 0.5 * seen[0])
    # through (0, v0), (2, v2), (4, v4) at 5 and 6: Lagrange weights (3/8, -5/4, 15/8) and (1, -3, 3)
    torch.testing.assert_close(seen[5], 0.375 * seen[0] - 1.25 * seen[2] + 1.875 * seen[4])
    torch.testing.assert_close(seen[6], seen[0] - 3 * seen[2] + 3 * seen[4])
    with smoothcache.wrap(dit_pipe, schedule=Schedule({"attn1": table, "ff": table}, {}, "linear")):
        linear = generate(dit_pipe)()
    assert torch.isfinite(cached).all() and not torch.equal(cached, linear) and not torch.equal(cached, reference)
    assert_pristine(model)


def test_probes_record_their_fill_and_runs_schedules_fill_the_same_way(dit_pipe):
    profile = smoothcache.calibrate(dit_pipe, generate(dit_pipe))
    linear = smoothcache.probe(dit_pipe, profile, generate(dit_pipe), probes=3, run_lengths=2, fill="linear")
    assert linear.probe_fill == "linear" and profile.probe_fill == "reuse"
    schedule = linear.schedule(macs=0.7, method="runs")
    assert schedule.fill == "linear" and schedule.provenance["fill"] == "linear"
    assert linear.schedule(macs=0.7).fill == "reuse" and linear.schedule(macs=0.7, fill="linear").fill == "linear"
    with pytest.raises(ScheduleError, match="measured with the 'linear' fill"):
        linear.schedule(macs=0.7, method="runs", fill="reuse")
    reuse = smoothcache.probe(dit_pipe, profile, generate(dit_pipe), probes=3, run_lengths=2)
    with pytest.raises(ProfileError, match="'linear' fill and these with 'reuse'"):
        linear.merge(reuse)
    assert smoothcache.ErrorProfile.from_bytes(linear.to_bytes()).probe_fill == "linear"


def test_the_half_precision_parabola_accumulates_in_float32():
    """Through (0, -40000), (1, 40000), (2, 40000) the parabola gives -40000 at 3, which float16 holds;
    its partial sums do not (-40000 - 3 * 40000), so they are kept in float32 and cast once."""
    for dtype in (torch.float16, torch.bfloat16):
        values = [torch.full((3,), v, dtype=dtype) for v in (-40000.0, 40000.0, 40000.0)]
        filled = extrapolate(values, (1.0, -3.0, 3.0), torch.empty(3, dtype=dtype))
        assert filled.dtype == dtype and torch.isfinite(filled).all()
        assert torch.equal(filled, torch.full((3,), -40000.0, dtype=dtype))


class _Steps(torch.nn.Module):
    """``proj(x)`` added to ``x``; the timestep is ``t``."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x, t):
        return x + self.proj(x)


def test_a_fill_after_a_refresh_goes_through_the_steps_really_computed():
    """The batch changes at a skipped step (1), which computes instead; the next fill (step 3) takes
    the line through the values of steps 1 and 2, not the weights planned for steps 0 and 2."""
    from helpers import ProjAdapter

    model = _Steps().eval()
    seen: list[torch.Tensor] = []
    hook = model.proj.register_forward_hook(lambda _m, _a, output: seen.append(output.clone()))
    table = [1, 0, 1, 0, 1, 1]
    inputs = [torch.randn(2 if step == 0 else 1, 4, generator=torch.Generator().manual_seed(step)) for step in range(len(table))]
    try:
        with smoothcache.wrap(model, adapter=ProjAdapter(_Steps), schedule=Schedule({"proj": table}, {}, "linear")) as handle:
            with torch.no_grad():
                for step, x in enumerate(inputs):
                    model(x, torch.tensor(float(900 - 100 * step)))
            assert handle.stats()["refreshed"] == 1
    finally:
        hook.remove()
    torch.testing.assert_close(seen[3], 2 * seen[2] - seen[1])  # steps 1 and 2, one spacing on
