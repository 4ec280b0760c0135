"""How long a launcher takes to run N jobs and notice that they ended: the local launcher,
sps's SLURM launcher (sbatch + waiting for the jobs' exit statuses), plain ``sbatch
--wait`` on the same array script, and submitit (when installed), on a running SLURM
cluster (``SLURM_CONF``; ``tools/slurm_local.sh start`` makes a one-node one).

    python benchmarks/launchers.py [--jobs 2] [--seconds 0 10] [--repeat 3]

Each job runs ``sleep S``; the figure is the wall time from the call to the launcher's
return, and its overhead over the ideal (``ceil(N / slots) * S``, ``slots`` = CPUs of
the node). It says how much a launcher adds to every stage of a recipe.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sps.launch import parse  # noqa: E402
from sps.launch import local as local_launcher  # noqa: E402
from sps.launch import slurm as slurm_launcher  # noqa: E402


def sps_local(tmp: Path, n: int, seconds: float) -> None:
    local_launcher.run(parse([f"JOB=1:{n}", str(tmp / "l.JOB.log"), "sleep", str(seconds)]),
                       max_jobs_run=os.cpu_count())   # not the slot's one pinned CPU


def sps_slurm(tmp: Path, n: int, seconds: float) -> None:
    slurm_launcher.submit(parse([f"JOB=1:{n}", str(tmp / "s.JOB.log"), "sleep", str(seconds)]))


def sbatch_wait(tmp: Path, n: int, seconds: float) -> None:
    array = parse([f"JOB=1:{n}", str(tmp / "w.JOB.log"), "sleep", str(seconds)])
    script = tmp / "w.sh"
    script.write_text(slurm_launcher.batch_script(array))
    subprocess.run(["sbatch", "--wait", "--parsable", f"--array=1-{n}", f"--output={tmp}/w.%a.out", str(script)],
                   check=True, stdout=subprocess.DEVNULL)


def submitit_map(tmp: Path, n: int, seconds: float) -> None:
    import submitit
    ex = submitit.AutoExecutor(folder=str(tmp / "submitit"), cluster="slurm")
    ex.update_parameters(timeout_min=10)
    jobs = ex.map_array(_sleep, [seconds] * n)
    for j in jobs:
        j.result()


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seconds", type=float, nargs="+", default=[0.0, 10.0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    runs = {"sps-launch local": sps_local}
    if shutil.which("sbatch") and os.environ.get("SLURM_CONF"):
        runs.update({"sps-launch slurm": sps_slurm, "sbatch --wait": sbatch_wait})
        try:
            import submitit  # noqa: F401
            runs["submitit map_array"] = submitit_map
        except ImportError:
            print("# submitit not installed: left out")
    else:
        print("# no SLURM cluster (SLURM_CONF): local launcher only")
    slots = os.cpu_count() or 1
    print(f"# {args.jobs} jobs of sleep S, {slots} CPUs, median of {args.repeat}; "
          f"load {open('/proc/loadavg').read().strip()}")
    print(f"{'launcher':20s} {'S':>5s} {'wall s':>8s} {'overhead s':>11s}")
    for seconds in args.seconds:
        ideal = math.ceil(args.jobs / slots) * seconds
        for name, fn in runs.items():
            times = []
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory(prefix="sps_launch_bench_", dir=str(ROOT)) as tmp:
                    t0 = time.perf_counter()
                    fn(Path(tmp), args.jobs, seconds)
                    times.append(time.perf_counter() - t0)
            wall = statistics.median(times)
            print(f"{name:20s} {seconds:5.0f} {wall:8.2f} {wall - ideal:11.2f}", flush=True)


if __name__ == "__main__":
    main()
