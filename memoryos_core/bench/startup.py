"""``memoryos bench startup``: what a fresh process pays before its first useful call.

Each figure is the wall time of a new Python process, measured from the parent, as the median of several
runs; the baseline (``python -c "import chromadb, onnxruntime"``, the two libraries MemoryOS cannot start
without) runs interleaved with the others in the same run. The CPU time of the same processes is reported
beside it (``cpu``): on a shared machine it moves much less than wall time.

What the first-``add_memory`` process does: import, open the existing store, journal the page (write-behind:
``add_memory`` returns here, before any embedding), then ``close()``, which loads the model, embeds the
page and writes it to Chroma, so the store is complete when the process ends. The figure is the whole
process, that embedding included.

Every process imports from bytecode, as an installed package does (pip compiles it at install): the
children run with ``PYTHONPYCACHEPREFIX`` in the run's scratch folder, filled by the untimed warm-up, and
without ``PYTHONDONTWRITEBYTECODE``. With that variable set and no ``__pycache__`` beside the sources (a
source checkout), each process would compile every module it imports again, MemoryOS's ~55 included.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BASELINE_CODE = "import chromadb, onnxruntime"
ADD_CODE = (
    "import sys\n"
    "from memoryos_core import MemoryOS\n"
    "memory = MemoryOS(data_storage_path=sys.argv[1])\n"
    "memory.add_memory('I adopted a cat called Pixel.', 'Lovely name!', user_id='startup')\n"
    "memory.close()\n"
)
CLI_CODE = "import sys\nfrom memoryos_core.app.cli import main\nsys.argv[0] = 'memoryos'\nmain()\n"
FIELDS = ("baseline_s", "add_memory_s", "stats_s", "add_memory_ratio", "stats_ratio")


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(argv: list[str], timeout: float, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one process; raises CalledProcessError if it fails.

    CPU time is the figure to read on a busy machine: other processes stretch the wall time, but not
    the work this process does.
    """
    cpu, started = _cpu_of_children(), time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=timeout, env=env)
    return time.perf_counter() - started, _cpu_of_children() - cpu


def run_startup(
    *, runs: int = 7, timeout: float = 120.0, progress: Callable[[str], None] = print
) -> dict[str, Any]:
    """Time ``runs`` fresh processes of each kind, interleaved, after one untimed warm-up of each.

    The warm-up creates the store (so every timed ``add_memory`` opens an existing one, as an application
    restarting does) and fills the OS file cache, the ONNX cache and the bytecode cache for all three alike.
    """
    folder = Path(tempfile.mkdtemp(prefix="memoryos-startup-"))
    data = str(folder / "data")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(folder / "bytecode")
    commands = {
        "baseline_s": [sys.executable, "-c", BASELINE_CODE],
        "add_memory_s": [sys.executable, "-c", ADD_CODE, data],
        "stats_s": [sys.executable, "-c", CLI_CODE, "stats", "--data", data, "--user", "startup"],
    }
    samples: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    try:
        for argv in commands.values():
            _timed(argv, timeout, env)
        for run in range(runs):
            for name, argv in commands.items():
                wall, used = _timed(argv, timeout, env)
                samples[name].append(wall)
                cpu[name].append(used)
            progress(f"run {run + 1}/{runs}: " + ", ".join(f"{n} {s[-1]:.2f}" for n, s in samples.items()))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    return {
        "python": sys.version.split()[0],
        "runs": runs,
        "bytecode": "cached (PYTHONPYCACHEPREFIX, filled by the warm-up)",
        **{name: round(value, 3) for name, value in medians.items()},
        "add_memory_ratio": round(medians["add_memory_s"] / medians["baseline_s"], 2),
        "stats_ratio": round(medians["stats_s"] / medians["baseline_s"], 2),
        "cpu": {
            **{name: round(value, 3) for name, value in cpu_medians.items()},
            "add_memory_ratio": round(cpu_medians["add_memory_s"] / cpu_medians["baseline_s"], 2),
            "stats_ratio": round(cpu_medians["stats_s"] / cpu_medians["baseline_s"], 2),
        },
        "samples": {name: [round(value, 3) for value in values] for name, values in samples.items()},
    }
