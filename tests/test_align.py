"""HMM forced aligner (sps.align): forward-backward and Viterbi against brute force over all
paths, the C kernels against PyTorch, re-estimation, flat start on synthetic data with
known boundaries, pause rewriting, TextGrid round trips, boundary scoring."""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sps.align import Aligner, AlignerConfig, Example, align_features, forward_backward, viterbi
from sps.align.context import (PAUSE, PHRASE_PAUSE, WORD_PAUSE, Unit, apply_pauses, merge_pauses, pause_options,
                               phone_of, requinphone)
from sps.align.graph import build_graph, segments
from sps.align.hmm import batch_graphs
from sps.align.model import HmmSet
from sps.align.native import library as native_library
from sps.align.score import boundary_pairs
from sps.align.textgrid import festival_phone, labels_from_textgrid, read_textgrid_phones, write_textgrid
from sps.align.train import estep, initial_model, run_pass, schedule
from sps.frontend import Labels, load_labels

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "slt_festival"
BACKENDS = ["torch"] + (["native"] if native_library() is not None else [])


# ------------------------------------------------------------------------------ tiny models
def tiny_graph(min_duration=1):
    units = [Unit("a", 0), Unit(PAUSE, None, WORD_PAUSE), Unit("b", 1), Unit(PAUSE, 2, PHRASE_PAUSE), Unit("a", 3)]
    return build_graph(units, {"a": 0, "b": 1, PAUSE: 2}, num_states=2, min_duration=min_duration)


def tiny_inputs(graphs, T_list, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.2, 0.8, size=(6, 1))
    log_loop = np.concatenate([np.log(a), np.log1p(-a)], 1)
    log_enter = np.log(np.array([[0.3, 0.7], [0.6, 0.4]]))
    log_bs = [torch.tensor(rng.normal(size=(T, len(g))) * 2.0) for g, T in zip(graphs, T_list)]
    return batch_graphs(graphs, log_bs, log_loop, log_enter), log_bs


def brute_force(graph, trans, log_b):
    """Every state path (depth-first over the allowed transitions): log-likelihood,
    occupancies, expected entries and the best path."""
    T, N = log_b.shape
    paths, scores = [], []

    def extend(path, score):
        t, i = len(path), path[-1]
        if t == T:
            if i == N - 1:
                paths.append(tuple(path))
                scores.append(score)
            return
        for j, slot in ((i, 0), (i + 1, 1)) + tuple((j, 2) for j in range(N) if graph.skip[j] == i):
            if j < N and trans[j, slot] > -math.inf:
                extend(path + [j], score + trans[j, slot] + log_b[t, j])

    extend([0], log_b[0, 0])
    scores = np.array(scores)
    ll = np.logaddexp.reduce(scores)
    gamma, entries = np.zeros((T, N)), np.zeros(N)
    for p, s in zip(paths, scores):
        w = math.exp(s - ll)
        for t in range(T):
            gamma[t, p[t]] += w
            if t and p[t] != p[t - 1]:
                entries[p[t]] += w
    best = paths[int(np.argmax(scores))]
    return ll, gamma, entries, np.array(best), scores.max()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("min_duration", [1, 2])
def test_forward_backward_and_viterbi_against_all_paths(backend, min_duration):
    g = tiny_graph(min_duration)
    T = g.min_frames + 6
    inputs, log_bs = tiny_inputs([g], [T])
    ll, gamma, entries, best, best_score = brute_force(g, inputs["trans"][0].numpy(), log_bs[0].numpy())
    gam, ent, loglik = forward_backward(**inputs, backend=backend)
    assert float(loglik[0]) == pytest.approx(ll, abs=1e-9)
    np.testing.assert_allclose(gam[0].numpy(), gamma, atol=1e-9)
    np.testing.assert_allclose(gam[0].sum(1).numpy(), np.ones(T), atol=1e-9)
    np.testing.assert_allclose(ent[0].numpy(), entries, atol=1e-9)
    path, score = viterbi(**inputs, backend=backend)
    assert float(score[0]) == pytest.approx(best_score, abs=1e-9)
    np.testing.assert_array_equal(path[0].numpy(), best)


@pytest.mark.skipif("native" not in BACKENDS, reason="no C compiler")
@pytest.mark.parametrize("beam", [math.inf, 6.0])
def test_native_equals_torch_on_a_padded_batch(beam):
    graphs = [tiny_graph(1), tiny_graph(2), build_graph([Unit("a", 0)], {"a": 0}, 3)]
    inputs, _ = tiny_inputs(graphs, [40, 23, 5], seed=3)
    ref = forward_backward(**inputs, beam=beam, backend="torch")
    out = forward_backward(**inputs, beam=beam, backend="native")
    for r, o in zip(ref, out):
        np.testing.assert_allclose(o.numpy(), r.numpy(), rtol=1e-9, atol=1e-9)
    assert torch.isfinite(ref[2]).all()
    pr, sr = viterbi(**inputs, beam=beam, backend="torch")
    po, so = viterbi(**inputs, beam=beam, backend="native")
    np.testing.assert_array_equal(po.numpy(), pr.numpy())
    np.testing.assert_allclose(so.numpy(), sr.numpy(), rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_beam_failure_when_the_search_falls_behind(backend):
    """Audio that keeps matching the first state: with a narrow beam the search keeps only
    states too far behind to finish (a beam failure); the exact computation still finds
    the path that must leave in time."""
    g = build_graph([Unit("a", 0), Unit("b", 1)], {"a": 0, "b": 1}, num_states=2)
    T = 12
    inputs, _ = tiny_inputs([g], [T], seed=2)
    log_b = torch.full((1, T, len(g)), -50.0, dtype=torch.float64)
    log_b[0, :, 0] = 0.0
    inputs["log_b"] = log_b
    for beam, ok in ((10.0, False), (math.inf, True)):
        gam, ent, ll = forward_backward(**inputs, beam=beam, backend=backend)
        path, score = viterbi(**inputs, beam=beam, backend=backend)
        assert bool(torch.isfinite(ll[0])) == ok and bool(torch.isfinite(score[0])) == ok
        assert (gam[0].sum() > 0) == ok and (path[0] >= 0).all() == ok


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_equals_single_and_padding_is_ignored(backend):
    graphs = [tiny_graph(1), tiny_graph(2)]
    inputs, log_bs = tiny_inputs(graphs, [30, 17], seed=1)
    gam, ent, ll = forward_backward(**inputs, backend=backend)
    for b, g in enumerate(graphs):
        single, _ = tiny_inputs([g], [log_bs[b].shape[0]], seed=1)
        single["log_b"] = log_bs[b].unsqueeze(0)
        g1, e1, l1 = forward_backward(**single, backend=backend)
        T, N = log_bs[b].shape
        np.testing.assert_allclose(gam[b, :T, :N].numpy(), g1[0].numpy(), atol=1e-12)
        assert gam[b, T:].abs().sum() == 0 and gam[b, :, N:].abs().sum() == 0
        assert float(ll[b]) == pytest.approx(float(l1[0]), abs=1e-9)


def test_graph_structure_and_segments():
    g = tiny_graph(2)
    S, d = 2, 2
    assert len(g) == 5 * S * d
    # a state lasts >= d frames: only the last copy loops
    assert (g.loop >= 0).sum() == 5 * S
    # the skips jump over the two optional pauses
    assert list(np.flatnonzero(g.skip >= 0)) == [2 * S * d, 4 * S * d]
    assert g.min_frames == 3 * S * d
    # a path through 'a', the optional pause skipped, 'b', the phrase pause used, 'a'
    path = np.concatenate([np.arange(0, 4), np.repeat(3, 2), np.arange(8, 20)])
    used, bounds = segments(g, path)
    assert used.tolist() == [True, False, True, True, True]
    assert bounds.tolist() == [[0, 2, 6], [6, 8, 10], [10, 12, 14], [14, 16, 18]]


def test_too_short_and_unknown_phone_are_clear():
    with pytest.raises(ValueError, match="not in the aligner's phone set"):
        build_graph([Unit("zz", 0)], {"a": 0}, 5)
    with pytest.raises(ValueError, match="edge"):
        build_graph([Unit(PAUSE, None, WORD_PAUSE), Unit("a", 0)], {"a": 0, PAUSE: 1}, 5)


# ------------------------------------------------------------------------------ contexts
def shipped(utt="slt_0002"):
    return load_labels(CORPUS / "lab" / f"{utt}.lab")


def test_requinphone_reproduces_festival_and_pause_options():
    for utt in ("slt_0001", "slt_0002", "slt_0004"):
        ctx = shipped(utt).contexts
        assert requinphone(ctx) == ctx
        units = pause_options(ctx)
        assert [u.phone for u in units if u.index is not None] == [phone_of(c) for c in ctx]
        assert units[0].optional is None and units[-1].optional is None
        # optional pauses exactly at Festival's inner pauses and between words
        inner = [u for u in units if u.optional == PHRASE_PAUSE]
        assert len(inner) == sum(phone_of(c) == PAUSE for c in ctx) - 2
    units = pause_options(shipped("slt_0001").contexts)   # "What time does it start?"
    assert sum(u.optional == WORD_PAUSE for u in units) == 4


def test_apply_pauses_keeps_festival_fields_and_fixes_quinphones():
    ctx = shipped("slt_0002").contexts
    units = pause_options(ctx)
    used = [u.optional != PHRASE_PAUSE for u in units]       # every word pause, no phrase pause
    used = [u if units[k].optional != WORD_PAUSE else k == 3 for k, u in enumerate(used)]
    out, kept = apply_pauses(ctx, units, used)
    assert [phone_of(c) for c in out].count(PAUSE) == 3         # edges + one inserted
    new = out[3]
    assert phone_of(new) == PAUSE and units[kept[3]].index is None
    # the neighbours name the pause in their quinphone fields, the rest is Festival's
    assert out[2].split("@")[0].endswith("+pau=" + phone_of(out[4]))
    assert out[4].split("@")[1] == ctx[units[kept[4]].index].split("@")[1]
    # Festival's pause context for a pause between these words
    fest_pause = ctx[17]
    assert new.split("/A:")[1].startswith(ctx[units[kept[2]].index].split("/B:")[1][:5].replace("-", "_"))
    assert "/H:" + fest_pause.split("/H:")[1].split("/")[0] in new
    dropped = [units[k].index for k in range(len(units)) if units[k].optional == PHRASE_PAUSE]
    assert all(ctx[i] not in out for i in dropped)


def test_merge_pauses():
    ctx = shipped("slt_0001").contexts
    doubled = ctx + ctx
    merged = merge_pauses(doubled)
    assert len(merged) == 2 * len(ctx) - 1
    assert [phone_of(c) for c in merged].count(PAUSE) == 3


# ------------------------------------------------------------------------------ training
PHONES = ["a", "b", "c", "d"]


def synthetic_corpus(n=24, seed=0, S=3, D=39):
    """Utterances of random phones whose states emit well-separated Gaussians; known times."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(len(PHONES) + 1, S, D)) * 3.0
    examples, truth = [], {}
    for i in range(n):
        seq = [PAUSE] + list(rng.choice(PHONES, size=rng.integers(4, 8))) + [PAUSE]
        pad = ["x", "x"] + seq + ["x", "x"]
        contexts = [f"{pad[k]}^{pad[k + 1]}-{pad[k + 2]}+{pad[k + 3]}={pad[k + 4]}@1_1/B:1-1-1@1-1"
                    for k in range(len(seq))]
        frames, bounds = [], [0]
        for p in seq:
            m = len(PHONES) if p == PAUSE else PHONES.index(p)
            for s in range(S):
                d = int(rng.integers(2, 7))
                frames.append(means[m, s] + 0.5 * rng.normal(size=(d, D)))
            bounds.append(sum(len(f) for f in frames))
        examples.append(Example(f"u{i}", np.concatenate(frames).astype(np.float32), contexts))
        truth[f"u{i}"] = np.array(bounds)
    return examples, truth


def small_config(**kw):
    base = dict(num_states=3, flat_iterations=4, mixtures=(1, 2), iterations=2, word_pauses=False,
                phrase_pauses=False, beam=math.inf, retry_beam=math.inf, min_occ=1e-3)
    base.update(kw)
    return AlignerConfig(**base)


def test_reestimation_never_lowers_the_likelihood():
    examples, _ = synthetic_corpus(12)
    cfg = small_config()
    model = initial_model(examples, cfg)
    previous = -math.inf
    last_mix = 1
    for p in schedule(cfg):
        stats = run_pass(model, lambda m, pauses: estep(m, examples, cfg, pauses, "auto"), p, cfg)
        if p.mixtures == last_mix:
            assert stats.loglik >= previous - 1e-6 * abs(previous)
        previous, last_mix = stats.loglik, p.mixtures


def test_flat_start_recovers_known_boundaries():
    examples, truth = synthetic_corpus(24)
    aligner = Aligner.train(examples, small_config())
    results = aligner.align_examples(examples)
    errors = []
    for ex in examples:
        r = results[ex.utt]
        assert not isinstance(r, str), r
        bounds = r.labels.frame_boundaries(50000)
        got = np.concatenate([bounds[:, 0], bounds[-1:, 1]])
        errors.append(np.abs(got - truth[ex.utt])[1:-1])
    e = np.concatenate(errors)
    # tolerance: every phone boundary within one frame, most exact
    assert e.max() <= 1 and (e == 0).mean() >= 0.9, (e.max(), (e == 0).mean())


def test_saved_model_loads_weights_only_and_aligns_the_same(tmp_path):
    examples, _ = synthetic_corpus(8)
    aligner = Aligner.train(examples, small_config(flat_iterations=2, mixtures=(1,), iterations=1))
    path = tmp_path / "model.pt"
    aligner.save(path)
    state = torch.load(path, weights_only=True)
    assert state["format"] == "sps-aligner-1"
    again = Aligner.load(path)
    a = aligner.align_examples(examples[:3])
    b = again.align_examples(examples[:3])
    for ex in examples[:3]:
        np.testing.assert_array_equal(a[ex.utt].state_labels.times, b[ex.utt].state_labels.times)
    path.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot read aligner model"):
        Aligner.load(path)
    with pytest.raises(FileNotFoundError):
        Aligner.load(tmp_path / "missing.pt")


def test_features_shape_and_grid():
    sr = 16000
    x = 0.1 * np.sin(2 * np.pi * 200 * np.arange(int(1.2345 * sr)) / sr)
    f = align_features(x, sr)
    assert f.shape == (round(1.2345 / 0.005), 39) and f.dtype == np.float32
    np.testing.assert_allclose(f[:, :13].mean(0), 0.0, atol=1e-4)     # mean-normalised
    f2 = align_features(np.repeat(x, 2)[::1][: 2 * x.size], 2 * sr)     # another rate: resampled
    assert f2.shape == f.shape


# ------------------------------------------------------------------------------ textgrids, scoring
def test_textgrid_round_trip_is_exact(tmp_path):
    lab = shipped("slt_0002")
    ctx = lab.contexts
    # a pause decision: the phrase pause dropped, a word pause inserted
    units = pause_options(ctx)
    used = [u.optional is None or (u.optional == WORD_PAUSE and k == 5) for k, u in enumerate(units)]
    out, kept = apply_pauses(ctx, units, used)
    times = np.arange(len(out) + 1)[:, None] * 50000 * 3 + np.array([[0, 0]])
    times = np.stack([times[:-1, 0], times[1:, 0]], 1)
    labels = Labels(contexts=out, times=times)
    path = tmp_path / "u.TextGrid"
    write_textgrid(path, labels, None)
    entries, end = read_textgrid_phones(path)
    back, info = labels_from_textgrid(ctx, entries, end)
    assert back.contexts == labels.contexts
    np.testing.assert_array_equal(back.times, labels.times)
    assert info["substituted"] == info["festival_only"] == info["textgrid_only"] == 0
    # the shipped labels themselves
    write_textgrid(path, lab, None)
    back, _ = labels_from_textgrid(ctx, *read_textgrid_phones(path))
    assert back.contexts == ctx
    np.testing.assert_array_equal(back.times, lab.times)


def test_mfa_style_textgrid_is_mapped_onto_festival(tmp_path):
    from praatio import textgrid
    from praatio.utilities.constants import Interval
    ctx = shipped("slt_0001").contexts            # pau w ah t t ay m d ah z ih t s t aa r t pau
    phones = [phone_of(c) for c in ctx][1:-1]
    arpa = {"ax": "AH0", "ah": "AH1", "ay": "AY1", "aa": "AA1", "ih": "IH1"}
    names = [arpa.get(p, p.upper()) for p in phones]
    names[5] = "N"                                  # 'm' substituted
    del names[8]                                    # 'z' missing in the TextGrid
    t, iv = 0.3, [Interval(0.0, 0.3, "")]
    for n in names:
        iv.append(Interval(t, t + 0.06, n))
        t += 0.06
    iv.append(Interval(t, t + 0.25, "sil"))
    tg = textgrid.Textgrid()
    tg.addTier(textgrid.IntervalTier("phones", iv, 0, t + 0.25))
    tg.save(str(tmp_path / "m.TextGrid"), format="short_textgrid", includeBlankSpaces=True)
    labels, info = labels_from_textgrid(ctx, *read_textgrid_phones(tmp_path / "m.TextGrid"))
    assert info["substituted"] == 1 and info["festival_only"] == 1
    assert [phone_of(c) for c in labels.contexts] == [phone_of(c) for c in ctx]
    fr = labels.frame_boundaries()
    assert fr[0].tolist() == [0, 60] and fr[-1, 1] == round((t + 0.25) / 0.005)
    # 'z' is missing: 'ah z ih' share the time of the TextGrid's 'AH1 IH1' equally
    assert (fr[8:11, 1] - fr[8:11, 0]).tolist() == [8, 8, 8]
    assert festival_phone("AH0") == "ax" and festival_phone("ER1") == "er" and festival_phone("dh") == "dh"
    with pytest.raises(ValueError, match="differ"):
        labels_from_textgrid(ctx, [(0.0, 0.3, "")] + [(0.3 + i * 0.05, 0.35 + i * 0.05, "K")
                                                       for i in range(15)], 1.1)


def test_boundary_pairs_match_through_pauses():
    ref = ["pau", "a", "b", "pau", "c", "pau"]
    ref_t = np.array([[0, 10], [10, 20], [20, 30], [30, 40], [40, 50], [50, 60]])
    hyp = ["pau", "a", "pau", "b", "c", "pau"]
    hyp_t = np.array([[0, 11], [11, 19], [19, 22], [22, 35], [35, 52], [52, 60]])
    pairs = boundary_pairs(ref, ref_t, hyp, hyp_t)
    # starts of a, b, c; ends of a (pause in hyp), b (pause in ref), c (final pause)
    assert sorted(map(tuple, pairs.tolist())) == sorted([(10, 11), (20, 22), (40, 35), (20, 19), (30, 35), (50, 52)])
    with pytest.raises(ValueError):
        boundary_pairs(ref, ref_t, ["pau", "a", "pau"], hyp_t[:3])


def test_model_state_dict_is_checked():
    examples, _ = synthetic_corpus(4)
    model = initial_model(examples, small_config())
    state = model.state_dict()
    HmmSet.from_state_dict(state)
    with pytest.raises(ValueError, match="not an sps aligner model"):
        HmmSet.from_state_dict({"format": "x"})
    state["self_loop"] = state["self_loop"][:3]
    with pytest.raises(ValueError, match="damaged"):
        HmmSet.from_state_dict(state)
