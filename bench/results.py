"""Every benchmark's figures against their goals, printed as one table at the end of `make bench`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    benchmark: str
    figure: str  # the measured value, with its unit
    goal: str
    ok: bool


def table(results: list[Result]) -> str:
    rows = [("benchmark", "figure", "goal", "verdict")]
    rows += [(r.benchmark, r.figure, r.goal, "OK" if r.ok else "MISSED") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown(results: list[Result]) -> str:
    """The same table for docs/performance.md (``python -m bench --markdown``)."""
    lines = ["| benchmark | figure | goal | verdict |", "|---|---|---|---|"]
    lines += [f"| {r.benchmark} | {r.figure} | {r.goal} | {'OK' if r.ok else 'MISSED'} |" for r in results]
    return "\n".join(lines)
