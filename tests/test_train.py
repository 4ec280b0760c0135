import json
import os
import socket
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from sps.train import BucketBatchSampler, RankBatches, checkpoints, fit, load_checkpoint, pad_sequences, rank_share
from sps.train.trainer import lr_lambda, train_config


class SeqData(torch.utils.data.Dataset):
    """Variable-length sequences: y = x @ W + noise (learnable by a linear layer)."""

    def __init__(self, n, seed=0, din=4, dout=2):
        g = np.random.default_rng(seed)
        w = np.random.default_rng(123).standard_normal((din, dout))
        self.lengths = g.integers(3, 12, size=n).tolist()
        self.items = []
        for t in self.lengths:
            x = g.standard_normal((t, din)).astype(np.float32)
            y = (x @ w + 0.01 * g.standard_normal((t, dout))).astype(np.float32)
            self.items.append((x, y))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def collate(items):
    x, lengths = pad_sequences([torch.from_numpy(a) for a, _ in items])
    y, _ = pad_sequences([torch.from_numpy(b) for _, b in items])
    return {"x": x, "y": y, "lengths": lengths}


class Net(nn.Module):
    def __init__(self, dropout=0.2):
        super().__init__()
        self.l1, self.drop, self.l2 = nn.Linear(4, 16), nn.Dropout(dropout), nn.Linear(16, 2)

    def forward(self, x):
        return self.l2(self.drop(torch.tanh(self.l1(x))))


def step_fn(model, batch):
    mask = (torch.arange(batch["x"].shape[1])[None] < batch["lengths"][:, None]).unsqueeze(-1)
    err = (model(batch["x"]) - batch["y"]) ** 2 * mask
    return err.sum() / (mask.sum() * 2)


CFG = dict(batch_size=4, lr=3e-2, lr_schedule="cosine", warmup_steps=2, grad_clip=1.0, seed=3,
           log_every=2, plot=False, device="cpu")


def test_sampler_is_a_partition_and_buckets():
    lengths = np.random.default_rng(0).integers(1, 100, 103)
    s = BucketBatchSampler(103, 8, lengths, seed=1, pool_batches=4)
    batches = s.batches(0)
    assert sorted(i for b in batches for i in b) == list(range(103))
    assert len(s) == len(batches) == 13
    # inside a batch lengths come from one sorted pool: spread far below random batches
    spread = np.mean([np.ptp(lengths[b]) for b in batches if len(b) == 8])
    assert spread < 40
    assert s.batches(0) == batches and s.batches(1) != batches  # deterministic per epoch
    s.set_epoch(0, skip=5)
    assert list(s) == batches[5:]


@pytest.mark.parametrize("world, accum", [(1, 1), (2, 1), (3, 2), (4, 4)])
def test_ranks_and_micro_batches_partition_each_global_batch(world, accum):
    lengths = np.random.default_rng(0).integers(1, 100, 103)
    glob = BucketBatchSampler(103, 8, lengths, seed=1)
    per_rank = [list(RankBatches(BucketBatchSampler(103, 8, lengths, seed=1), r, world, accum))
                for r in range(world)]
    assert all(len(p) == len(glob) * accum for p in per_rank)   # every rank: the same number of steps
    for step, batch in enumerate(glob.batches(0)):
        parts = [p[step * accum + m] for p in per_rank for m in range(accum)]
        real = [i for part in parts for i in part if type(i) is int]
        assert sorted(real) == sorted(batch)                   # the global batch, whatever W and A
        fillers = [part for part in parts if any(type(i) is not int for i in part)]
        assert all(len(f) == 1 and f[0] == batch[0] for f in fillers)
        assert len(fillers) == max(0, world * accum - len(batch))
    assert rank_share([5, 6, 7], rank=1, world_size=2, accum_steps=2) == [([6], True), ([5], False)]


def test_lr_schedules():
    cfg = train_config(dict(lr_schedule="noam", warmup_steps=4))
    f = lr_lambda(cfg, 100)
    assert f(0) == pytest.approx(0.25) and f(3) == pytest.approx(1.0) and f(15) == pytest.approx(0.5)
    f = lr_lambda(train_config(dict(lr_schedule="cosine", lr_min_ratio=0.1)), 100)
    assert f(0) == pytest.approx(1.0) and f(50) == pytest.approx(0.55) and f(100) == pytest.approx(0.1)
    f = lr_lambda(train_config(dict(lr_schedule="step", lr_step_size=10, lr_gamma=0.5)), 100)
    assert f(9) == 1.0 and f(10) == 0.5 and f(25) == 0.25
    with pytest.raises(ValueError, match="lr_schedule"):
        train_config(dict(lr_schedule="bogus"))


def test_fit_reduces_loss_and_writes_outputs(tmp_path):
    torch.manual_seed(0)
    model = Net()
    train, valid = SeqData(40, 0), SeqData(8, 1)
    with torch.no_grad():
        before = np.mean([float(step_fn(model.eval(), collate([valid[i]]))) for i in range(8)])
    out = fit(model, step_fn, train, valid, tmp_path, {**CFG, "epochs": 6, "plot": True},
              collate_fn=collate)
    assert out["step"] == 60 and out["epoch"] == 6
    assert out["best_valid"] < 0.2 * before
    recs = [json.loads(l) for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    valid_losses = [r["valid_loss"] for r in recs if "valid_loss" in r]
    assert len(valid_losses) == 6 and valid_losses[-1] < valid_losses[0]
    assert all("epoch_time" in r for r in recs if "valid_loss" in r)
    for name in ("config.yaml", "best.pt", "loss.png", "checkpoint_60.pt"):
        assert (tmp_path / name).exists(), name
    assert len(checkpoints(tmp_path)) == 2  # keep_checkpoints
    fresh = Net()
    ckpt = load_checkpoint(tmp_path, fresh)
    assert ckpt["state"]["best_valid"] == out["best_valid"]
    assert min(valid_losses) == pytest.approx(out["best_valid"])


def test_resume_is_bit_exact(tmp_path):
    train, valid = SeqData(30, 0), SeqData(6, 1)
    n = 22  # 8 batches per epoch: the break falls mid-epoch
    # noam's lr does not depend on the total, so stopping at n/2 is the same run cut short
    cfg = {**CFG, "max_steps": n, "checkpoint_every": n // 2, "lr_schedule": "noam", "warmup_steps": 4}

    torch.manual_seed(0)
    a = Net()
    fit(a, step_fn, train, valid, tmp_path / "a", cfg, collate_fn=collate)

    torch.manual_seed(0)
    b = Net()
    fit(b, step_fn, train, valid, tmp_path / "b", {**cfg, "max_steps": n // 2}, collate_fn=collate)
    torch.manual_seed(999)  # disturb every global RNG between the runs
    np.random.seed(5)
    b2 = Net()
    out = fit(b2, step_fn, train, valid, tmp_path / "b", cfg, collate_fn=collate, resume=True)
    assert out["step"] == n
    for (k, pa), pb in zip(a.state_dict().items(), b2.state_dict().values()):
        assert torch.equal(pa, pb), k
    def train_log(d):
        recs = [json.loads(l) for l in (d / "log.jsonl").read_text().splitlines()]
        # (the first window after the cut also holds step n/2, logged early by the short run)
        return [(r["step"], r["train_loss"]) for r in recs if "train_loss" in r and r["step"] > n // 2 + 2]
    assert train_log(tmp_path / "a") == train_log(tmp_path / "b")


def test_non_finite_loss_is_an_error(tmp_path):
    def bad(model, batch):
        return model(batch["x"]).sum() * float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        fit(Net(), bad, SeqData(8), None, tmp_path, {**CFG, "max_steps": 2}, collate_fn=collate)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: deterministic training (no dropout) whose global batches are split differently below
DDP_CFG = {**CFG, "lr_schedule": "noam", "warmup_steps": 4, "grad_clip": None}


def _ddp_worker(rank, world, port, out_dir, result_dir, max_steps):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
    model = Net(dropout=0.0)
    train, valid = SeqData(30, 0), SeqData(8, 1)
    out = fit(model, step_fn, train, valid, out_dir, {**DDP_CFG, "max_steps": max_steps,
                                                      "checkpoint_every": max_steps}, collate_fn=collate)
    torch.save({"state": model.state_dict(), "out": out}, os.path.join(result_dir, f"rank{rank}.pt"))
    torch.distributed.barrier()     # neither rank tears the group down while the other still uses it
    torch.distributed.destroy_process_group()
    # no interpreter finalisation: gloo's threads torn down there can abort (SIGABRT,
    # "terminate called without an active exception") a process whose work is done, on a
    # loaded machine; everything the test checks is on disk by now
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(0)


class Recorded(SeqData):
    """SeqData that records the indices it serves."""
    served: list

    def __getitem__(self, i):
        self.served.append(i)
        return super().__getitem__(i)


def test_ddp_global_batch_and_resume_on_another_process_count(tmp_path, one_thread):
    """2 processes train on the same global batches as 1 (same parameters to float
    rounding); their checkpoint resumes in 1 process with the next global batch of the
    epoch's order, and ends where an uninterrupted 1-process run ends."""
    n, half = 22, 11        # 8 global batches per epoch: the cut falls mid-epoch (epoch 1, batch 3)
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "m"), str(tmp_path), half), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    assert r0["out"]["step"] == half and r0["out"]["valid_loss"] == r1["out"]["valid_loss"]  # all-reduced
    ckpt = torch.load(tmp_path / "m" / f"checkpoint_{half}.pt", weights_only=True)
    assert len(ckpt["rng_ranks"]) == 2 and ckpt["state"]["epoch"] == 1 and ckpt["state"]["batch_in_epoch"] == 3

    def single(out_dir, steps, resume=False, data=None):
        torch.manual_seed(0)
        model = Net(dropout=0.0)
        fit(model, step_fn, data or SeqData(30, 0), SeqData(8, 1), out_dir, {**DDP_CFG, "max_steps": steps},
            collate_fn=collate, resume=resume)
        return model.state_dict()

    one_half = single(tmp_path / "one_half", half)
    for k in one_half:        # the same global batches: the same parameters but for rounding
        torch.testing.assert_close(r0["state"][k], one_half[k], rtol=1e-5, atol=1e-6)
    data = Recorded(30, 0)
    data.served = []
    resumed = single(tmp_path / "m", n, resume=True, data=data)
    order = BucketBatchSampler(30, 4, data.lengths, seed=CFG["seed"])
    next_batches = (order.batches(1)[3:] + order.batches(2))[:n - half]   # from epoch 1's batch 3 on
    assert data.served == [i for b in next_batches for i in b]
    uninterrupted = single(tmp_path / "one", n)
    for k in uninterrupted:
        torch.testing.assert_close(resumed[k], uninterrupted[k], rtol=1e-5, atol=1e-6)


def test_gradient_accumulation_keeps_the_global_batch(tmp_path, one_thread):
    def run(accum):
        torch.manual_seed(0)
        model = Net(dropout=0.0)
        out = fit(model, step_fn, SeqData(30, 0), None, tmp_path / str(accum),
                  {**DDP_CFG, "max_steps": 12, "accum_steps": accum}, collate_fn=collate)
        return model.state_dict(), out
    (a, out1), (b, out3) = run(1), run(3)
    for k in a:   # 4 items per step in 1 or 3 micro-batches (one of them a filler): same steps
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert out1["step"] == out3["step"] == 12
    assert out3["train_loss"] == pytest.approx(out1["train_loss"], rel=1e-5)


class _Boom:
    """A pickle payload: unpickling it would call os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_code_is_refused_and_runs_nothing(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"model": {}, "payload": _Boom(marker)}, model_dir / "best.pt")
    with pytest.raises(ValueError, match="refused"):
        load_checkpoint(model_dir, Net())
    assert not marker.exists()
    # the same payload as a periodic checkpoint: resume refuses it too
    os.replace(model_dir / "best.pt", model_dir / "checkpoint_5.pt")
    with pytest.raises(ValueError, match="refused"):
        fit(Net(), step_fn, SeqData(8), None, model_dir, {**CFG, "max_steps": 6}, collate_fn=collate, resume=True)
    assert not marker.exists()


def test_resume_with_other_options_is_an_error_and_torn_log_is_dropped(tmp_path):
    train = SeqData(12)
    fit(Net(), step_fn, train, None, tmp_path, {**CFG, "max_steps": 3, "checkpoint_every": 3}, collate_fn=collate)
    with pytest.raises(ValueError, match="lr: 0.03 -> 0.1"):
        fit(Net(), step_fn, train, None, tmp_path, {**CFG, "lr": 0.1, "max_steps": 6}, collate_fn=collate,
            resume=True)
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('{"step": 4, "train_lo')          # killed in the middle of a write
    out = fit(Net(), step_fn, train, None, tmp_path, {**CFG, "max_steps": 6}, collate_fn=collate, resume=True)
    assert out["step"] == 6
    steps = [json.loads(l)["step"] for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 6


def test_unknown_train_option_names_the_closest():
    with pytest.raises(ValueError, match="did you mean 'lr_schedule'"):
        train_config({"lr_shedule": "cosine"})
    with pytest.raises(ValueError, match=r"train.batch_size: expected int, got 'abc'"):
        train_config({"batch_size": "abc"})


def test_torn_latest_checkpoint_falls_back_to_the_one_before(tmp_path, caplog):
    """A truncated newest checkpoint is named, set aside, and the run resumes from the one
    before it, ending bit-identical to an uninterrupted run."""
    train, valid = SeqData(30, 0), SeqData(6, 1)
    cfg = {**CFG, "max_steps": 12, "checkpoint_every": 3, "keep_checkpoints": 3, "lr_schedule": "noam"}
    torch.manual_seed(0)
    a = Net()
    fit(a, step_fn, train, valid, tmp_path / "a", cfg, collate_fn=collate)
    torch.manual_seed(0)
    fit(Net(), step_fn, train, valid, tmp_path / "b", {**cfg, "max_steps": 9}, collate_fn=collate)
    newest = tmp_path / "b" / "checkpoint_9.pt"
    newest.write_bytes(newest.read_bytes()[:1000])              # torn
    b = Net()
    out = fit(b, step_fn, train, valid, tmp_path / "b", cfg, collate_fn=collate, resume=True)
    assert out["step"] == 12
    assert "checkpoint_9.pt: not a readable checkpoint" in caplog.text and "falling back" in caplog.text
    assert (tmp_path / "b" / "checkpoint_9.pt.torn").exists()
    for (k, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), k
    for p in checkpoints(tmp_path / "b"):                       # every checkpoint left is readable
        load_checkpoint(p)


def test_every_checkpoint_torn_is_one_clear_error(tmp_path):
    train = SeqData(12)
    fit(Net(), step_fn, train, None, tmp_path, {**CFG, "max_steps": 3, "checkpoint_every": 3}, collate_fn=collate)
    (tmp_path / "checkpoint_3.pt").write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(ValueError, match=r"no readable checkpoint \(checkpoint_3.pt torn.*--force"):
        fit(Net(), step_fn, train, None, tmp_path, {**CFG, "max_steps": 6}, collate_fn=collate, resume=True)


class _KillAt:
    """Raises at a step, as a kill would stop the run there."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, trainer):
        if trainer.state.step == self.step:
            raise KeyboardInterrupt


def test_fresh_run_sets_the_old_run_aside_until_it_succeeds(tmp_path):
    from sps.train.trainer import REPLACED
    train = SeqData(12)
    old = {**CFG, "max_steps": 6, "checkpoint_every": 3}
    fit(Net(), step_fn, train, None, tmp_path, old, collate_fn=collate)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert "best.pt" in before and "checkpoint_6.pt" in before
    new = {**CFG, "lr": 0.01, "max_steps": 9, "checkpoint_every": 3}
    with pytest.raises(KeyboardInterrupt):                      # a fresh run killed at step 4
        fit(Net(), step_fn, train, None, tmp_path, new, collate_fn=collate, hooks=[_KillAt(4)])
    aside = tmp_path / REPLACED
    assert {p.name: p.read_bytes() for p in aside.iterdir() if p.is_file() and p.name != ".complete"} == before  # nothing lost
    # the new options never sit beside the old weights: only the new run's checkpoint is there
    assert sorted(p.name for p in checkpoints(tmp_path)) == ["checkpoint_3.pt"]
    assert "lr: 0.01" in (tmp_path / "config.yaml").read_text()
    assert load_checkpoint(tmp_path / "checkpoint_3.pt")["state"]["step"] == 3
    # a second fresh run deletes the unfinished one and keeps the complete old run aside ...
    with pytest.raises(KeyboardInterrupt):
        fit(Net(), step_fn, train, None, tmp_path, new, collate_fn=collate, hooks=[_KillAt(2)])
    assert {p.name: p.read_bytes() for p in aside.iterdir() if p.is_file() and p.name != ".complete"} == before
    assert not checkpoints(tmp_path)
    # ... until a run succeeds
    out = fit(Net(), step_fn, train, None, tmp_path, new, collate_fn=collate, resume=True)
    assert out["step"] == 9 and not aside.exists()
    assert load_checkpoint(tmp_path)["state"]["step"] == 9


@pytest.mark.parametrize("option,value,message", [
    ("epochs", 0, "epochs must be >= 1"), ("lr", float("nan"), "train.lr: expected a finite number, got nan"),
    ("lr", float("inf"), "expected a finite number"), ("keep_checkpoints", 0, "keep_checkpoints must be >= 1"),
    ("betas", [0.9, float("nan")], r"train.betas\[1\]: expected a finite number")])
def test_impossible_training_options_are_refused(option, value, message):
    with pytest.raises(ValueError, match=message):
        train_config({option: value})
