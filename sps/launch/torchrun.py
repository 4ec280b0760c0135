"""One node of a (multi-node) ``torchrun``: what every job of ``$cuda_cmd JOB=1:M`` runs.

``sps-launch torchrun --nnodes M --node K --nproc-per-node G [--rdzv-file F] CMD ...``
replaces itself by ``torchrun`` (``python -m torch.distributed.run`` of this Python)
running ``CMD`` in ``G`` processes on this node:

* ``M == 1``: ``torchrun --standalone`` (a private rendezvous on this machine);
* ``M > 1``: a c10d rendezvous. Node 1 picks its host name and a free port, writes
  ``host:port`` to ``F`` (a path on a file system all nodes see, unique per training
  run) and hosts the rendezvous store there; nodes ``2..M`` wait for ``F`` (at most
  ``--rdzv-timeout`` seconds) and join. The jobs of one array need not start at the
  same moment; torchrun waits for all ``M`` nodes.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port that is free on this host now."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def publish_endpoint(path: Path) -> str:
    """Node 1: write ``host:port`` to ``path`` (atomically) and return it."""
    endpoint = f"{socket.gethostname()}:{free_port()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(endpoint + "\n")
    os.replace(tmp, path)
    return endpoint


def wait_endpoint(path: Path, timeout: float) -> str:
    """Nodes 2..M: the ``host:port`` node 1 wrote to ``path``.

    Raises
    ------
    TimeoutError
        Nothing appeared within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        if path.exists():
            text = path.read_text().strip()
            if text:
                return text
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: node 1 published no rendezvous endpoint within {timeout:g} s "
                               f"(did its job start? see its log)")
        time.sleep(0.5)


def command(nnodes: int, node: int, nproc: int, argv: list[str], rdzv_file: str | None = None,
            timeout: float = 1800.0) -> list[str]:
    """The ``torchrun`` command line of node ``node`` (1-based) of ``nnodes``."""
    if not 1 <= node <= nnodes:
        raise ValueError(f"--node {node}: need 1 <= node <= --nnodes {nnodes}")
    if nproc < 1:
        raise ValueError(f"--nproc-per-node must be >= 1, got {nproc}")
    if not argv:
        raise ValueError("no command to run under torchrun")
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    if nnodes == 1:
        return [*run, "--standalone", "--nnodes", "1", "--no-python", *argv]
    if not rdzv_file:
        raise ValueError(f"--nnodes {nnodes} needs --rdzv-file (a path every node sees)")
    path = Path(rdzv_file)
    endpoint = publish_endpoint(path) if node == 1 else wait_endpoint(path, timeout)
    return [*run, "--nnodes", str(nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint,
            "--rdzv-id", path.name, "--rdzv-conf", f"is_host={int(node == 1)}", "--no-python", *argv]


def exec_node(nnodes: int, node: int, nproc: int, argv: list[str], rdzv_file: str | None = None,
              timeout: float = 1800.0) -> None:
    """Replace this process by the node's ``torchrun`` (see :func:`command`)."""
    cmd = command(nnodes, node, nproc, argv, rdzv_file, timeout)
    print("sps-launch torchrun:", " ".join(cmd), file=sys.stderr, flush=True)
    os.execv(cmd[0], cmd)
