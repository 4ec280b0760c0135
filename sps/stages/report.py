"""Recipe stage ``sps report``: a static HTML page per experiment -> ``eval/report.html``.

The page holds the metrics table of every evaluated system and, for each utterance
of the split, an audio player and a narrow-band spectrogram (harmonics visible) for
natural speech and for every system found under ``synth/*/<split>/`` (WORLD copy
synthesis first, then acoustic models and neural vocoders) side by side, with a link
to the parameter plots where a system has them. Links are relative, so the experiment directory
can be copied or served as is. Natural speech is written once to
``eval/natural/<split>/<utt>.wav``.

Every value that reaches the page (ids, system names, paths) is HTML-escaped, and
attribute values are always double-quoted, so a hostile utterance id cannot inject
markup or script.

Config (``conf/report.yaml``): ``split`` (default ``eval``), ``max_utterances``.
"""
from __future__ import annotations

import html
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sps.config import bind
from sps.io import load_array, read_wav, write_text, write_wav
from sps.stages.evaluate import COLUMNS, metrics_rows
from sps.stages.experiment import Experiment, check_names
from sps.stages.runner import StageContext
from sps.synthesis import plot_spectrogram

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


@dataclass(frozen=True)
class ReportConfig:
    """Keys of ``conf/report.yaml``."""
    split: str = "eval"
    max_utterances: int | None = None

    def __post_init__(self):
        check_names(split=self.split)


def esc(value) -> str:
    """HTML-escape any value for text or a double-quoted attribute."""
    return html.escape(str(value), quote=True)


def _systems(exp: Experiment, split: str) -> list[str]:
    names = sorted(p.parent.name for p in exp.root.glob(f"synth/*/{split}") if p.is_dir())
    return sorted(names, key=lambda n: (n != "world_copy", n))


def _natural_wavs(exp: Experiment, split: str, utts: list[str]) -> dict[str, Path]:
    """Natural speech as WAV under eval/natural/<split>/ (from dump/<split>/wav)."""
    sr = int(exp.spec("out_acoustic")["sample_rate"]) if exp.spec_path("out_acoustic").exists() else 16000
    out = {}
    for utt in utts:
        src, dst = exp.dump_path(split, "wav", utt), exp.eval_dir("natural", split) / f"{utt}.wav"
        if not dst.exists() and src.exists():
            write_wav(dst, load_array(src).reshape(-1), sr)
        if dst.exists():
            out[utt] = dst
    return out


def _metrics_html(exp: Experiment, split: str) -> str:
    rows = metrics_rows(exp, split)
    if not rows:
        return "<p>No metrics yet (run the eval stage).</p>"
    used = [c for c in COLUMNS if any(c[0] in r[1] for r in rows)]
    head = "".join(f"<th>{esc(h)}</th>" for h in ["system", *[h for _, h, _ in used], "utts", "from"])
    body = ""
    for name, values, n, src in rows:
        cells = "".join(f"<td>{esc(values.get(k, '-'))}</td>" for k, _, _ in used)
        body += f"<tr><td>{esc(name)}</td>{cells}<td>{esc(n)}</td><td>{esc(src)}</td></tr>\n"
    return f"<table><tr>{head}</tr>\n{body}</table>"


def spectrogram_png(wav_path: Path) -> Path | None:
    """``<utt>.spec.png`` beside a wav, (re)drawn when missing or older than the wav
    (None for audio that cannot be read, e.g. silence)."""
    png = wav_path.with_suffix(".spec.png")
    if not png.exists() or png.stat().st_mtime < wav_path.stat().st_mtime:
        try:
            x, sr = read_wav(wav_path)
        except ValueError as err:
            logger.warning("report: no spectrogram for %s (%s)", wav_path, err)
            return None
        plot_spectrogram(png, x, sr, title=f"{wav_path.parent.parent.name}: {wav_path.stem}")
    return png


def _rel(path: Path, base: Path) -> str:
    return esc(Path(os.path.relpath(path, base)).as_posix())


def build_report(exp: Experiment, split: str = "eval", max_utterances: int | None = None) -> Path:
    """Write ``eval/report.html`` and return its path."""
    out = exp.root / "eval" / "report.html"
    base = out.parent
    utts = exp.utterances(split)
    if max_utterances:
        utts = utts[:max_utterances]
    systems = _systems(exp, split)
    natural = _natural_wavs(exp, split, utts)
    head = "".join(f"<th>{esc(s)}</th>" for s in ["utterance", "natural", *systems])
    rows = ""
    for utt in utts:
        cells = [f"<td>{esc(utt)}</td>"]
        # (the directories found, by path: a name sps would refuse is still shown, escaped)
        for path in [natural.get(utt), *[exp.root / "synth" / s / split / f"{utt}.wav" for s in systems]]:
            if path is None or not path.exists():
                cells.append('<td class="sys">-</td>')
                continue
            cell = f'<audio controls preload="none" src="{_rel(path, base)}"></audio>'
            spec = spectrogram_png(path)
            if spec is not None:
                cell += (f'<a href="{_rel(spec, base)}"><img loading="lazy" src="{_rel(spec, base)}" '
                         f'alt="spectrogram {esc(utt)}"></a>')
            png = path.with_suffix(".png")
            if png.exists():
                cell += f'<a href="{_rel(png, base)}">parameters</a>'

            cells.append(f'<td class="sys">{cell}</td>')
        rows += "<tr>" + "".join(cells) + "</tr>\n"
    title = esc(exp.root.name)
    page = (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>sps report: {title}'
            f"</title><style>{STYLE}</style></head><body>\n"
            f"<h1>{title}: {esc(split)} split</h1>\n<h2>Objective metrics</h2>\n"
            f"{_metrics_html(exp, split)}\n"
            "<p>MCD excludes c0; F0 RMSE and correlation over frames voiced in both; acoustic models "
            "are scored on their generated parameters with natural durations, WORLD copy synthesis and "
            "vocoders on the analysis of their waveforms.</p>\n"
            f"<h2>Listening</h2>\n<table><tr>{head}</tr>\n{rows}</table>\n</body></html>\n")
    write_text(out, page)
    return out


def run(ctx: StageContext) -> None:
    """Stage entry point (``sps report``)."""
    cfg = bind(ReportConfig, ctx.config, "report")
    out = build_report(ctx.exp, cfg.split, cfg.max_utterances)
    print(f"report: {out}")
