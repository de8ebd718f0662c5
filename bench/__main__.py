"""Run every benchmark: python -m bench [name ...]."""

import sys

from . import convert_speed, evaluate_speed, sampler_speed, train_speed

BENCHMARKS = {
    "convert": convert_speed.main,
    "sampler": sampler_speed.main,
    "train": train_speed.main,
    "evaluate": evaluate_speed.main,
}

if __name__ == "__main__":
    for name in sys.argv[1:] or list(BENCHMARKS):
        BENCHMARKS[name]()
