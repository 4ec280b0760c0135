"""WaveRNN generation speed: fused C kernel (CPU) / CUDA graphs (GPU) vs the eager loop.

For each hidden size, measures output samples per second of

* ``eager``: the naive per-sample PyTorch loop (:func:`run_reference`), one stream
  and the folded batch (a few hundred steps, which is its steady state; the better
  of one thread and the default thread count);
* ``native`` (CPU) or ``cuda_graph`` (``--device cuda``): one stream, and one long
  utterance folded into a batch of segments (``WaveRNN.generate(fold=True)``,
  counting only the utterance's samples, so the warm-up/overlap overhead is paid);

with float32 and bfloat16 weights, and prints ratios against the eager loop of the
same configuration and the real-time factor (16 kHz). Weights are random: speed
does not depend on them.

    python benchmarks/wavernn.py                   # H = 896 and 384, CPU
    python benchmarks/wavernn.py --hidden 384 --seconds 4
    python benchmarks/wavernn.py --device cuda

``--quality`` trains, on ``data/slt_festival`` with the same batches and number of
steps (log-mel conditioning computed here, so the check needs no other stage), the
sparse models ``--prune`` of size ``--hidden`` (gradual pruning, Zhu & Gupta's cubic
schedule from 10 % to 60 % of the steps) and the dense model with as many non-zero
parameters, and compares their teacher-forced log-likelihood on held-out speech (the
WaveRNN paper's claim: the large sparse model is better at equal cost); then what
bf16 weights and one-shot magnitude pruning cost the dense model (likelihood, KL of
the coarse/fine distributions, waveforms generated with the same random draws).

    python benchmarks/wavernn.py --quality --hidden 896 --prune 90:16x1 --train-steps 600

``--sparse`` measures single-stream generation of block-pruned models (random weights
pruned to 90 / 95 % zero blocks of 16 x 1 or 4 x 4, the shapes gradual pruning makes)
against the dense kernel in the same run, and the bandwidth each reaches: bytes of
weights (non-zero blocks, their column indices and row pointers) read per sample times
samples per second, against the read bandwidth measured here for a buffer of the same
size (one thread summing it, best of many passes: cache-resident for small models).

    python benchmarks/wavernn.py --sparse --hidden 896 --threads 1

``--train`` times the teacher-forced recurrence (forward + backward of a batch of
16 x 800 samples) with ``torch.gru`` (ATen), the PyTorch-loop autograd Function
and the C kernels.

    python benchmarks/wavernn.py --train --hidden 384
"""
from __future__ import annotations

import argparse
import time

import torch

from sps.vocoders.wavernn import WaveRNN, split_16bit
from sps.vocoders.wavernn import generate as gen
from sps.vocoders.wavernn import native
from sps.vocoders.wavernn.model import pad_frames

SR, HOP, COND_DIM = 16000, 80, 63


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeat=2):
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def eager_rate(model, rows, device, precision, steps):
    """Samples/s of the eager loop over ``rows`` parallel rows (``steps`` samples each)."""
    frames = max(1, steps // HOP)
    w = gen.gen_weights(model, precision, device)
    P = pad_frames(model.cond_projection(torch.randn(rows, frames, COND_DIM, device=device)))
    u = torch.rand(rows, frames * HOP, 2, device=device)
    threads = torch.get_num_threads()
    best = float("inf")
    for n in sorted({1, threads}) if device.type == "cpu" else [threads]:
        torch.set_num_threads(n)   # tiny ops: one thread is often faster on a busy machine
        best = min(best, timed(lambda: gen.run_reference(w, P, u, HOP), device, repeat=1))
    torch.set_num_threads(threads)
    return rows * frames * HOP / best


def fast_single_rate(model, device, precision, seconds, backend):
    frames = int(seconds * SR / HOP)
    cond = torch.randn(1, frames, COND_DIM, device=device)
    dt = timed(lambda: model.generate(cond, backend=backend, precision=precision), device)
    return frames * HOP / dt


def fast_fold_rate(model, device, precision, seconds, backend, fold_frames):
    frames = int(seconds * SR / HOP)
    cond = torch.randn(1, frames, COND_DIM, device=device)
    dt = timed(lambda: model.generate(cond, fold=True, fold_frames=fold_frames, backend=backend,
                                      precision=precision), device)
    return frames * HOP / dt


def logmel(wav: torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """(N,) waveform -> (N // HOP, n_mels) log-mel frames (25 ms Hann window, 5 ms hop)."""
    import numpy as np
    n_fft = 512
    spec = torch.stft(wav, n_fft, HOP, 400, torch.hann_window(400), center=True,
                      return_complex=True).abs() ** 2                  # (F, T)
    f = np.linspace(0, SR / 2, n_fft // 2 + 1)
    mel = lambda x: 2595 * np.log10(1 + x / 700)
    edges = 700 * (10 ** (np.linspace(0, mel(SR / 2), n_mels + 2) / 2595) - 1)
    fb = np.maximum(0, np.minimum((f[None] - edges[:-2, None]) / np.diff(edges)[:-1, None],
                                  (edges[2:, None] - f[None]) / np.diff(edges)[1:, None]))
    out = torch.log(torch.from_numpy(fb).float() @ spec + 1e-5).t()
    return out[:len(wav) // HOP]


def load_corpus(root: str, count: int):
    import soundfile as sf
    from pathlib import Path
    items = []
    for path in sorted(Path(root, "wav").glob("*.flac"))[:count]:
        x, sr = sf.read(path, dtype="float32")
        if sr != SR:
            raise ValueError(f"{path}: sample rate {sr}, expected {SR}")
        x = torch.from_numpy(x)
        c = logmel(x)
        items.append((x[:len(c) * HOP], c))
    mean = torch.cat([c for _, c in items]).mean(0)
    std = torch.cat([c for _, c in items]).std(0)
    return [(x, (c - mean) / std) for x, c in items]


def train_on(model, train, steps, hook=None, seed=0, seg=10, bs=8, log=""):
    """Adam on random ``seg``-frame segments of ``train``; the batches depend only on ``seed``."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.time()
    for step in range(1, steps + 1):
        wav, cond = [], []
        for i in torch.randint(len(train), (bs,), generator=g).tolist():
            x, c = train[i]
            s = int(torch.randint(len(c) - seg, (), generator=g))
            wav.append(x[s * HOP:(s + seg) * HOP])
            cond.append(c[s:s + seg])
        loss = model.loss(torch.stack(wav), torch.stack(cond))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if hook is not None:
            hook.update(step)
        if step % 100 == 0:
            print(f"  {log} step {step}  loss {loss.item():.3f} nats/sample  ({time.time() - t0:.0f} s)", flush=True)
    return model.eval()


def held_out_loglik(model, wav, cond):
    """Teacher-forced log-likelihood (nats/sample, coarse + fine) and the log-softmaxes."""
    with torch.no_grad():
        lc, lf = [l.log_softmax(-1) for l in model.logits(wav, cond)]
        c, f = split_16bit(wav)
        return (lc.gather(-1, c[..., None]).mean() + lf.gather(-1, f[..., None]).mean()).item(), lc, lf


def nonzero_params(model) -> int:
    return sum(int(p.count_nonzero()) for p in model.parameters())


def equal_dense_hidden(target_nonzero: int, cond_channels: int) -> int:
    """The even hidden size whose dense WaveRNN has about ``target_nonzero`` parameters."""
    count = lambda H: sum(p.numel() for p in WaveRNN(80, hidden=H, cond_channels=cond_channels).parameters())
    return min(range(32, 1025, 2), key=lambda H: abs(count(H) - target_nonzero))


def parse_prune(text: str) -> tuple[float, tuple[int, int]]:
    """``"90:16x1"`` -> (0.9, (16, 1))."""
    pct, _, blk = text.partition(":")
    rows, _, cols = (blk or "16x1").partition("x")
    return int(pct) / 100, (int(rows), int(cols))


def quality(args):
    """Sparse H (gradual pruning) vs the dense model of equal non-zero parameter count,
    equal training budget (steps and batches); then what bf16 and one-shot pruning cost."""
    import copy
    import math
    from sps.vocoders.pruning import GradualPruning
    from sps.vocoders.wavernn import magnitude_prune
    data = load_corpus(args.corpus, args.utts + 4)
    train, held = data[:args.utts], data[args.utts:]
    frames = 200                                              # 2 s of each held-out utterance
    wav = torch.stack([x[:frames * HOP] for x, _ in held])
    cond = torch.stack([c[:frames] for _, c in held])
    steps, H = args.train_steps, args.hidden[0]
    start, end = int(0.1 * steps), int(0.6 * steps)
    print(f"equal budget: {steps} steps of 8 x 800 samples on {len(train)} utterances of {args.corpus}; "
          f"pruning (cubic) over steps {start}..{end}; held-out: {len(held)} x 2 s; threads={torch.get_num_threads()}")
    rows, models = [], {}
    for spec in args.prune:
        sparsity, block = parse_prune(spec)
        torch.manual_seed(0)
        m = WaveRNN(80, hidden=H, cond_channels=128, hop_length=HOP)
        hook = GradualPruning(m.prunable(), sparsity, start, end, every=max(1, (end - start) // 20), block=block)
        train_on(m, train, steps, hook, log=f"H={H} {spec}")
        models[f"H={H} {sparsity:.0%} {block[0]}x{block[1]}"] = m
    target = min(nonzero_params(m) for m in models.values()) if models else None
    dense_sizes = ([equal_dense_hidden(target, 128)] if target else []) + ([H] if args.dense_full else [])
    for Hd in dense_sizes:
        torch.manual_seed(0)
        m = train_on(WaveRNN(80, hidden=Hd, cond_channels=128, hop_length=HOP), train, steps, log=f"dense H={Hd}")
        models[f"H={Hd} dense"] = m
    ref_name = f"H={dense_sizes[0]} dense" if dense_sizes else None
    ref_ll = held_out_loglik(models[ref_name], wav, cond)[0] if ref_name else 0.0
    print(f"\n{'model':>20} {'non-zero params':>15} {'CSR bf16 MB':>11} {'loglik nats/sample':>18} "
          f"{'vs ' + (ref_name or '-'):>17} {'bf16 samples/s':>14}")
    gen_cond = torch.randn(1, 200, 80)
    for name, m in models.items():
        ll = held_out_loglik(m, wav, cond)[0]
        mats = list(m.prunable().values())
        sparse = native.block_density(m.R) < 0.6
        mb = sum((len(native.block_csr(w, True)[1]) * (32 + 4) if sparse else w.numel() * 2) for w in mats) / 1e6
        with torch.no_grad():
            dt = timed(lambda: m.generate(gen_cond, backend="native", precision="bfloat16"), torch.device("cpu"))
        print(f"{name:>20} {nonzero_params(m):>15,} {mb:>11.2f} {ll:>18.4f} {ll - ref_ll:>+17.4f} "
              f"{200 * HOP / dt:>14,.0f}", flush=True)

    # what bf16 weights and one-shot magnitude pruning (no fine-tuning) cost the dense model
    model = models[ref_name] if ref_name else train_on(
        WaveRNN(80, hidden=H, cond_channels=128, hop_length=HOP), train, steps, log=f"dense H={H}")

    def variant(kind):
        m = copy.deepcopy(model)
        if kind == "bf16":
            with torch.no_grad():
                for w in m.prunable().values():
                    w.copy_(w.bfloat16().float())
        else:
            magnitude_prune(m, int(kind[5:]) / 100)
        return m

    ref_ll, ref_c, ref_f = held_out_loglik(model, wav, cond)
    with torch.no_grad():
        ref_gen = model.generate(cond, backend="native", generator=torch.Generator().manual_seed(1))
    print(f"\none-shot changes to the {ref_name or 'dense'} model (float32 log-likelihood {ref_ll:.4f} nats/sample, "
          f"{ref_ll / math.log(2):.3f} bits)")
    print(f"{'weights':>9} {'d loglik nats/sample':>21} {'KL coarse':>10} {'KL fine':>9} "
          f"{'gen SNR dB':>11} {'same samples':>13}")
    for kind in ("bf16", "prune50", "prune75", "prune90"):
        m = variant(kind)
        ll, lc, lf = held_out_loglik(m, wav, cond)
        kl_c = (ref_c.exp() * (ref_c - lc)).sum(-1).mean().item()
        kl_f = (ref_f.exp() * (ref_f - lf)).sum(-1).mean().item()
        with torch.no_grad():
            g = m.generate(cond, backend="native", generator=torch.Generator().manual_seed(1))
        snr = 10 * math.log10((ref_gen ** 2).sum() / ((ref_gen - g) ** 2).sum().clamp_min(1e-20))
        same = (g == ref_gen).float().mean().item()
        print(f"{kind:>9} {ll - ref_ll:>21.4f} {kl_c:>10.5f} {kl_f:>9.5f} {snr:>11.1f} {same:>12.1%}")


def read_bandwidth(nbytes: int, seconds: float = 0.3) -> float:
    """Bytes/s one thread reads summing a float32 buffer of ``nbytes`` (best pass)."""
    x = torch.ones(max(nbytes // 4, 1024))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    best, t_end = float("inf"), time.perf_counter() + seconds
    reps = max(1, (1 << 22) // x.numel())
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        for _ in range(reps):
            x.sum()
        best = min(best, (time.perf_counter() - t0) / reps)
    torch.set_num_threads(threads)
    return x.numel() * 4 / best


def weight_bytes(model, bf16: bool, sparse: bool) -> int:
    """Bytes of the generation matrices the kernel reads for one sample."""
    size = 2 if bf16 else 4
    total = 0
    for w in model.prunable().values():
        if sparse:
            ptr, idx, _ = native.block_csr(w, bf16)
            total += len(idx) * (native.SP_BLOCK * size + 4) + ptr.numel() * 4
        else:
            total += w.numel() * size
    return total


def sparse_speed(args):
    from sps.vocoders.pruning import block_mask
    seconds = args.seconds or 2.0
    frames = int(seconds * SR / HOP)
    print(f"single-stream generation, {seconds:g} s, threads={torch.get_num_threads()}, random weights pruned "
          "per matrix (R, O1..O4); GB/s = weight bytes per sample x samples/s; 'of read bw': against one "
          "thread summing a buffer of the same size")
    print(f"{'H':>5} {'sparsity':>8} {'block':>6} {'weights':>7} {'layout':>6} {'MB':>6} {'samples/s':>10} "
          f"{'x real time':>11} {'vs dense bf16':>13} {'GB/s':>6} {'of read bw':>10}")
    torch.manual_seed(0)
    for H in args.hidden:
        dense = WaveRNN(COND_DIM, hidden=H).eval()
        cond = torch.randn(1, frames, COND_DIM)
        base = None
        for sparsity, block in ((0.0, None), (0.9, (16, 1)), (0.95, (16, 1)), (0.9, (4, 4)), (0.95, (4, 4))):
            model = dense
            if sparsity:
                import copy
                model = copy.deepcopy(dense)
                with torch.no_grad():
                    for w in model.prunable().values():
                        w.mul_(block_mask(w, sparsity, block))
            for precision in ("bfloat16", "float32") if sparsity else ("bfloat16",):
                bf16 = precision == "bfloat16"
                with torch.no_grad():
                    dt = timed(lambda: model.generate(cond, backend="native", precision=precision,
                                                      sparse=bool(sparsity)), torch.device("cpu"), repeat=3)
                rate = frames * HOP / dt
                base = base or rate
                nbytes = weight_bytes(model, bf16, bool(sparsity))
                bw = nbytes * rate
                print(f"{H:>5} {sparsity:>8.0%} {'-' if block is None else '%dx%d' % block:>6} "
                      f"{'bf16' if bf16 else 'fp32':>7} {'csr' if sparsity else 'dense':>6} {nbytes / 1e6:>6.2f} "
                      f"{rate:>10,.0f} {rate / SR:>10.2f}x {rate / base:>12.2f}x {bw / 1e9:>6.1f} "
                      f"{bw / read_bandwidth(nbytes):>9.0%}", flush=True)


def train_speed(args):
    import torch.nn.functional as F
    from sps.vocoders.wavernn.rnn import gru_aten, gru_sequence
    B, N, D = 16, 800, 128
    print(f"teacher-forced recurrence, batch {B} x {N} samples, threads={torch.get_num_threads()}, "
          "wall time, best of 3")
    for H in args.hidden:
        g = torch.Generator().manual_seed(0)
        inp = torch.randn(B, N, 3 + D, generator=g)
        w_ih = (torch.randn(3 * H, 3 + D, generator=g) * 0.05).requires_grad_()
        b = torch.zeros(3 * H, requires_grad=True)
        R = (torch.randn(3 * H, H, generator=g) / H ** 0.5).requires_grad_()
        dout = torch.randn(B, N, H, generator=g)
        impls = {"torch.gru (ATen)": lambda: gru_aten(inp, w_ih, b, R),
                 "PyTorch loop": lambda: gru_sequence(F.linear(inp, w_ih, b), R, use_native=False),
                 "C kernels": lambda: gru_sequence(F.linear(inp, w_ih, b), R)}
        base = None
        for name, fn in impls.items():
            fwd = bwd = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                out = fn()
                t1 = time.perf_counter()
                (out * dout).sum().backward()
                t2 = time.perf_counter()
                fwd, bwd = min(fwd, t1 - t0), min(bwd, t2 - t1)
            base = base or fwd + bwd
            print(f"H={H:>4} {name:>17}: forward {fwd:6.3f} s  backward {bwd:6.3f} s  "
                  f"speed-up {base / (fwd + bwd):4.1f}x", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, nargs="+", default=[896, 384])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=None,
                    help="utterance length for the fast paths (default 2 s single / 8 s folded on "
                         "CPU, 10 s / 60 s on CUDA)")
    ap.add_argument("--fold-frames", type=int, default=None,
                    help="core frames per fold segment (default 100 CPU, 50 CUDA)")
    ap.add_argument("--eager-steps", type=int, default=160)
    ap.add_argument("--threads", type=int, default=None, help="torch / kernel threads")
    ap.add_argument("--quality", action="store_true", help="measure bf16/pruning quality cost")
    ap.add_argument("--train", action="store_true", help="time the training recurrence")
    ap.add_argument("--sparse", action="store_true", help="block-sparse vs dense generation speed")
    ap.add_argument("--train-steps", type=int, default=600, help="training steps of every --quality model")
    ap.add_argument("--prune", nargs="*", default=["90:16x1"],
                    help="--quality: sparse models of --hidden, as SPARSITY%%:ROWSxCOLS (e.g. 95:4x4)")
    ap.add_argument("--dense-full", action="store_true", help="--quality: also the dense model of --hidden")
    ap.add_argument("--utts", type=int, default=60, help="training utterances for --quality")
    ap.add_argument("--corpus", default="data/slt_festival")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quality:
        return quality(args)
    if args.train:
        return train_speed(args)
    if args.sparse:
        return sparse_speed(args)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    backend = "cuda_graph" if cuda else "native"
    if not cuda and native.library() is None:
        raise SystemExit("the C kernel did not build (no compiler?); nothing to benchmark")
    single_s = args.seconds or (10.0 if cuda else 2.0)
    fold_s = args.seconds or (60.0 if cuda else 8.0)
    fold_frames = args.fold_frames or (50 if cuda else 100)
    n_seg = -(-int(fold_s * SR / HOP) // fold_frames)
    print(f"device={device}  torch={torch.__version__}  threads={torch.get_num_threads()}  "
          f"backend={backend}  fold: {fold_s:g} s utterance -> {n_seg} segments of "
          f"{fold_frames}+8 warm-up+4 overlap frames")
    print(f"{'H':>5} {'mode':>7} {'weights':>8} {'eager samples/s':>16} {'fast samples/s':>15} "
          f"{'speed-up':>9} {'x real time':>12}")
    torch.manual_seed(0)
    for H in args.hidden:
        model = WaveRNN(COND_DIM, hidden=H).to(device).eval()
        with torch.no_grad():
            for mode in ("single", "folded"):
                rows = 1 if mode == "single" else n_seg
                for precision in ("float32", "bfloat16"):
                    if mode == "single":
                        fast = fast_single_rate(model, device, precision, single_s, backend)
                    else:
                        fast = fast_fold_rate(model, device, precision, fold_s, backend, fold_frames)
                    base = eager_rate(model, rows, device, precision, args.eager_steps)
                    print(f"{H:>5} {mode:>7} {'fp32' if precision == 'float32' else 'bf16':>8} {base:>16,.0f} {fast:>15,.0f} "
                          f"{fast / base:>8.1f}x {fast / SR:>11.2f}x", flush=True)


if __name__ == "__main__":
    main()
