"""Recipe stage ``features``: corpus -> ``dump/<split>/{out_acoustic,lf0_raw,mel,wav}/<utt>.npy``.

Reads ``data/{train,dev,eval}.list``, ``data/wav.scp`` and ``data/lab.scp`` of the
experiment directory, writes the stream specs ``dump/out_acoustic.json`` and
``dump/mel.json`` (a rerun with different settings is refused unless ``--force``,
since resuming would mix two layouts), and runs :func:`sps.features.acoustic.extract_utterance` on every
utterance through :func:`sps.stages.runner.run_utterances` (``--jobs``, ``--shard``, resume,
bad utterances reported and skipped). Each utterance's record
(``dump/<split>/.stamps/features/<utt>.json``) holds the digests of its audio, its
labels and the specs: a rerun redoes exactly the utterances whose record no longer
matches (a killed ``--force`` run, another corpus with the same ids). A summary of each
split goes to ``dump/<split>/features_report.txt``.
"""
from __future__ import annotations

import functools
import logging

from sps.config import bind
from sps.features import FeatureConfig, acoustic_spec, extract_utterance, mel_spec
from sps.io import read_json, save_array, write_json
from sps.stages.experiment import STAGE_KINDS, Experiment
from sps.stages.runner import StageContext, run_utterances
from sps.stages.stamps import Stamps, digest, file_digest

logger = logging.getLogger(__name__)

#: the files one utterance produces, per split: dump/<split>/<kind>/<utt>.npy
KINDS = STAGE_KINDS["features"]


def process_utterance(utt: str, *, exp: Experiment, split: str, config: FeatureConfig) -> None:
    """Extract and save all outputs of ``utt`` (picklable with functools.partial)."""
    wav, lab = exp.scp("wav"), exp.scp("lab")
    for name, table in (("wav", wav), ("lab", lab)):
        if utt not in table:
            raise ValueError(f"{exp.data_dir / (name + '.scp')}: no entry for utterance {utt!r}")
    feats = extract_utterance(wav[utt], lab[utt], config)
    for kind in KINDS:
        save_array(exp.dump_path(split, kind, utt), feats[kind])


def stamps(exp: Experiment, split: str) -> Stamps:
    """The records of this stage over a split: an utterance's key is the content of its
    audio and labels and the stream specs (:mod:`sps.stages.stamps`)."""
    specs = exp.spec_digests(("out_acoustic", "mel"))
    wav, lab = exp.scp("wav"), exp.scp("lab")
    return Stamps(exp.root, exp.stamp_dir("features", split),
                  outputs=lambda utt: [exp.dump_path(split, kind, utt) for kind in KINDS],
                  key=lambda utt: digest({"specs": specs, "wav": file_digest(wav[utt]), "lab": file_digest(lab[utt])}),
                  specs=specs)


def run(ctx: StageContext) -> dict:
    """Stage entry point (``sps features``).

    Returns
    -------
    summaries : dict split -> sps.stages.runner.StageSummary
    """
    config = bind(FeatureConfig, ctx.config, "features")
    exp = ctx.exp
    exp.scp("wav"), exp.scp("lab")  # both must exist
    for kind, spec in (("out_acoustic", acoustic_spec(config)), ("mel", mel_spec(config))):
        path = exp.spec_path(kind)
        if path.exists() and not ctx.force and read_json(path) != spec:
            raise ValueError(f"{path}: existing features were made with other settings than the "
                             "current config; rerun with --force to redo them all, or use a new exp dir")
        write_json(path, spec)

    summaries = {}
    for split in exp.splits():
        process = functools.partial(process_utterance, exp=exp, split=split, config=config)
        suffix = "" if ctx.shard is None else f".{ctx.shard[0]}of{ctx.shard[1]}"
        summaries[split] = run_utterances(
            exp.utterances(split, stage="features"), process, desc=f"features {split}", jobs=ctx.jobs,
            shard=ctx.shard, stamps=stamps(exp, split), force=ctx.force,
            report=exp.dump_dir / split / f"features_report{suffix}.txt",
            rejected=exp.rejected_path("features", ctx.shard), max_failed=ctx.max_failed)
    return summaries
