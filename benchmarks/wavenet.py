"""WaveNet generation speed: samples per second, single stream and batched.

Baseline: a straightforward eager PyTorch incremental loop (per-layer queues of past
inputs, one small op at a time, as most WaveNet implementations generate), measured
in the same run on the same model and draws (its first samples are checked to agree).
Compared: ``generate(backend="native")`` (C kernel; single stream with 1 thread and with
the weight rows split over 2 threads), ``generate(backend="torch")`` (eager torch step
with batched per-layer products), and with ``--device cuda`` ``backend="cuda_graph"``
against the same baseline on the GPU.

    python benchmarks/wavenet.py                   # recipe size + nv-wavenet default size
    python benchmarks/wavenet.py --device cuda
    python benchmarks/wavenet.py --seconds 0.5 --baseline-seconds 0.05   # quicker
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sps.vocoders.sampling import sample_cdf  # noqa: E402
from sps.vocoders.wavenet import WaveNet  # noqa: E402
from sps.vocoders.wavenet.generate import generate  # noqa: E402
from sps.vocoders.wavenet.native import library as native_lib  # noqa: E402

SIZES = {
    # the CPU recipe (recipes/slt_festival/conf/wavenet.yaml)
    "recipe": dict(out_channels=256, residual_channels=32, skip_channels=64, layers=12,
                   max_dilation=64, cond_channels=32),
    # nv-wavenet's default build: A=256, R=64, S=256, 20 layers, max dilation 512
    "nv-default": dict(out_channels=256, residual_channels=64, skip_channels=256, layers=20,
                       max_dilation=512, cond_channels=64),
}
SAMPLE_RATE = 16000
COND_DIM = 63


@torch.no_grad()
def naive_generate(model: WaveNet, cond: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The baseline: eager incremental generation, one layer op at a time."""
    B, T, _ = cond.shape
    N = T * model.hop_length
    R = model.R
    c = model.conditioning(cond)                                 # (B, L * 2R, N), once
    queues = [torch.zeros(B, R, d, device=cond.device) for d in model.dilations]
    yp = torch.full((B,), model.A // 2, dtype=torch.long, device=cond.device)
    yc = yp.clone()
    out = torch.empty(B, N, dtype=torch.long, device=cond.device)
    for t in range(N):
        x = model.embed(yp, yc)
        skip = 0.0
        for l, conv in enumerate(model.dilate):
            q = queues[l]
            x_old = q[:, :, 0]
            queues[l] = torch.cat([q[:, :, 1:], x[:, :, None]], dim=2)
            w = conv.weight
            h = F.linear(x_old, w[:, :, 0]) + F.linear(x, w[:, :, 1], conv.bias) + c[:, t, 2 * R * l:2 * R * (l + 1)]
            z = torch.tanh(h[:, :R]) * torch.sigmoid(h[:, R:])
            skip = skip + F.linear(z, model.skip[l].weight[:, :, 0], model.skip[l].bias)
            if l < model.L - 1:
                x = x + F.linear(z, model.res[l].weight[:, :, 0], model.res[l].bias)
        logits = F.linear(F.relu(F.linear(F.relu(skip), model.conv_out.weight[:, :, 0])),
                          model.conv_end.weight[:, :, 0])
        y = sample_cdf(logits, u[:, t])
        out[:, t] = y
        yp, yc = yc, y
    return out


def rate(fn, n_samples: int, repeat: int = 1) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return n_samples / best, result


def bench_size(name: str, kw: dict, args) -> list[tuple]:
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = WaveNet(COND_DIM, hop_length=80, **kw).to(device).eval()
    with torch.no_grad():                   # peakier outputs than the init, like a trained model
        model.conv_end.weight.mul_(4.0)
    rows = []
    hop = 80
    for B in (1, args.batch):
        T = max(1, int(args.seconds * SAMPLE_RATE / hop))
        Tb = max(1, int(args.baseline_seconds * SAMPLE_RATE / hop))
        cond = torch.randn(B, T, COND_DIM, device=device)
        u = torch.rand(B, T * hop, generator=torch.Generator().manual_seed(1))
        base_rate, base = rate(lambda: naive_generate(model, cond[:, :Tb], u[:, :Tb * hop].to(device)), B * Tb * hop)
        methods = []
        if device.type == "cuda":
            methods.append(("cuda graph", dict(backend="cuda_graph")))
        else:
            if native_lib() is not None:
                methods.append(("native C, 1 thread" if B == 1 else f"native C, {args.threads} threads",
                                dict(backend="native", threads=1 if B == 1 else args.threads)))
                if B == 1 and args.threads > 1:
                    methods.append((f"native C, {args.threads} threads (split rows)",
                                    dict(backend="native", threads=args.threads)))
        methods.append(("torch step", dict(backend="torch")))
        rows.append((name, B, "eager baseline", base_rate, 1.0))
        for label, mkw in methods:
            n_T = T if mkw["backend"] != "torch" else Tb
            r, res = rate(lambda: generate(model, cond[:, :n_T], uniforms=u[:, :n_T * hop], return_classes=True,
                                           progress=False, **mkw), B * n_T * hop, repeat=args.repeat)
            agree = torch.equal(res[:, :Tb * hop].cpu()[:, :200], base.cpu()[:, :200])
            rows.append((name, B, label + ("" if agree else " (samples differ from baseline!)"), r, r / base_rate))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="recipe,nv-default")
    ap.add_argument("--seconds", type=float, default=1.0, help="audio generated per fast measurement")
    ap.add_argument("--baseline-seconds", type=float, default=0.1, help="audio generated by the slow loops")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="native kernel threads (batched, split rows)")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="intra-op threads of the eager loops (1 is fastest for their tiny ops)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)
    print(f"# torch {torch.__version__}, device {args.device}, {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'size':<11} {'B':>2}  {'method':<44} {'samples/s':>11} {'x real time':>11} {'vs baseline':>11}")
    for name in args.sizes.split(","):
        for size, B, label, r, ratio in bench_size(name, SIZES[name], args):
            print(f"{size:<11} {B:>2}  {label:<44} {r:>11,.0f} {r / SAMPLE_RATE:>11.2f} {ratio:>10.1f}x")


if __name__ == "__main__":
    main()
