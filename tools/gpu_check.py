"""One prepared device check: every CUDA path of sps, its speed and its agreement with the CPU.

Run it through ``tools/gpu_check.sh`` (which sets ``PYTHONPATH=.``)::

    bash tools/gpu_check.sh                 # on a GPU machine: at most ~8 minutes
    bash tools/gpu_check.sh --dry-run       # anywhere: the same code paths at tiny sizes on the CPU

Every section runs in its own process with a time limit, so one hang cannot eat the lease;
a section that fails or times out becomes a row saying so. The result is one markdown
table, printed and written to ``$OUT/gpu.md`` when ``$OUT`` is set (``--out`` too).

Sections: the device; the CUDA tests (``pytest -m cuda``); MLPG forward and
forward+backward (B=32, T=500, 60x3 dims) against a dense unit-variance MLPG (the method
of diffsptk, written here); the IIR bank ``[32, 128, 16000]``; WaveNet generation at the
nv-wavenet default size (1 and 8 streams); WaveRNN H=896 generation (one stream and
folded); the LPC vocoders; training throughput of every vocoder ``*_gpu.yaml``; and for
each kernel the largest difference between the CUDA and the CPU result of the same inputs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "recipes" / "slt_festival" / "conf"

#: (section, time limit in seconds); the sum stays under 8 minutes
SECTIONS = [("device", 40), ("tests", 100), ("mlpg", 45), ("iir", 45), ("wavenet", 60), ("wavernn", 60),
            ("lpc", 45), ("train", 230)]


# ----------------------------------------------------------------------------- helpers
def emit(measure: str, value: str, target: str = "", note: str = "") -> None:
    """One table row (printed as a JSON line for the driver)."""
    print(json.dumps({"row": [measure, value, target, note]}), flush=True)


def device(dry: bool):
    import torch
    if dry:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device (use --dry-run to check the script on a CPU)")
    return torch.device("cuda")


def sync(dev) -> None:
    import torch
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, dev, repeat: int = 10) -> float:
    """Median wall time (s) of ``fn()`` after two warm-up calls."""
    fn()
    fn()
    sync(dev)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync(dev)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def maxdiff(a, b) -> float:
    return float((a.detach().double().cpu() - b.detach().double().cpu()).abs().max())


def cond_features(dim: int = 63) -> dict:
    """The conditioning layout of the recipe (60 mgc, lf0, vuv, 1 bap at 16 kHz)."""
    return {"sample_rate": 16000, "alpha": 0.42, "mgc": [0, 60], "lf0": 60, "vuv": 61}


def lpc_stats(dim: int = 63):
    import torch
    mean, std = torch.zeros(dim), torch.full((dim,), 0.5)
    mean[60], std[60] = 5.3, 0.2           # ln 200 Hz
    mean[61], std[61] = 0.6, 0.5
    return mean, std


# ----------------------------------------------------------------------------- sections
def s_device(dry: bool) -> None:
    import torch
    dev = device(dry)
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "CPU (dry run)"
    try:
        import triton
        tv = triton.__version__
    except ImportError:
        tv = "not installed"
    emit("device", name, note=f"torch {torch.__version__}, CUDA {torch.version.cuda}, triton {tv}")


def s_tests(dry: bool) -> None:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=90)
    tail = [line for line in proc.stdout.splitlines() if line.strip()][-1:] or ["(no output)"]
    failed = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("FAILED")]
    emit("pytest -m cuda", tail[0], "all pass", ("failed: " + ", ".join(failed)) if failed else "")


def s_mlpg(dry: bool) -> None:
    import torch
    from sps.mlpg import mlpg, unit_variance_mlpg
    from sps.mlpg.windows import apply_windows, frame_mask
    from sps.spec import check_windows, default_windows
    dev = device(dry)
    B, T, D = (2, 40, 4) if dry else (32, 500, 60)
    g = torch.Generator().manual_seed(0)
    means = torch.randn(B, T, 3 * D, generator=g)
    var = torch.rand(B, T, 3 * D, generator=g) + 0.1
    m, v = means.to(dev).requires_grad_(), var.to(dev).requires_grad_()

    def fwd():
        with torch.no_grad():
            mlpg(m, v)

    def fwd_bwd():
        y = mlpg(m, v)
        y.sum().backward()
    t_f, t_fb = timed(fwd, dev), timed(fwd_bwd, dev)
    emit(f"MLPG forward, B={B} T={T} {D}x3, per-frame variances", f"{t_f * 1e3:.3f} ms")
    emit("MLPG forward+backward", f"{t_fb * 1e3:.3f} ms", "< 1 ms" if not dry else "")
    # the dense unit-variance MLPG (diffsptk's method: one precomputed T x 3T matrix), same edge rule
    windows = check_windows(default_windows())
    Wf = apply_windows(torch.eye(T, dtype=torch.float64)[None], windows)[0]      # (T, 3, T): rows (t, w)
    used = frame_mask(windows, T, None, torch.device("cpu"))[0][0, :, :, 0]     # (T, 3)
    Wf = (Wf * used[..., None]).reshape(3 * T, T)
    solve = torch.linalg.solve(Wf.T @ Wf, Wf.T).float().to(dev)                  # (T, 3T)
    mu = means.view(B, T, 3, D).reshape(B, 3 * T, D).to(dev).requires_grad_()

    def dense_fb():
        y = solve @ mu
        y.sum().backward()

    def sparse_fb():
        y = unit_variance_mlpg(m)
        y.sum().backward()
    t_dense, t_uv = timed(dense_fb, dev), timed(sparse_fb, dev)
    with torch.no_grad():
        agree = maxdiff(solve @ mu, unit_variance_mlpg(m))
    emit("unit-variance MLPG fwd+bwd: sps (banded)", f"{t_uv * 1e3:.3f} ms",
         f"dense (diffsptk's method): {t_dense * 1e3:.3f} ms",
         f"{t_dense / t_uv:.1f}x faster; results agree to {agree:.1e}")
    # agreement with the CPU kernel
    if dev.type == "cuda":
        mc, vc = means.clone().requires_grad_(), var.clone().requires_grad_()
        yc = mlpg(mc, vc)
        (yc * torch.linspace(-1, 1, D)).sum().backward()
        m.grad = v.grad = None
        yg = mlpg(m, v)
        (yg * torch.linspace(-1, 1, D, device=dev)).sum().backward()
        emit("MLPG CUDA vs CPU, max |diff|", f"y {maxdiff(yc, yg):.2e}, dmu {maxdiff(mc.grad, m.grad):.2e}, "
             f"dvar {maxdiff(vc.grad, v.grad):.2e}", "~1e-5 (float32)")


def s_iir(dry: bool) -> None:
    import torch
    from sps.dsp import biquad_coefficients, lfilter
    dev = device(dry)
    B, C, T = (2, 4, 400) if dry else (32, 128, 16000)
    g = torch.Generator().manual_seed(1)
    freqs = torch.rand(C, generator=g) * 6000 + 100
    b, a = biquad_coefficients("bandpass", freqs, torch.full((C,), 2.0), 16000)
    x = torch.randn(B, C, T, generator=g) * 0.1
    xd, ad, bd = x.to(dev).requires_grad_(), a.to(dev).requires_grad_(), b.to(dev).requires_grad_()

    def fwd():
        with torch.no_grad():
            lfilter(xd, ad, bd, check_stability=False)

    def fwd_bwd():
        lfilter(xd, ad, bd, check_stability=False).square().sum().backward()
    t_f, t_fb = timed(fwd, dev, 5), timed(fwd_bwd, dev, 5)
    emit(f"IIR bank forward [{B}, {C}, {T}], biquads", f"{t_f * 1e3:.2f} ms", "< 2 ms" if not dry else "")
    emit("IIR bank forward+backward", f"{t_fb * 1e3:.2f} ms")
    if dev.type == "cuda":
        yc = lfilter(x, a, b, check_stability=False)
        yg = lfilter(xd.detach(), ad.detach(), bd.detach(), check_stability=False)
        emit("IIR CUDA vs CPU, max |diff|", f"{maxdiff(yc, yg):.2e}", "~1e-5 (float32)")


def s_wavenet(dry: bool) -> None:
    import torch
    from sps.vocoders.wavenet import WaveNet
    from sps.vocoders.wavenet.generate import generate
    dev = device(dry)
    torch.manual_seed(0)
    size = dict(out_channels=32, residual_channels=8, skip_channels=16, layers=4, max_dilation=4,
                cond_channels=8) if dry else dict(out_channels=256, residual_channels=64, skip_channels=256,
                                                  layers=20, max_dilation=512, cond_channels=64)
    model = WaveNet(63, hop_length=80, **size).to(dev).eval()
    backend = "torch" if dry else "cuda_graph"
    seconds = 0.02 if dry else 0.5
    T = max(1, int(seconds * 200))
    for B in (1, 8):
        cond = torch.randn(B, T, 63, device=dev)
        u = torch.rand(B, T * 80, generator=torch.Generator().manual_seed(B))
        t0 = time.perf_counter()
        generate(model, cond, uniforms=u, backend=backend, progress=False, return_classes=True)
        sync(dev)
        rate = B * T * 80 / (time.perf_counter() - t0)
        label = "tiny" if dry else "nv-wavenet default size (R=64, S=256, 20 layers)"
        emit(f"WaveNet {label}, {B} stream{'s' * (B > 1)}, {backend}", f"{rate:,.0f} samples/s",
             "nv-wavenet on a P40: 29-48k" if not dry else "")
    if dev.type == "cuda":
        cond = torch.randn(2, 4, 63)
        u = torch.rand(2, 320, generator=torch.Generator().manual_seed(9))
        a = generate(model.cpu(), cond, uniforms=u, backend="torch", return_classes=True)
        b = generate(model.to(dev), cond.to(dev), uniforms=u, backend="cuda_graph", return_classes=True)
        emit("WaveNet CUDA graph vs CPU, same draws", f"{(a == b.cpu()).float().mean() * 100:.2f} % equal classes",
             "> 99 %")


def s_wavernn(dry: bool) -> None:
    import torch
    from sps.vocoders.wavernn import WaveRNN
    dev = device(dry)
    torch.manual_seed(0)
    H = 32 if dry else 896
    model = WaveRNN(63, hidden=H, cond_channels=16 if dry else 128, hop_length=80).to(dev).eval()
    backend = "torch" if dry else "cuda_graph"
    T = 2 if dry else 100
    cond = torch.randn(1, T, 63, device=dev)
    t0 = time.perf_counter()
    model.generate(cond, backend=backend, generator=torch.Generator().manual_seed(0))
    sync(dev)
    emit(f"WaveRNN H={H}, 1 stream, {backend}", f"{T * 80 / (time.perf_counter() - t0):,.0f} samples/s",
         ">= 24,000" if not dry else "")
    Tf = 4 if dry else 1000
    cond = torch.randn(1, Tf, 63, device=dev)
    kw = dict(fold=True, fold_frames=2 if dry else 50, warmup_frames=1 if dry else 8, overlap_frames=1 if dry else 4)
    t0 = time.perf_counter()
    model.generate(cond, backend=backend, generator=torch.Generator().manual_seed(0), **kw)
    sync(dev)
    emit(f"WaveRNN H={H}, folded ({Tf} frames), {backend}", f"{Tf * 80 / (time.perf_counter() - t0):,.0f} samples/s",
         ">= 1,000,000" if not dry else "")
    if dev.type == "cuda":
        c = torch.randn(2, 3, 63)
        u = torch.Generator().manual_seed(3)
        a = model.cpu().generate(c, backend="torch", generator=u)
        b = model.to(dev).generate(c.to(dev), backend="cuda_graph", generator=torch.Generator().manual_seed(3))
        emit("WaveRNN CUDA graph vs CPU, same draws", f"max |diff| {maxdiff(a, b):.2e}", "0 (same samples)")


def s_lpc(dry: bool) -> None:
    import torch
    from sps.vocoders import build_vocoder
    dev = device(dry)
    for kind, size in (("wavernn_lpc", {"hidden": 32 if dry else 384}),
                       ("wavenet_lpc", {"residual_channels": 8 if dry else 64, "layers": 3 if dry else 10})):
        torch.manual_seed(0)
        m = build_vocoder(kind, {"features": cond_features(), **size}, 63)
        m.set_conditioning(*lpc_stats())
        m = m.to(dev).eval()
        T = 2 if dry else 20
        cond = torch.randn(4, T, 63)
        u = torch.rand(4, T * 80, generator=torch.Generator().manual_seed(1))
        t0 = time.perf_counter()
        wd, qd = m.generate(cond.to(dev), uniforms=u, backend="torch", return_excitation=True)
        sync(dev)
        rate = 4 * T * 80 / (time.perf_counter() - t0)
        wc, qc = m.cpu().generate(cond, uniforms=u, backend="auto", return_excitation=True)
        emit(f"{kind} torch loop on {dev.type}, 4 streams", f"{rate:,.0f} samples/s",
             note=f"{(qd.cpu() == qc).float().mean() * 100:.1f} % classes equal to the CPU kernel")


def s_train(dry: bool, seconds: float) -> None:
    import torch
    from sps.config import bind, load_config
    from sps.stages.vocoder import VocoderConfig, make_vocoder
    from sps.vocoders.conditioning import Conditioning
    dev = device(dry)
    spec = {"kind": "out_acoustic", "dim": 63 * 3, "sample_rate": 16000, "frame_shift_ms": 5.0,
            "windows": [[0, 0, [1.0]]],
            "streams": [{"name": n, "start": s, "static_dim": d, "num_windows": 1}
                        for n, s, d in (("mgc", 0, 60), ("lf0", 60, 1), ("vuv", 61, 1), ("bap", 62, 1))],
            "analysis": {"alpha": 0.42, "fft_size": 1024}}
    mean, std = lpc_stats()
    cond_map = Conditioning(spec, mean.numpy(), std.numpy())
    for path in sorted(CONF.glob("*_gpu.yaml")):
        raw = load_config(path)
        if "vocoder" not in raw:   # the acoustic and duration models' GPU configs
            continue
        if dry:   # the same code path at a tiny size
            small = {"hidden": 32, "residual_channels": 8, "skip_channels": 16, "layers": 3, "cond_channels": 8}
            raw["model"] = {**raw.get("model", {}), **{k: v for k, v in small.items() if k in raw.get("model", {})}}
            raw["train"] = {**raw.get("train", {}), "batch_size": 2, "segment_frames": 2}
        cfg = bind(VocoderConfig, raw, path.name)
        torch.manual_seed(0)
        model, _ = make_vocoder(cfg, cond_map)
        model = model.to(dev).train()
        frames = cfg.train.segment_frames + int(getattr(model, "context_frames", 0))
        Bsz = cfg.train.batch_size
        wav = (torch.rand(Bsz, frames * 80, device=dev) - 0.5) * 0.2
        cond = torch.randn(Bsz, frames, 63, device=dev)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        use_amp = cfg.train.amp and dev.type == "cuda"
        steps, t0 = 0, time.perf_counter()
        budget = 0.0 if dry else seconds
        while steps < 3 or time.perf_counter() - t0 < budget:
            with torch.autocast(dev.type, dtype=getattr(torch, cfg.train.amp_dtype), enabled=use_amp):
                loss = model.loss(wav, cond)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            if steps == 2:
                sync(dev)
                t0 = time.perf_counter()   # the first steps compile / warm up
                steps_timed = 0
            else:
                steps_timed = steps - 2
        sync(dev)
        dt = max(time.perf_counter() - t0, 1e-9)
        rate = steps_timed * Bsz * frames * 80 / dt if steps_timed else float("nan")
        emit(f"train {path.name} ({cfg.vocoder}), batch {Bsz} x {frames * 80} samples",
             f"{rate:,.0f} samples/s", note=f"{steps_timed} steps in {dt:.0f} s, loss {float(loss):.3f}")


# ----------------------------------------------------------------------------- driver
def run_section(name: str, limit: float, dry: bool, train_seconds: float) -> list[list[str]]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--section", name, "--train-seconds", str(train_seconds)]
    if dry:
        cmd.append("--dry-run")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired as err:
        rows = [json.loads(line)["row"] for line in (err.stdout or b"").decode(errors="replace").splitlines()
                if line.startswith('{"row"')]
        return rows + [[name, f"TIMEOUT after {limit:.0f} s", "", ""]]
    rows = [json.loads(line)["row"] for line in proc.stdout.splitlines() if line.startswith('{"row"')]
    if proc.returncode != 0:
        err = " ".join((proc.stderr.strip().splitlines() or ["?"])[-1].split())[:200]
        rows.append([name, "FAILED", "", err.replace("|", "/")])
    print(f"# {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (Triton interpreted)")
    ap.add_argument("--out", default=os.environ.get("OUT"), help="directory for gpu.md (default $OUT)")
    ap.add_argument("--section", help=argparse.SUPPRESS)
    ap.add_argument("--train-seconds", type=float, default=50.0, help="training time per *_gpu.yaml")
    args = ap.parse_args()
    if args.section:
        fn = {"device": s_device, "tests": s_tests, "mlpg": s_mlpg, "iir": s_iir, "wavenet": s_wavenet,
              "wavernn": s_wavernn, "lpc": s_lpc}.get(args.section)
        if args.section == "train":
            s_train(args.dry_run, args.train_seconds)
        elif fn is None:
            raise SystemExit(f"unknown section {args.section!r}")
        else:
            fn(args.dry_run)
        return 0
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    for name, limit in SECTIONS:
        rows += run_section(name, limit / (4 if args.dry_run else 1) + (60 if args.dry_run else 0),
                            args.dry_run, args.train_seconds)
    lines = [f"GPU check ({'dry run on the CPU' if args.dry_run else 'device'}), {started}", "",
             "| measurement | result | target / reference | note |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu.md").write_text(table)
    failed = [r for r in rows if r[1] in ("FAILED",) or str(r[1]).startswith("TIMEOUT")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
