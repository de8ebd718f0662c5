"""Run every benchmark: python -m bench [--markdown] [name ...]; one table of figures against goals comes last
(``--markdown``: also as a Markdown table, for docs/performance.md)."""

import sys

from . import (
    adabn_speed,
    controller_speed,
    convert_memory,
    convert_speed,
    evaluate_speed,
    sampler_speed,
    stream_speed,
    tradeoff_speed,
    train_speed,
)
from .results import markdown, table

BENCHMARKS = {
    "convert": convert_speed.main,
    "memory": convert_memory.main,
    "sampler": sampler_speed.main,
    "train": train_speed.main,
    "evaluate": evaluate_speed.main,
    "stream": stream_speed.main,
    "tradeoff": tradeoff_speed.main,
    "adabn": adabn_speed.main,
    "controller": controller_speed.main,
}

if __name__ == "__main__":
    names = [arg for arg in sys.argv[1:] if arg != "--markdown"]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(BENCHMARKS)}")
    results = []
    for name in names or list(BENCHMARKS):
        results += BENCHMARKS[name]()
    print("\n== summary (each figure measured in this run)")
    print(table(results))
    if "--markdown" in sys.argv[1:]:
        print(f"\n{markdown(results)}")
