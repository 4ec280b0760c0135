"""Recipe stage ``sps report``: a static HTML page per experiment -> ``eval/report.html``.

The page holds the metrics table of every evaluated system and, for each utterance
of the split, an audio player for natural speech and for every system found under
``synth/*/<split>/`` (WORLD copy synthesis first, then acoustic models, then any
neural vocoder that writes there later), with the systems' spectrogram/F0 plots.
Links are relative, so the experiment directory can be copied or served as is.
Natural speech is written once to ``eval/natural/<split>/<utt>.wav``.

Config: ``split`` (default ``eval``), ``max_utterances`` (default all).
"""
from __future__ import annotations

import html
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
td.sys { text-align: center; }
audio { width: 220px; }
img { width: 220px; display: block; margin-top: 4px; }
"""


def _systems(exp: Path, split: str) -> list[str]:
    names = sorted(p.parent.name for p in exp.glob(f"synth/*/{split}") if p.is_dir())
    return sorted(names, key=lambda n: (n != "world_copy", n))


def _natural_wavs(exp: Path, split: str, utts: list[str]) -> dict[str, Path]:
    """Natural speech as WAV under eval/natural/<split>/ (from dump/<split>/wav)."""
    from sps.io import load_array, read_json, write_wav
    spec_path = exp / "dump" / "out_acoustic.json"
    sr = int(read_json(spec_path)["sample_rate"]) if spec_path.exists() else 16000
    out = {}
    for utt in utts:
        src, dst = exp / "dump" / split / "wav" / f"{utt}.npy", exp / "eval" / "natural" / split / f"{utt}.wav"
        if not dst.exists() and src.exists():
            write_wav(dst, load_array(src).reshape(-1), sr)
        if dst.exists():
            out[utt] = dst
    return out


def _metrics_html(exp: Path, split: str) -> str:
    from sps.io import read_json
    from sps.synthesis.evaluate import COLUMNS, _fmt
    rows = []
    for path in sorted(exp.glob(f"eval/*/{split}/metrics.json")):
        m = read_json(path)
        rows.append((m["system"], m["mean"], m.get("num_utterances", 0), m.get("source", "")))
    rows.sort(key=lambda r: (r[0] != "world_copy", r[0]))
    used = [c for c in COLUMNS if any(c[0] in r[1] for r in rows)]
    if not rows:
        return "<p>No metrics yet (run the eval stage).</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["system", *[h for _, h, _ in used], "utts", "from"])
    body = ""
    for name, mean, n, src in rows:
        cells = "".join(f"<td>{_fmt(mean.get(k), f)}</td>" for k, _, f in used)
        body += f"<tr><td>{html.escape(name)}</td>{cells}<td>{n}</td><td>{html.escape(src)}</td></tr>\n"
    return f"<table><tr>{head}</tr>\n{body}</table>"


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def build_report(exp_dir: str | os.PathLike, split: str = "eval", max_utterances: int | None = None) -> Path:
    """Write ``eval/report.html`` and return its path."""
    from sps.io import read_list, write_text
    exp = Path(exp_dir)
    out = exp / "eval" / "report.html"
    base = out.parent
    utts = read_list(exp / "data" / f"{split}.list")
    if max_utterances:
        utts = utts[: int(max_utterances)]
    systems = _systems(exp, split)
    natural = _natural_wavs(exp, split, utts)
    head = "".join(f"<th>{html.escape(s)}</th>" for s in ["utterance", "natural", *systems])
    rows = ""
    for utt in utts:
        cells = [f"<td>{html.escape(utt)}</td>"]
        for path in [natural.get(utt), *[exp / "synth" / s / split / f"{utt}.wav" for s in systems]]:
            if path is None or not path.exists():
                cells.append("<td class='sys'>-</td>")
                continue
            cell = f"<audio controls preload='none' src='{_rel(path, base)}'></audio>"
            png = path.with_suffix(".png")
            if png.exists():
                cell += f"<a href='{_rel(png, base)}'><img loading='lazy' src='{_rel(png, base)}' alt='{utt}'></a>"
            cells.append(f"<td class='sys'>{cell}</td>")
        rows += "<tr>" + "".join(cells) + "</tr>\n"
    page = (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>sps report: {html.escape(exp.name)}"
            f"</title><style>{STYLE}</style></head><body>\n"
            f"<h1>{html.escape(exp.name)}: {html.escape(split)} split</h1>\n<h2>Objective metrics</h2>\n"
            f"{_metrics_html(exp, split)}\n"
            "<p>MCD excludes c0; F0 RMSE and correlation over frames voiced in both; acoustic models "
            "are scored on their generated parameters with natural durations, WORLD copy synthesis and "
            "vocoders on the analysis of their waveforms.</p>\n"
            f"<h2>Listening</h2>\n<table><tr>{head}</tr>\n{rows}</table>\n</body></html>\n")
    write_text(out, page)
    return out


def run(ctx) -> None:
    """Stage entry point (``sps report``)."""
    split = ctx.config.get("split", "eval")
    out = build_report(ctx.exp_dir, split, ctx.config.get("max_utterances"))
    print(f"report: {out}")
