"""Write the docs' support matrix (docs/support-matrix.md) from the zoo tests' results, never by hand.

Runs ``tests/test_zoo.py`` (every transformer class diffusers exports, model-level) and
``tests/test_zoo_pipelines.py`` (pipelines end to end, CLI included) with ``SMOOTHCACHE_ZOO_RESULTS``
set, keeps their results in ``benchmarks/results/support_matrix.json`` and replaces the table
between the ``support-matrix`` markers of docs/support-matrix.md. A family appears as served only if its cases passed.

    python scripts/support_matrix.py              # run the tests (about 5 minutes on 2 cores), write
    python scripts/support_matrix.py --no-run     # rewrite the page from the stored results
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "support_matrix.json"
PAGE = ROOT / "docs" / "support-matrix.md"
START, END = "<!-- support-matrix:start -->", "<!-- support-matrix:end -->"
TESTS = ["tests/test_zoo.py", "tests/test_zoo_pipelines.py"]


def run_tests() -> dict:
    """The zoo tests' results; the tests must pass."""
    with tempfile.TemporaryDirectory() as folder:
        environment = {**os.environ, "SMOOTHCACHE_ZOO_RESULTS": folder}
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS], cwd=ROOT, env=environment, check=True)
        return {name: json.loads(Path(folder, f"{name}.json").read_text()) for name in ("models", "pipelines")}


def _unserved() -> list[tuple[str, str]]:
    from smoothcache.reference.zoo import all_cases

    return sorted((case.cls, case.reason) for case in all_cases() if case.reason)


def _family(adapter: str, entries: list[dict]) -> str:
    """The family as the adapter's table row names it, else as the cases do."""
    from smoothcache.plugins import registry

    return getattr(registry().get(adapter), "family", "") or ", ".join(sorted({entry["family"] for entry in entries}))


def _family_rows(models: dict, pipelines: dict) -> list[list[str]]:
    """One row per adapter: the classes it served, their components and what was tested."""
    end_to_end = {entry["transformer"]: entry["pipeline"] for entry in pipelines.values() if "cli" in entry}
    families: dict[str, list[dict]] = {}
    for entry in models.values():
        if "adapter" in entry:
            families.setdefault(entry["adapter"], []).append(entry)
    rows = []
    for adapter, entries in sorted(families.items(), key=lambda item: (item[1][0]["modality"], item[0])):
        classes = sorted({entry["class"] for entry in entries})
        kinds = sorted({kind for entry in entries for kind in entry["kinds"]})
        stacks = sorted({stack for entry in entries for stack in entry["stacks"]})
        shares = [entry["cacheable_share"] for entry in entries]
        low, high = f"{min(shares):.0%}", f"{max(shares):.0%}"
        variants = sorted({entry["variant"] for entry in entries if entry["variant"]})
        compiles = {entry.get("compiles") for entry in entries} - {None}
        tested = sorted({end_to_end[name] for name in classes if name in end_to_end})
        rows.append(
            [
                f"`{adapter}`",
                _family(adapter, entries),
                entries[0]["modality"],
                ", ".join(f"`{name}`" for name in classes) + (f" ({', '.join(variants)})" if variants else ""),
                ", ".join(kinds) + f" in {', '.join(f'`{stack}`' for stack in stacks)}",
                low if low == high else f"{low}–{high}",
                "yes" if compiles == {"fullgraph"} else ("the model's own block breaks the graph" if compiles else "not tried"),
                "end to end: " + ", ".join(f"`{name}`" for name in tested) if tested else "model-level",
            ]
        )
    return rows


def matrix(results: dict) -> str:
    """The markdown between the markers."""
    models, pipelines = results["models"], results["pipelines"]
    rows = _family_rows(models, pipelines)
    header = [
        "adapter",
        "family",
        "modality",
        "diffusers classes (variants)",
        "cached components",
        "cacheable MACs",
        "block compiles fullgraph",
        "tested",
    ]
    lines = [
        f"{len(rows)} adapters serve {len({entry['class'] for entry in models.values() if 'adapter' in entry})} transformer classes "
        f"({len(models)} configurations) of the installed diffusers; every one passed: adapter detected, nothing skipped "
        'bit-identical, a calibrated schedule reuses and skips measured MACs, unwrap exact. "end to end": the pipeline ran '
        "wrapped and through `inspect`, `calibrate`, `schedule` and `compare`. Cacheable MACs are measured on the tiny test "
        "configurations (a low share means embedders or refiners that are large only there). A diffusers transformer "
        "newer than this table is served by the `diffusers` fallback adapter when its structure is found. Written by "
        "`python scripts/support_matrix.py` from `tests/test_zoo.py` and `tests/test_zoo_pipelines.py`.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        "Not served, and why:",
        "",
        *(f"- `{name}`: {reason}" for name, reason in _unserved()),
    ]
    return "\n".join(lines)


def write_page(text: str) -> None:
    page = PAGE.read_text()
    if START not in page or END not in page:
        raise SystemExit(f"{PAGE} has no {START} ... {END} markers")
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    PAGE.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-run", action="store_true", help="rewrite the page from the stored results")
    args = parser.parse_args()
    if args.no_run:
        results = json.loads(RESULTS.read_text())
    else:
        results = run_tests()
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    write_page(matrix(results))
    print(f"wrote the support matrix to {PAGE.relative_to(ROOT)} ({RESULTS.relative_to(ROOT)})")


if __name__ == "__main__":
    main()
