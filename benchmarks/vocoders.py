"""Generation speed of the LPC vocoders: C kernels against the eager PyTorch loop.

For the recipe sizes of ``conf/wavernn.yaml`` (LPC WaveRNN) and ``conf/wavenet.yaml``
(LPC WaveNet), measures output samples per second of

* ``eager``: the per-sample PyTorch loop (the reference the kernels are tested against),
  a few hundred steps (its steady state);
* ``native``: the C kernel, one stream on one thread, and ``--batch`` streams on all
  threads;

and prints the real-time factor at 16 kHz and the speed-up over the eager loop of the
same configuration. The bf16 rows generate with ``precision="bfloat16"`` (the networks'
matrices stored as bfloat16, arithmetic in float32). Weights are random: speed does not
depend on them. The sparse rows prune the LPC WaveRNN's recurrent and output matrices
to ``--density`` of their 16 x 1 blocks (largest norms kept, as gradual pruning leaves
them; LPCNet keeps 10 % of its GRU) and generate with the block-sparse kernel, at the
recipe's hidden size and at ``--sparse-hidden``.

Every model carries a corpus colour, as trained ones do, so every row includes the
excitation-colour post-filter (:mod:`sps.vocoders.colour`) that generation runs by default;
``--alternate`` also times the LPC WaveNet without it (``colour=False``).

    python benchmarks/vocoders.py
    python benchmarks/vocoders.py --seconds 4 --batch 8 --density 0.1 --sparse-hidden 512
    python benchmarks/vocoders.py --alternate 12 --seconds 1     # WaveNet float32 / bf16 in turn
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sps.config import load_config  # noqa: E402
from sps.vocoders import build_vocoder  # noqa: E402
from sps.vocoders.pruning import block_mask  # noqa: E402

SR, HOP, COND_DIM = 16000, 80, 63
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FEATURES = {"sample_rate": SR, "alpha": 0.42, "mgc": [0, 60], "lf0": 60, "vuv": 61}


def model_of(conf: str, overrides: dict):
    cfg = load_config(os.path.join(ROOT, "recipes", "slt_festival", "conf", conf))
    options = {**cfg["model"], **overrides, "features": FEATURES}
    torch.manual_seed(0)
    m = build_vocoder(cfg["vocoder"], options, COND_DIM)
    mean, std = torch.zeros(COND_DIM), torch.full((COND_DIM,), 0.5)
    mean[60], std[60], mean[61] = 5.3, 0.2, 0.6
    m.set_conditioning(mean, std)
    m.corpus_colour.zero_()
    m.corpus_colour[:3] = torch.tensor([1.0, 0.03, 0.03])     # as measured on the shipped corpus, roughly
    return cfg["vocoder"], m.eval()


def pruned(model, density: float):
    """``model`` with its prunable matrices cut to ``density`` of their 16 x 1 blocks."""
    with torch.no_grad():
        for w in model.prunable().values():
            w.mul_(block_mask(w, 1.0 - density, (16, 1)))
    return model


def rate(model, B: int, seconds: float, backend: str, threads: int | None = None, **kw) -> float:
    T = max(2, int(seconds * SR / HOP))
    cond = torch.randn(B, T, COND_DIM)
    u = torch.rand(B, T * HOP, generator=torch.Generator().manual_seed(1))
    if threads:
        kw["threads"] = threads
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        model.generate(cond, uniforms=u, backend=backend, **kw)
        best = min(best, time.perf_counter() - t0)
    return B * T * HOP / best


def alternating(rounds: int, seconds: float) -> None:
    """The LPC WaveNet's C kernel, one stream on one thread, float32, bf16 and bf16 without
    the colour post-filter in turn for ``rounds`` rounds in one process (a busy or noisy
    machine slows all alike): best and median samples per second of each."""
    import statistics
    torch.set_num_threads(1)
    _, model = model_of("wavenet.yaml", {})
    variants = {"float32": {"precision": "float32"}, "bfloat16": {"precision": "bfloat16"},
                "bfloat16, no colour": {"precision": "bfloat16", "colour": False}}
    got = {name: [] for name in variants}
    for _ in range(rounds):
        for name, rates in got.items():
            rates.append(rate(model, 1, seconds, "native", threads=1, **variants[name]))
    for name, rates in got.items():
        print(f"wavenet_lpc (wavenet.yaml), {name:<19} best {max(rates):>8,.0f}  "
              f"median {statistics.median(rates):>8,.0f} samples/s ({rounds} rounds)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="audio per measurement of the kernels")
    ap.add_argument("--eager-seconds", type=float, default=0.05, help="audio per measurement of the eager loop")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--density", type=float, default=0.1, help="blocks kept in the sparse rows")
    ap.add_argument("--sparse-hidden", type=int, nargs="*", default=[512], help="more hidden sizes, sparse")
    ap.add_argument("--alternate", type=int, default=0, metavar="ROUNDS",
                    help="only the LPC WaveNet, float32 and bf16 in turn for ROUNDS rounds")
    args = ap.parse_args()
    if args.alternate:
        return alternating(args.alternate, args.seconds)
    threads = torch.get_num_threads()
    print(f"# torch {torch.__version__}, {os.cpu_count()} CPUs, {threads} threads, load {os.getloadavg()[0]:.1f}")
    print(f"{'model':<44} {'streams':>7} {'eager':>10} {'native':>10} {'speed-up':>9} {'x real time':>12}")
    sparse = {"precision": "bfloat16", "sparse": True}
    runs = [("wavernn.yaml", {}, {}, ""), ("wavernn.yaml", {"precision": "bfloat16"}, {}, ", bf16"),
            ("wavernn.yaml", sparse, {}, f", bf16, {args.density:.0%} blocks")]
    runs += [("wavernn.yaml", sparse, {"hidden": h}, f", H {h}, bf16, {args.density:.0%}") for h in args.sparse_hidden]
    runs += [("wavenet.yaml", {}, {}, ""), ("wavenet.yaml", {"precision": "bfloat16"}, {}, ", bf16")]
    for conf, extra, overrides, what in runs:
        name, model = model_of(conf, overrides)
        if extra.get("sparse"):
            model = pruned(model, args.density)
        label = f"{name} ({conf}{what})"
        for B in (1, args.batch):
            torch.set_num_threads(1)
            eager = rate(model, B, args.eager_seconds, "torch", **extra)
            torch.set_num_threads(threads)
            if name == "wavenet_lpc":
                fast = rate(model, B, args.seconds, "native", threads=1 if B == 1 else threads, **extra)
            else:
                os.environ["SPS_THREADS"] = "1" if B == 1 else str(threads)
                fast = rate(model, B, args.seconds, "native", **extra)
                del os.environ["SPS_THREADS"]
            print(f"{label:<44} {B:>7} {eager:>10,.0f} {fast:>10,.0f} {fast / eager:>8.1f}x {fast / SR:>11.2f}x",
                  flush=True)


if __name__ == "__main__":
    main()
