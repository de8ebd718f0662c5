"""Peak memory of converting one DB2-sized subject (exercises B + C, NinaPro timing) ÷ the size of its loaded arrays.

Goal: under 3× what ``scipy.io.loadmat`` returns for the subject's two files, so that a cluster job's memory request
(profiles/slurm) follows from the file sizes. The conversion runs in a fresh interpreter whose imports are done
before the baseline is taken: the figure is the resident-set high-water mark that the conversion adds.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import scipy.io

from contrastive_prosthetics.data.ninapro import DB2
from contrastive_prosthetics.data.synthetic import SyntheticParams, write_subject

from .convert_speed import EXERCISES
from .results import Result

GOAL = 3.0

# Runs in the child: imports first (torch alone is a few hundred MB), then the baseline, then one conversion.
# The kernel's own counters for this process (/proc/self/status): VmRSS now, VmHWM its peak; writing 5 to
# clear_refs resets the peak to the current size (getrusage's ru_maxrss cannot be reset, and a child started from
# a large parent can inherit the parent's figure).
CHILD = """
import json, sys
from contrastive_prosthetics.config import default_config
from contrastive_prosthetics.data.convert import convert_subject
from contrastive_prosthetics.data.ninapro import DB2
from contrastive_prosthetics.data.preprocess import PreprocessParams

def status_kib(field):
    line = next(line for line in open("/proc/self/status") if line.startswith(field + ":"))
    return int(line.split()[1])

sources, out = json.loads(sys.argv[1]), sys.argv[2]
params = PreprocessParams(**default_config()["preprocess"])
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
before = status_kib("VmRSS")
convert_subject(DB2, 1, sources, list(sources), params, out)
print(json.dumps({"before_kib": before, "peak_kib": status_kib("VmHWM")}))
"""


def loaded_bytes(files: list[Path]) -> int:
    """What loadmat returns for the files, every variable included."""
    return sum(value.nbytes for f in files for name, value in scipy.io.loadmat(f).items() if not name.startswith("__"))


def main() -> list[Result]:
    print("== peak memory of converting one DB2-sized subject vs the size of its loaded arrays")
    with tempfile.TemporaryDirectory() as folder:
        files = write_subject(DB2, 1, EXERCISES, Path(folder), SyntheticParams(movement_s=5.0, rest_s=3.0), seed=0)
        sources = json.dumps(dict(zip(EXERCISES, map(str, files), strict=True)))
        child = subprocess.run(
            [sys.executable, "-c", CHILD, sources, str(Path(folder) / "s1.pt")],
            capture_output=True,
            text=True,
            check=True,
        )
        loaded = loaded_bytes(files)
    usage = json.loads(child.stdout.strip().splitlines()[-1])
    added = (usage["peak_kib"] - usage["before_kib"]) * 1024
    ratio = added / loaded
    print(
        f"loaded arrays {loaded / 2**20:.0f} MiB; conversion adds {added / 2**20:.0f} MiB to the process's peak "
        f"(peak {usage['peak_kib'] / 2**10:.0f} MiB with imports): ratio {ratio:.2f} (goal < {GOAL}) "
        f"{'OK' if ratio < GOAL else 'MISSED'}"
    )
    return [Result("convert peak memory / loaded arrays", f"{ratio:.2f}", f"< {GOAL}", ratio < GOAL)]


if __name__ == "__main__":
    main()
