"""Text front end: Festival turns a sentence into HTS full-context labels.

Festival (a subprocess) does text normalisation, pronunciation, phrasing and
prosodic labelling; ``hts_dump_feats`` writes the standard HTS English full-context
format (``p1^p2-p3+p4=p5@p6_p7/A:...``) with the times of Festival's own duration
model.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from sps.frontend.labels import load_labels, Labels

INSTALL_HINT = "install it with: apt-get install festival festvox-us-slt-hts"


def _scheme_string(text: str) -> str:
    """A Scheme string literal for ``text`` (backslashes and quotes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def text_to_labels(text: str, voice: str = "cmu_us_slt_arctic_hts", durations: bool = False,
                   timeout: float = 60.0) -> Labels:
    """Full-context labels for a sentence, made by Festival.

    Parameters
    ----------
    text : str
        Sentence(s) to speak.
    voice : str
        Festival voice (``voice_<name>`` must exist); it sets the lexicon, phone set
        and duration model.
    durations : bool
        False (default): labels without times, to be timed by a duration model.
        True: keep Festival's predicted times (``Labels.predicted_times`` is True).
    timeout : float
        Seconds before Festival is given up on.

    Returns
    -------
    Labels
        One row per phone, phone-aligned.

    Raises
    ------
    FileNotFoundError
        Festival is not installed.
    RuntimeError
        Festival failed (unknown voice, ...); the message holds its output.
    """
    if not text or not text.strip():
        raise ValueError("text_to_labels: empty text")
    exe = shutil.which("festival")
    if exe is None:
        raise FileNotFoundError(f"festival not found on PATH; {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="sps_festival_") as tmp:
        lab = Path(tmp) / "utt.lab"
        script = Path(tmp) / "run.scm"
        script.write_text(
            f"(voice_{voice})\n"
            f"(set! utt (Utterance Text {_scheme_string(' '.join(text.split()))}))\n"
            "(utt.synth utt)\n"
            f"(hts_dump_feats utt hts_feats_list {_scheme_string(str(lab))})\n")
        try:
            proc = subprocess.run([exe, "-b", str(script)], capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"festival did not finish within {timeout} s for {text!r}") from None
        if not lab.exists() or not lab.read_text().strip():
            msg = (proc.stdout + proc.stderr).strip()
            hint = f" (is the voice installed? {INSTALL_HINT})" if "voice_" in msg or "unbound" in msg else ""
            raise RuntimeError(f"festival produced no labels for {text!r} with voice {voice!r}{hint}: {msg}")
        labels = load_labels(lab)
    labels = Labels(contexts=labels.contexts, times=labels.times, num_states=1,
                    path=f"<festival {voice}>", predicted_times=True)
    return labels if durations else labels.without_times()
