"""Wall time per epoch of MSE vs MGE training of the acoustic models (default recipe sizes).

Needs an experiment directory with features and statistics (recipe stages 0-3)::

    recipes/slt_festival/run.sh --stop-stage 3
    python benchmarks/train.py --exp-dir exp/slt_festival [--models dnn conv lstm] [--epochs 1]

For each model of the recipe (``conf/acoustic.yaml``, ``conf/acoustic_conv.yaml``; ``lstm``
is the BLSTM of ``conf/acoustic_lstm_gpu.yaml``) it
trains ``--epochs`` epochs with the MSE loss, then the same number with the MGE loss
(differentiable MLPG with the global variances, starting from the MSE weights), in a
temporary directory, and prints the mean seconds per epoch (validation included, as
in the recipe) and the MGE / MSE ratio. The issue's target: MGE <= 1.5x MSE.
"""
from __future__ import annotations

import argparse
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sps.config import load_config  # noqa: E402
from sps.stages.train import train  # noqa: E402
from sps.stages.runner import StageContext  # noqa: E402
from sps.io import read_json  # noqa: E402

CONF = ROOT / "recipes" / "slt_festival" / "conf"
CONFIGS = {"dnn": ("acoustic.yaml", "acoustic_mge.yaml"), "conv": ("acoustic_conv.yaml", "acoustic_conv_mge.yaml"),
           "lstm": ("acoustic_lstm_gpu.yaml", "acoustic_lstm_mge_gpu.yaml")}


def epoch_seconds(exp: Path, conf: Path, overrides: list[str]) -> tuple[float, dict]:
    cfg = load_config(conf, overrides)
    t0 = time.perf_counter()
    train(StageContext(exp, cfg, force=True))
    wall = time.perf_counter() - t0
    done = read_json(exp / "models" / cfg["name"] / "done.json")
    times = done["epoch_times"]
    return (sum(times) / len(times) if times else wall), done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exp-dir", type=Path, default=ROOT / "exp" / "slt_festival")
    ap.add_argument("--models", nargs="+", default=["dnn", "conv"], choices=sorted(CONFIGS))
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    src = args.exp_dir
    for need in ("dump/out_acoustic.json", "stats/out_acoustic.npz", "stats/in_acoustic.npz", "data/train.list"):
        if not (src / need).exists():
            sys.exit(f"{src / need} missing: run recipes/slt_festival/run.sh --stop-stage 3 first")
    if args.threads:
        torch.set_num_threads(args.threads)
    n_train = len((src / "data" / "train.list").read_text().split())
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {n_train} train utterances, {args.epochs} epoch(s) each", flush=True)
    print(f"{'model':6s} {'MSE s/epoch':>12s} {'MGE s/epoch':>12s} {'MGE/MSE':>8s}")
    with tempfile.TemporaryDirectory(prefix="sps_bench_train_") as tmp:
        exp = Path(tmp)
        for sub in ("data", "dump", "stats"):  # share the features, write models in the temp dir
            (exp / sub).symlink_to(src.resolve() / sub)
        for model in args.models:
            mse_conf, mge_conf = CONFIGS[model]
            ep = [f"train.epochs={args.epochs}", "train.plot=false"]
            t_mse, _ = epoch_seconds(exp, CONF / mse_conf, ep)
            t_mge, _ = epoch_seconds(exp, CONF / mge_conf, ep)
            print(f"{model:6s} {t_mse:12.2f} {t_mge:12.2f} {t_mge / t_mse:8.2f}", flush=True)


if __name__ == "__main__":
    main()
