"""Job launchers for recipes: Kaldi's ``$cmd JOB=1:N log/x.JOB.log command ... JOB ...``.

``sps-launch`` (also ``python -m sps.launch``) is what a recipe's ``cmd.sh`` names::

    sps-launch local [--max-jobs-run K] [JOB=1:N] LOG COMMAND ...     # parallel processes here
    sps-launch slurm [--partition P --time T --mem M --gpu G ...] [JOB=1:N] LOG COMMAND ...
    sps-launch torchrun --nnodes M --node K --nproc-per-node G [--rdzv-file F] COMMAND ...

``local`` and ``slurm`` run the jobs of :class:`~sps.launch.jobs.JobArray` (see
:mod:`sps.launch.jobs` for the convention, :mod:`sps.launch.local` and
:mod:`sps.launch.slurm` for the launchers), wait for all of them, and exit with
status 0 when every job succeeded, else 1 after one line per failed job naming it and
its log. ``torchrun`` is what each node of a multi-node training runs
(:mod:`sps.launch.torchrun`). The package uses the standard library only: a launcher
starts in a fraction of a second and imports neither torch nor the audio libraries.
"""
from __future__ import annotations

import argparse
import sys

from sps.launch.jobs import JobArray, parse, read_status, report

__all__ = ["JobArray", "parse", "read_status", "main"]

USAGE = """usage: sps-launch local [--max-jobs-run K] [--OPTION VALUE ...] [JOB=A:B] LOG COMMAND [ARG ...]
       sps-launch slurm [--partition P] [--time T] [--mem M] [--gpu N] [--num-threads N]
                        [--max-jobs-run K] [--OPTION VALUE ...] [JOB=A:B] LOG COMMAND [ARG ...]
       sps-launch torchrun --nnodes M --node K --nproc-per-node G [--rdzv-file F] COMMAND [ARG ...]

Runs COMMAND once per job number of A..B (every JOB in LOG, COMMAND and ARGs replaced by
the number), each with its output in its LOG; exits 1 naming every failed job and its log.
local ignores the cluster options, so one cmd.sh line serves both."""


def _jobs(backend: str, argv: list[str]) -> int:
    name = f"sps-launch {backend}"
    try:
        array = parse(argv)
    except ValueError as err:
        print(f"{name}: {err}", file=sys.stderr)
        return 2
    if backend == "local":
        from sps.launch import local
        max_jobs = array.options.get("max_jobs_run")
        status, signum = local.run(array, int(max_jobs) if max_jobs else None)
    else:
        from sps.launch import slurm
        try:
            _, signum = slurm.submit(array, array.options)
        except RuntimeError as err:
            print(f"{name}: {err}", file=sys.stderr)
            return 1
        status = {j: read_status(array.log_path(j)) for j in array.ids}
    code = report(array, status, name)
    if signum:
        print(f"{name}: stopped by signal {signum}", file=sys.stderr)
        return 128 + signum
    return code


def _torchrun(argv: list[str]) -> int:
    from sps.launch import torchrun
    p = argparse.ArgumentParser(prog="sps-launch torchrun", description=torchrun.__doc__.splitlines()[0])
    p.add_argument("--nnodes", type=int, default=1)
    p.add_argument("--node", type=int, default=1, help="this node's number, 1..nnodes")
    p.add_argument("--nproc-per-node", type=int, default=1)
    p.add_argument("--rdzv-file", help="rendezvous file every node sees (needed for --nnodes > 1)")
    p.add_argument("--rdzv-timeout", type=float, default=1800.0, help="seconds to wait for node 1 (default 1800)")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        torchrun.exec_node(args.nnodes, args.node, args.nproc_per_node, cmd, args.rdzv_file, args.rdzv_timeout)
    except (ValueError, TimeoutError, OSError) as err:
        print(f"sps-launch torchrun: {err}", file=sys.stderr)
        return 1
    return 0  # pragma: no cover - exec does not return


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    backend, rest = argv[0], argv[1:]
    if backend in ("local", "slurm"):
        return _jobs(backend, rest)
    if backend == "torchrun":
        return _torchrun(rest)
    print(f"sps-launch: unknown launcher {backend!r} (local, slurm or torchrun)\n{USAGE}", file=sys.stderr)
    return 2
