#!/usr/bin/env python
"""Cold start of the README's vehicle command, each run a fresh process (issue 23, section 2).

    .venv/bin/python scripts/bench_cold_start.py [--runs 3] [--imports]

Times ``rrsis-geo predict resources/sample/munich_street_sample.tif -e cars -o OUT --overwrite -q``
and, for comparison, ``rrsis-geo --help``, ``rrsis-geo info SCENE`` and a refusal (a missing
scene). ``--imports`` adds the ten slowest imports of one predict run (``python -X importtime``,
cumulative). Figures, not a test. The commands run in a temporary directory, so that
``PYTHONPATH=<another checkout>`` times that checkout's code (``-m`` would put the current
directory first on the path).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO / "resources" / "sample" / "munich_street_sample.tif"


def timed(args, env, cwd) -> float:
    started = time.perf_counter()
    subprocess.run(args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def slowest_imports(args, env, cwd, top: int = 10):
    """``(cumulative seconds, module)`` of the slowest top-level imports of one run."""
    done = subprocess.run([sys.executable, "-X", "importtime", *args], env=env, cwd=cwd, capture_output=True, text=True)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        name = name[1:]  # nested imports are indented further
        if cumulative.strip().isdigit() and not name.startswith(" "):
            rows.append((int(cumulative) / 1e6, name.strip()))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--imports", action="store_true", help="also list the slowest imports of one run")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "rrsis_geo.cli"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    with tempfile.TemporaryDirectory(prefix="rrsis-cold-") as tmp:
        predict = ["predict", str(SCENE), "-e", "cars", "-o", str(Path(tmp) / "cold.gpkg"), "--overwrite", "-q"]
        commands = {
            "predict munich -e cars": predict,
            "--help": ["--help"],
            "info SCENE": ["info", str(SCENE)],
            "refusal (missing scene)": ["predict", str(Path(tmp) / "missing.tif"), "-e", "cars", "-o", str(Path(tmp) / "x.gpkg")],
        }
        print(f"{os.cpu_count()} CPU(s), {args.runs} fresh process(es) each; seconds")
        print("| command | median | min | max |")
        print("|---|---:|---:|---:|")
        for name, command in commands.items():
            times = [timed(cli + command, env, tmp) for _ in range(args.runs)]
            print(f"| `rrsis-geo {name}` | {statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} |")
        if args.imports:
            print("\nslowest imports of one predict run (cumulative s):")
            for seconds, name in slowest_imports(["-m", "rrsis_geo.cli"] + predict, env, tmp):
                print(f"  {seconds:6.2f}  {name}")


if __name__ == "__main__":
    main()
