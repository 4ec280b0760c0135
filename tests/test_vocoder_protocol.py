"""The vocoder protocol: declared capabilities match what each class really does, the
names users type map to the registry in one place, and the stages never probe."""
import ast
import inspect
from pathlib import Path

import pytest
import yaml

from sps.vocoders import VOCODER_NAMES, VOCODERS, get_vocoder, legacy_options, names_help
from sps.vocoders.protocol import Vocoder

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(VOCODERS))
def test_declared_capabilities_match_the_signatures(name):
    cls = get_vocoder(name)
    assert issubclass(cls, Vocoder)
    init = inspect.signature(cls.__init__).parameters
    gen = inspect.signature(cls.generate).parameters
    assert cls.reads_features == ("features" in init), name
    assert cls.takes_uniforms == ("uniforms" in gen), name
    assert "preemphasis" in init, f"{name}: pre-emphasis must be a model option"
    assert cls.trainable == (cls.loss is not Vocoder.loss), name
    for arg in ("cond", "lengths", "temperature"):
        assert arg in gen, (name, arg)


def test_target_preemphasis_is_what_the_pipeline_applies():
    from sps.vocoders.wavenet import WaveNet
    from sps.vocoders.wavernn import WaveRNN
    assert WaveNet(5, layers=2, max_dilation=2, upsample_scales=(), hop_length=4,
                   preemphasis=0.9).target_preemphasis == 0.9
    assert WaveRNN(5, hidden=8, cond_channels=4, hop_length=4).target_preemphasis == 0.0
    for name in ("wavenet_lpc", "wavernn_lpc", "source_filter"):     # pre-/de-emphasis inside
        assert get_vocoder(name).target_preemphasis == 0.0
    with pytest.raises(ValueError, match="preemphasis"):
        WaveNet(5, preemphasis=1.0)


def test_legacy_top_level_preemphasis_moves_into_the_options():
    assert legacy_options({"model": {"layers": 2}, "preemphasis": 0.97}) == {"layers": 2, "preemphasis": 0.97}
    assert legacy_options({"model": {"preemphasis": 0.5}, "preemphasis": 0.97}) == {"preemphasis": 0.5}
    assert legacy_options({"model": {"layers": 2}, "preemphasis": 0.0}) == {"layers": 2}


@pytest.mark.parametrize("name", sorted(VOCODER_NAMES))
def test_user_names_map_to_the_configs(name):
    """--vocoder X reads conf/X.yaml: its 'vocoder:' key is VOCODER_NAMES[X], its models/ name X."""
    cfg = yaml.safe_load((ROOT / "recipes" / "slt_festival" / "conf" / f"{name}.yaml").read_text())
    assert cfg["vocoder"] == VOCODER_NAMES[name]
    assert cfg.get("name", cfg["vocoder"]) == name
    assert "preemphasis" not in cfg                       # one place: model.preemphasis
    assert f"{name} -> {VOCODER_NAMES[name]}" in names_help()


#: every shipped config that trains or runs a vocoder (synth.yaml's 'vocoder:' picks one at synthesis)
VOCODER_CONFIGS = sorted(p for p in (ROOT / "recipes").glob("*/conf/*.yaml")
                         if (yaml.safe_load(p.read_text()) or {}).get("vocoder") in VOCODERS)


@pytest.mark.parametrize("path", VOCODER_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_vocoder_config_is_accepted(path):
    """The GPU-only configs too (nothing else loads them here): a key the checks refuse fails."""
    from sps.config import load_config
    from sps.stages.vocoder import vocoder_config
    cfg = vocoder_config(load_config(path))
    assert cfg.model_name == path.stem


def test_run_sh_help_states_the_mapping():
    text = (ROOT / "recipes" / "slt_festival" / "run.sh").read_text()
    for name, registry in VOCODER_NAMES.items():
        assert f"{name} -> {registry}" in text


PROBES = {"hasattr", "getattr"}


def _probes(path: Path) -> list[str]:
    """Calls of inspect.* and hasattr/getattr whose object is a vocoder model (by name)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "inspect":
            found.append(f"{path.name}:{node.lineno} inspect.{f.attr}")
        if isinstance(f, ast.Name) and f.id in PROBES and node.args:
            target = ast.unparse(node.args[0])
            if any(w in target for w in ("model", "vocoder", "get_vocoder")):
                found.append(f"{path.name}:{node.lineno} {f.id}({target}, ...)")
    return found


def test_no_stage_probes_a_vocoder():
    files = sorted((ROOT / "sps" / "stages").glob("*.py")) + [ROOT / "sps" / "synthesis" / "vocoding.py"]
    assert [p for f in files for p in _probes(f)] == []
