"""Every transformer class the installed diffusers exports, built tiny, through a short denoising loop.

For each class (or each configuration users run): the adapter is detected; nothing skipped is
bit-identical to the unwrapped model; a calibrated schedule reuses, skips measured MACs and gives a
finite, changed output; unwrap restores the model exactly; the same with whole blocks cached
(``unit="block"``); and one block per family compiles with ``fullgraph=True``. A class without a
case, or a case without an adapter or a stated reason, fails.

With ``SMOOTHCACHE_ZOO_RESULTS=folder`` the results are written to ``folder/models.json`` for the
support matrix (``python scripts/support_matrix.py``).
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from pathlib import Path

import pytest
import torch

import smoothcache
from helpers import assert_pristine
from smoothcache.builtin.families import FAMILIES
from smoothcache.reference.zoo import ZooCase, all_cases, build, denoise

STEPS = 6
RESULTS: dict[str, dict] = {}
#: The adapter each class is served by: its family row, or the adapters with their own file.
EXPECTED = {name: row.name for row in FAMILIES for name in row.classes} | {
    "DiTTransformer2DModel": "dit",
    "StableAudioDiTModel": "stable-audio",
    "StableAudio3DiTModel": "stable-audio",
}
CASES = all_cases()
SERVED = [case for case in CASES if case.reason is None]


def exported_transformer_classes() -> list[str]:
    """Every ``ModelMixin`` class diffusers exports from its transformers package."""
    import diffusers
    from diffusers import ModelMixin

    names = []
    for name in dir(diffusers):
        try:
            value = getattr(diffusers, name)
        except Exception:  # a lazily imported class whose optional dependency is missing
            continue
        if inspect.isclass(value) and issubclass(value, ModelMixin) and value.__module__.startswith("diffusers.models.transformers"):
            names.append(name)
    return sorted(names)


def test_every_exported_transformer_class_has_a_case_or_a_reason():
    covered = {case.cls for case in CASES}
    missing = sorted(set(exported_transformer_classes()) - covered)
    assert not missing, f"diffusers exports classes the zoo does not know: {missing}; add a ZooCase (or a reason) and a family row"


def test_every_served_class_has_an_adapter_row():
    assert not sorted({case.cls for case in SERVED} - set(EXPECTED)), "a served case without a family row"


def test_at_least_nine_in_ten_classes_that_run_here_are_served():
    runnable = {case.cls for case in CASES if case.reason is None or "CPU" not in case.reason}
    served = {case.cls for case in SERVED}
    assert len(served) >= 0.9 * len(runnable), (len(served), len(runnable))


def _record(case: ZooCase, **fields) -> None:
    RESULTS.setdefault(case.name, {"class": case.cls, "variant": case.variant, "family": case.family, "modality": case.modality}).update(
        fields
    )


def _changed(a, b) -> bool:
    if isinstance(a, (list, tuple)):
        return any(_changed(x, y) for x, y in zip(a, b, strict=False))
    return not torch.equal(a, b)


def _finite(value) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_finite(item) for item in value)
    return bool(torch.isfinite(value.float()).all())


def _equal(a, b) -> bool:
    return not _changed(a, b)


@pytest.mark.parametrize("case", SERVED, ids=lambda case: case.name)
def test_zoo_model_is_detected_exact_cached_and_restored(case):
    model = build(case)
    reference = denoise(model, case, STEPS)

    with smoothcache.wrap(model) as handle:
        assert handle.adapter.name == EXPECTED[case.cls]
        all_compute = denoise(model, case, STEPS)
        components = handle.components
    assert _equal(all_compute, reference), "an all-compute wrap changed the output"
    assert_pristine(model)

    profile, stats = _calibrated_reuse_is_finite_changed_and_restored(model, case, reference, "component")
    kinds = sorted({component.kind for component in components})
    _record(
        case,
        adapter=EXPECTED[case.cls],
        components=len(components),
        kinds=kinds,
        stacks=sorted({component.block_kind for component in components}),
        cacheable_share=profile.mac_count().cached_share,
        reused=stats["reused"],
        macs_skipped=stats["macs_skipped"],
    )


@pytest.mark.parametrize("case", SERVED, ids=lambda case: case.name)
def test_zoo_model_caches_whole_blocks(case):
    """The block unit on every served class: found from the adapter's components, exact when nothing
    is skipped, a calibrated schedule skips whole blocks with a finite, changed output."""
    model = build(case)
    reference = denoise(model, case, STEPS)
    with smoothcache.wrap(model, unit="block") as handle:
        assert _equal(denoise(model, case, STEPS), reference), "an all-compute block wrap changed the output"
        blocks = handle.components
    assert "block" in {component.kind for component in blocks}
    profile, _ = _calibrated_reuse_is_finite_changed_and_restored(model, case, reference, "block")
    _record(case, blocks=len(blocks), block_share=profile.mac_count().cached_share)


def _calibrated_reuse_is_finite_changed_and_restored(model, case: ZooCase, reference, unit: str):
    """Calibrate at ``unit``, reuse wherever the lookahead allows: reused calls skip MACs, the output
    is finite and changed, and unwrap restores the model; returns the profile and the counts."""
    profile = smoothcache.calibrate(model, lambda: denoise(model, case, STEPS), unit=unit)
    with smoothcache.wrap(model, schedule=profile.schedule(alpha=10.0)) as handle:
        cached = denoise(model, case, STEPS)
        stats = handle.stats()
    assert stats["reused"] > 0 and stats["macs_skipped"] > 0
    assert _finite(cached) and _changed(cached, reference)
    assert _equal(denoise(model, case, STEPS), reference), "unwrap did not restore the model"
    assert_pristine(model)
    return profile, stats


def _one_case_per_family() -> list[ZooCase]:
    chosen: dict[str, ZooCase] = {}
    for case in SERVED:
        chosen.setdefault(EXPECTED[case.cls], case)
    return list(chosen.values())


def _first_blocks(model: torch.nn.Module, components) -> list[torch.nn.Module]:
    """The block holding the first component of every stack: the module path up to the block index."""
    paths = {module: path for path, module in model.named_modules()}
    blocks: dict[str, torch.nn.Module] = {}
    for component in components:
        parts = paths[component.modules[0]].split(".")
        index = next(i for i, part in enumerate(parts) if part.isdigit())
        blocks.setdefault(component.block_kind, model.get_submodule(".".join(parts[: index + 1])))
    return list({id(block): block for block in blocks.values()}.values())


def _denoise_with_compiled_blocks(model, case, blocks, schedule):
    """``denoise`` with ``blocks`` compiled whole (``fullgraph=True``: any graph break raises)."""
    import torch._dynamo

    torch._dynamo.reset()
    try:
        for block in blocks:
            block.compile(backend="eager", fullgraph=True)
        # blocks of one class share their compiled code across stacks and decisions
        with torch._dynamo.config.patch(cache_size_limit=64), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if schedule is None:
                return denoise(model, case, STEPS), 0
            with smoothcache.wrap(model, schedule=schedule) as handle:
                return denoise(model, case, STEPS), handle.stats()["reused"]
    finally:
        for block in blocks:
            block._compiled_call_impl = None
        torch._dynamo.reset()


@pytest.mark.parametrize("case", _one_case_per_family(), ids=lambda case: EXPECTED[case.cls])
def test_one_block_per_family_compiles_without_graph_breaks(case):
    """The first block of every stack, with its gates, traced whole (``fullgraph=True``) while
    reusing; the graph runs on the eager backend (tracing is what breaks, not code generation).
    A block whose own code breaks the graph without smoothcache (data-dependent MoE routing) is
    recorded as such: then there is nothing to hold the gates to."""
    import torch._dynamo

    model = build(case)
    with smoothcache.wrap(model) as handle:
        names = sorted({component.name for component in handle.components})
        blocks = _first_blocks(model, handle.components)
    schedule = smoothcache.Schedule.fora(STEPS, 2, names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with smoothcache.wrap(model, schedule=schedule):
            eager = denoise(model, case, STEPS)
    try:
        compiled, reused = _denoise_with_compiled_blocks(model, case, blocks, schedule)
    except torch._dynamo.exc.TorchDynamoException:
        with pytest.raises(torch._dynamo.exc.TorchDynamoException):
            _denoise_with_compiled_blocks(model, case, blocks, None)
        _record(case, compiles="the model's own block breaks the graph")
        return
    assert reused > 0 and _equal(compiled, eager)
    _record(case, compiles="fullgraph")


def teardown_module() -> None:
    folder = os.environ.get("SMOOTHCACHE_ZOO_RESULTS")
    if folder and RESULTS:
        Path(folder).mkdir(parents=True, exist_ok=True)
        Path(folder, "models.json").write_text(json.dumps(RESULTS, indent=1, sort_keys=True) + "\n")
