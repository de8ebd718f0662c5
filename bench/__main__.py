"""Run every benchmark: python -m bench [name ...]; one table of figures against goals comes last."""

import sys

from . import controller_speed, convert_speed, evaluate_speed, sampler_speed, train_speed
from .results import table

BENCHMARKS = {
    "convert": convert_speed.main,
    "sampler": sampler_speed.main,
    "train": train_speed.main,
    "evaluate": evaluate_speed.main,
    "controller": controller_speed.main,
}

if __name__ == "__main__":
    results = []
    for name in sys.argv[1:] or list(BENCHMARKS):
        results += BENCHMARKS[name]()
    print("\n== summary (each figure measured in this run)")
    print(table(results))
