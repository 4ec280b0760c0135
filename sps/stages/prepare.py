"""Stage 0, data preparation: a corpus directory -> utterance lists and scp files.

A corpus is a directory with ``wav/`` (any soundfile format: .wav, .flac) and ``lab/``
(HTS full-context labels, ``<utt>.lab``), and optionally ``train.list``,
``dev.list``, ``eval.list``. That covers the shipped corpus (``data/slt_festival``)
and CMU ARCTIC with HTS-demo labels once its files are placed (or linked) that way.
A corpus can also be downloaded: ``corpus.url`` names a .tar.gz/.tgz/.zip archive
that unpacks to such a directory (``corpus.subdir`` inside it).

Writes ``<exp>/data/{train,dev,eval}.list``, ``wav.scp`` and ``lab.scp`` (absolute
paths). Config keys (section ``corpus``)::

    path: data/slt_festival   # local corpus directory
    url: null                 # archive to download instead (into <exp>/downloads)
    subdir: null              # directory inside the archive holding wav/ and lab/
    dev_fraction: 0.05        # used only when the corpus has no split lists
    eval_fraction: 0.05
    max_utts: null            # cap per split (quick experiments, tests)
"""
from __future__ import annotations

import logging
import shutil
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from sps.config import bind
from sps.io import AUDIO_EXTENSIONS, is_valid_id, read_list, write_list, write_scp
from sps.stages.experiment import SPLITS
from sps.stages.runner import StageContext

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusConfig:
    """Section ``corpus`` of ``conf/prepare.yaml``."""
    path: str = "data/slt_festival"     # local directory with wav/ and lab/
    url: str | None = None              # archive to download instead (into <exp>/downloads)
    subdir: str | None = None           # directory inside the archive holding wav/ and lab/
    dev_fraction: float = 0.05          # used only when the corpus has no split lists
    eval_fraction: float = 0.05
    max_utts: int | None = None         # cap per split (quick experiments, tests)

    def __post_init__(self):
        for name in ("dev_fraction", "eval_fraction"):
            if not 0.0 <= getattr(self, name) < 0.5:
                raise ValueError(f"{name} must be in [0, 0.5), got {getattr(self, name)}")
        if self.max_utts is not None and self.max_utts < 1:
            raise ValueError(f"max_utts must be >= 1 or null, got {self.max_utts}")


@dataclass(frozen=True)
class PrepareConfig:
    corpus: CorpusConfig = field(default_factory=CorpusConfig)


def download(url: str, dest_dir: Path) -> Path:
    """Download and unpack an archive once; return the unpacked directory."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = url.rstrip("/").rsplit("/", 1)[-1]
    archive = dest_dir / name
    unpacked = dest_dir / (name.split(".")[0] + "_unpacked")
    if unpacked.exists():
        return unpacked
    if not archive.exists():
        logger.info("downloading %s", url)
        tmp = archive.with_suffix(archive.suffix + ".part")
        with urllib.request.urlopen(url) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out)
        tmp.rename(archive)
    tmp_dir = dest_dir / (unpacked.name + ".part")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp_dir)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(tmp_dir, filter="data")
    tmp_dir.rename(unpacked)
    return unpacked


def scan_corpus(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Pair ``wav/<utt>.*`` with ``lab/<utt>.lab``; return (wav paths, label paths)."""
    wav_dir, lab_dir = root / "wav", root / "lab"
    for d in (wav_dir, lab_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: corpus directory must contain wav/ and lab/")
    wavs = {p.stem: str(p.resolve()) for p in sorted(wav_dir.iterdir()) if p.suffix.lower() in AUDIO_EXTENSIONS}
    labs = {p.stem: str(p.resolve()) for p in sorted(lab_dir.glob("*.lab"))}
    missing_lab = sorted(set(wavs) - set(labs))
    missing_wav = sorted(set(labs) - set(wavs))
    if missing_lab:
        logger.warning("%d audio files have no label and are left out (e.g. %s)", len(missing_lab), missing_lab[0])
    if missing_wav:
        logger.warning("%d labels have no audio and are left out (e.g. %s)", len(missing_wav), missing_wav[0])
    common = sorted(set(wavs) & set(labs))
    bad = [u for u in common if not is_valid_id(u)]
    if bad:
        logger.warning("%d utterances have names that are not valid ids and are left out (e.g. %r; allowed: "
                       "letters, digits, '_', '.', '-', no leading dot)", len(bad), bad[0])
        common = [u for u in common if u not in bad]
    if not common:
        raise ValueError(f"{root}: no utterance has both wav/<utt>.* and lab/<utt>.lab")
    return {u: wavs[u] for u in common}, {u: labs[u] for u in common}


def make_splits(utts: list[str], dev_fraction: float, eval_fraction: float) -> dict[str, list[str]]:
    """Deterministic split: the last utterances (sorted by id) go to dev and eval."""
    n = len(utts)
    n_dev = max(1, round(n * dev_fraction)) if n >= 3 else 0
    n_eval = max(1, round(n * eval_fraction)) if n >= 3 else 0
    n_train = n - n_dev - n_eval
    return {"train": utts[:n_train], "dev": utts[n_train:n_train + n_dev], "eval": utts[n_train + n_dev:]}


def corpus_splits(root: Path, utts, dev_fraction: float, eval_fraction: float,
                  max_utts: int | None = None) -> dict[str, list[str]]:
    """Splits of the utterances ``utts`` of the corpus at ``root``.

    The corpus's own ``train.list``, ``dev.list`` and ``eval.list`` where all three exist
    (ids not among ``utts`` are left out, with a warning), else :func:`make_splits` of the
    sorted ids; ``max_utts`` caps each split.
    """
    utts = set(utts)
    if all((root / f"{s}.list").exists() for s in SPLITS):
        splits = {}
        for s in SPLITS:
            ids = read_list(root / f"{s}.list")
            unknown = [u for u in ids if u not in utts]
            if unknown:
                logger.warning("%s.list: %d ids are not usable utterances of the corpus and are left out (e.g. %s)",
                               s, len(unknown), unknown[0])
            splits[s] = [u for u in ids if u in utts]
    else:
        splits = make_splits(sorted(utts), dev_fraction, eval_fraction)
    if max_utts:
        splits = {s: ids[:max_utts] for s, ids in splits.items()}
    return splits


def run(ctx: StageContext) -> None:
    cfg = bind(PrepareConfig, ctx.config, "prepare").corpus
    if cfg.url:
        root = download(cfg.url, ctx.exp_dir / "downloads")
        if cfg.subdir:
            root = root / cfg.subdir
    else:
        root = Path(cfg.path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: corpus directory not found")
    wavs, labs = scan_corpus(root)
    splits = corpus_splits(root, wavs, cfg.dev_fraction, cfg.eval_fraction, cfg.max_utts)
    data = ctx.exp.data_dir
    used = sorted({u for ids in splits.values() for u in ids})
    for s in SPLITS:
        write_list(data / f"{s}.list", splits[s])
    write_scp(data / "wav.scp", {u: wavs[u] for u in used})
    write_scp(data / "lab.scp", {u: labs[u] for u in used})
    print(f"prepare: {root} -> {data}: " + ", ".join(f"{s} {len(splits[s])}" for s in SPLITS))
