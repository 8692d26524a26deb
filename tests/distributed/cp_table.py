"""Print the JSON of ``cp_worker.py`` (or ``cp_hooks_probe.py``) as a Markdown table.

.venv/bin/python tests/distributed/cp_table.py /tmp/cp.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "0" if value == 0 else f"{value:.1e}"
    return str(value)


def _stats(stats: Any) -> str:
    if not stats:
        return "–"
    if isinstance(stats, dict):
        stats = [stats]
    cells = [f"{s['computed']}/{s['reused']}" if s else "–" for s in stats]
    return cells[0] if len(set(cells)) == 1 else " vs ".join(cells)


def _short(text: Any, width: int = 150) -> str:
    text = "ok" if text in (None, "ok") else str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def cp_table(rows: list[dict[str, Any]]) -> str:
    """One line per (mode, family, unit, schedule, order)."""
    lines = [
        "| mode | family | unit | schedule | order | vs single | floor | effect | computed/reused | unwrap | layout after | error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "baseline_error" in row:
            lines.append(f"| {row['mode']} | {row['family']} | | | | | | | | | | {_short(row['baseline_error'])} |")
            continue
        layout = {True: "same", False: "differs", None: "–"}[row.get("after_unwrap_equal")]
        if row.get("after_unwrap_max_abs") not in (None, 0.0):
            layout += f" (out {_number(row['after_unwrap_max_abs'])})"
        cells = [
            row["mode"],
            row["family"],
            row["unit"],
            row["schedule"],
            row["order"],
            _number(row.get("max_abs_vs_single")),
            _number(row.get("baseline_vs_single")),
            _number(row.get("schedule_effect")),
            _stats(row.get("stats")),
            _short(row.get("unwrap"), 90) if "unwrap" in row else "–",
            layout,
            _short(row.get("error"), 150) if row.get("error") else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


COMBOS = [(u, s, o) for u in ("component", "block") for s in ("compute", "fora2") for o in ("parallel-first", "wrap-first")]
MODES = ("ulysses", "ring", "cachedit-ulysses", "cachedit-ring")


def _cp_cell(row: dict[str, Any]) -> str:
    if row.get("error"):
        return "error: " + _short(row["error"], 60)
    difference, floor = row["max_abs_vs_single"], row["baseline_vs_single"]
    text = _number(difference)
    if difference > max(10 * floor, 1e-5):
        text = f"**wrong {text}**"
    if row.get("unwrap") != "ok":
        text += " unwrap✗"
    if row.get("after_unwrap_equal") is False:
        text += " (gate left)"
    if len({json.dumps(stats, sort_keys=True) for stats in row.get("stats") or []}) > 1:
        text += " stats differ"
    return text


def cp_summary(rows: list[dict[str, Any]]) -> str:
    """One line per (mode, family), one column per (unit, schedule, order): ``vs single`` and what failed."""
    labels = [f"{u}/{s}/{'P→W' if o == 'parallel-first' else 'W→P'}" for u, s, o in COMBOS]
    lines = ["| mode | family | floor | " + " | ".join(labels) + " |", "|" + "---|" * (3 + len(COMBOS))]
    cases: dict[tuple[str, str], dict[tuple[str, str, str], dict[str, Any]]] = {}
    failed: dict[tuple[str, str], str] = {}
    for row in rows:
        if row.get("calibrate"):
            continue
        key = (row["mode"], row["family"])
        if "baseline_error" in row:
            failed[key] = row["baseline_error"]
        else:
            cases.setdefault(key, {})[(row["unit"], row["schedule"], row["order"])] = row
    for key in sorted({*cases, *failed}, key=lambda k: (MODES.index(k[0]) if k[0] in MODES else 9, k[1])):
        if key in failed:
            lines.append(f"| {key[0]} | {key[1]} | – | {_short(failed[key], 170)} |" + " |" * (len(COMBOS) - 1))
            continue
        found = cases[key]
        floor = next(iter(found.values()))["baseline_vs_single"]
        cells = [_cp_cell(found[combo]) if combo in found else "–" for combo in COMBOS]
        lines.append(f"| {key[0]} | {key[1]} | {_number(floor)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def probe_summary(rows: list[dict[str, Any]], schedule: str = "fora2") -> str:
    """One line per (family, hook), one column per (unit, order) at ``schedule``."""
    orders = ("hooks-first", "hooks-first/remove-first", "wrap-first", "wrap-first/remove-first")
    combos = [(unit, order) for unit in ("component", "block") for order in orders]
    lines = ["| family | hook | " + " | ".join(f"{u}/{o}" for u, o in combos) + " |", "|" + "---|" * (2 + len(combos))]
    table: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = {}
    for row in rows:
        if row.get("schedule") == schedule:
            table.setdefault((row["family"], row["hook"]), {})[(row["unit"], row["order"])] = row
    for (family, hook), found in table.items():
        cells = []
        for combo in combos:
            row = found.get(combo)
            if row is None:
                cells.append("–")
            elif "wrap" in row:
                cells.append("refused at wrap")
            elif row.get("error"):
                cells.append("error: " + _short(row["error"], 50))
            else:
                text = _number(row.get("max_abs_vs_reference"))
                if row.get("unwrap") != "ok":
                    text += " unwrap✗ " + row["unwrap"].split(".forward", 1)[0].rsplit(" ", 1)[-1]
                if row.get("after_equal") is False:
                    text += " (gate left)"
                cells.append(text)
        lines.append(f"| {family} | {hook} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def calibration_table(rows: list[dict[str, Any]]) -> str:
    """One line per (mode, family) of ``--calibrate`` rows."""
    lines = [
        "| mode | family | α | per-rank profile vs single (max rel) | schedule = single | ranks agree | reused | Σnum/Σden vs single |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ranks = row["ranks"]
        if any("error" in r for r in ranks):
            lines.append(f"| {row['mode']} | {row['family']} | | | | | | {_short(ranks[0].get('error'))} |")
            continue
        cells = [
            row["mode"],
            row["family"],
            f"{row['alpha']:.3f}",
            " / ".join(f"{r['mean_rel_diff_vs_single']:.1%}" for r in ranks),
            " / ".join(str(r["schedule_equals_single"]) for r in ranks),
            str(row["ranks_agree"]),
            " / ".join(str(r["reused"]) for r in ranks),
            _number(max(r["reduced_rel_diff_vs_single"] for r in ranks)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def probe_table(rows: list[dict[str, Any]]) -> str:
    """One line per (family, hook, unit, schedule, order) of the single-process hook probe."""
    lines = [
        "| family | hook | unit | schedule | order | vs reference | vs hook alone | computed/reused "
        "| wrap | unwrap | remove hooks | after | error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        after = {True: "same", False: "differs", None: "–"}[row.get("after_equal")]
        if row.get("after_max_abs") not in (None, 0.0):
            after += f" (out {_number(row['after_max_abs'])})"
        cells = [
            row["family"],
            row["hook"],
            row.get("unit", ""),
            row.get("schedule", ""),
            row.get("order", ""),
            _number(row.get("max_abs_vs_reference")),
            _number(row.get("max_abs_vs_hooks_only")),
            _stats(row.get("stats")),
            _short(row["wrap"], 90) if "wrap" in row else "ok",
            _short(row["unwrap"], 110) if "unwrap" in row else "–",
            _short(row["remove_hooks"], 90) if "remove_hooks" in row else "–",
            after,
            _short(row.get("error"), 150) if row.get("error") else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    data = json.loads(Path(sys.argv[1]).read_text())
    summary = "--summary" in sys.argv[2:]
    if data and "hook" in data[0]:
        print(probe_summary(data) if summary else probe_table(data))
    else:
        print(cp_summary(data) if summary else cp_table([row for row in data if not row.get("calibrate")]))
        calibrations = [row for row in data if row.get("calibrate")]
        if calibrations:
            print()
            print(calibration_table(calibrations))
