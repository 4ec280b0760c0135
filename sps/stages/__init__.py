"""The recipe stages: commands that read and write an experiment directory.

One module per stage (``prepare``, ``features``, ``linguistic``, ``stats``, ``train``,
``synth``, ``evaluate``, ``report``, ``vocoder``), the :class:`Experiment` that names
every path of the on-disk contract, the utterance runner (workers, shards, resume,
per-utterance failures) and the datasets that read the dump. The library packages
below never import from here; ``sps.cli`` exposes each stage as a subcommand.
"""
from sps.stages.experiment import SPLITS, Experiment
from sps.stages.runner import StageContext, StageSummary, run_utterances

__all__ = ["Experiment", "SPLITS", "StageContext", "StageSummary", "run_utterances"]
