"""Recipe stage ``features``: corpus -> ``dump/<split>/{out_acoustic,lf0_raw,mel,wav}/<utt>.npy``.

Reads ``data/{train,dev,eval}.list``, ``data/wav.scp`` and ``data/lab.scp`` of the
experiment directory, writes the stream specs ``dump/out_acoustic.json`` and
``dump/mel.json`` (a rerun with different settings is refused unless ``--force``,
since resuming would mix two layouts), and runs :func:`sps.features.acoustic.extract_utterance` on every
utterance through :func:`sps.stage.run_utterances` (``--jobs``, ``--shard``, resume,
bad utterances reported and skipped). A summary of each split goes to
``dump/<split>/features_report.txt``.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

from sps.features.acoustic import FeatureConfig, acoustic_spec, extract_utterance, mel_spec

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "eval")
#: the files one utterance produces, per split: dump/<split>/<kind>/<utt>.npy
KINDS = ("out_acoustic", "lf0_raw", "mel", "wav")


@functools.lru_cache(maxsize=8)
def _scp(path: str, mtime: float) -> dict[str, str]:
    from sps.io import read_scp
    return read_scp(path)


def _lookup(scp_path: Path, utt: str) -> str:
    table = _scp(str(scp_path), scp_path.stat().st_mtime)
    if utt not in table:
        raise ValueError(f"{scp_path}: no entry for utterance {utt!r}")
    return table[utt]


def outputs(dump_dir: Path, split: str, utt: str) -> dict[str, Path]:
    """Output file of each kind for one utterance."""
    return {kind: dump_dir / split / kind / f"{utt}.npy" for kind in KINDS}


def process_utterance(utt: str, *, data_dir: Path, dump_dir: Path, split: str,
                      config: FeatureConfig) -> None:
    """Extract and save all outputs of ``utt`` (picklable with functools.partial)."""
    from sps.io import save_array
    wav = _lookup(data_dir / "wav.scp", utt)
    lab = _lookup(data_dir / "lab.scp", utt)
    feats = extract_utterance(wav, lab, config)
    for kind, path in outputs(dump_dir, split, utt).items():
        save_array(path, feats[kind])


def run(ctx) -> dict:
    """Stage entry point (``sps features``).

    Parameters
    ----------
    ctx : sps.stage.StageContext
        ``exp_dir``, ``config`` (keys of :class:`FeatureConfig`), ``jobs``, ``shard``,
        ``force``.

    Returns
    -------
    summaries : dict split -> sps.stage.StageSummary
    """
    from sps.io import read_json, read_list, write_json
    from sps.stage import run_utterances

    config = FeatureConfig.from_dict(ctx.config)
    exp_dir = Path(ctx.exp_dir)
    data_dir, dump_dir = exp_dir / "data", exp_dir / "dump"
    for name in ("wav.scp", "lab.scp"):
        if not (data_dir / name).exists():
            raise FileNotFoundError(f"{data_dir / name}: not found (run the prepare stage first)")
    for kind, spec in (("out_acoustic", acoustic_spec(config)), ("mel", mel_spec(config))):
        path = dump_dir / f"{kind}.json"
        if path.exists() and not ctx.force and read_json(path) != spec:
            raise ValueError(f"{path}: existing features were made with other settings than the "
                             "current config; rerun with --force to redo them all, or use a new exp dir")
        write_json(path, spec)

    summaries = {}
    for split in SPLITS:
        list_path = data_dir / f"{split}.list"
        if not list_path.exists():
            logger.info("features: %s not found, split %s skipped", list_path, split)
            continue
        utts = read_list(list_path)
        process = functools.partial(process_utterance, data_dir=data_dir, dump_dir=dump_dir,
                                    split=split, config=config)
        done = None if ctx.force else functools.partial(_is_done, dump_dir=dump_dir, split=split)
        suffix = "" if ctx.shard is None else f".{ctx.shard[0]}of{ctx.shard[1]}"
        summaries[split] = run_utterances(
            utts, process, desc=f"features {split}", jobs=ctx.jobs, shard=ctx.shard, done=done,
            report=dump_dir / split / f"features_report{suffix}.txt")
    return summaries


def _is_done(utt: str, *, dump_dir: Path, split: str) -> bool:
    return all(p.exists() for p in outputs(dump_dir, split, utt).values())
