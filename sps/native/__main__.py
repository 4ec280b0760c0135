"""``python -m sps.native [--werror]``: build every kernel (CI checks them with -Werror)."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from sps.native import KERNELS, WARNINGS, compile_kernel, compiler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sps.native", description=__doc__)
    parser.add_argument("--werror", action="store_true", help="compile with -Wall -Wextra -Werror")
    args = parser.parse_args(argv)
    cc = compiler()
    if cc is None:
        print("sps.native: no C compiler found", file=sys.stderr)
        return 1
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in KERNELS:
            proc = compile_kernel(name, Path(tmp) / f"{name}.so", cc, WARNINGS if args.werror else ())
            status = "ok" if proc.returncode == 0 else "FAILED"
            print(f"{name:10s} {status}")
            if proc.returncode:
                failed += 1
                print(proc.stderr, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
