"""Text front end: Festival turns text into HTS full-context labels.

Festival (a subprocess) does text normalisation, pronunciation, phrasing and
prosodic labelling; ``hts_dump_feats`` writes the standard HTS English full-context
format (``p1^p2-p3+p4=p5@p6_p7/A:...``) with the times of Festival's own duration
model.

Text rules (:func:`clean_text`): accented letters are folded to ASCII (``naïve café``
-> ``naive cafe``) and other non-ASCII characters (emoji, other scripts) are dropped,
both with a warning; empty text, text with nothing speakable left, and text holding a
NUL character are errors. Long text is cut at sentence ends into chunks of at most
:data:`CHUNK_WORDS` words, each synthesised by its own Festival call (so any length
works within the per-call ``timeout``); the labels are joined in order. The voice name
must be an identifier: it is the one piece of input that reaches Scheme unquoted.
"""
from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
import unicodedata
from pathlib import Path

import numpy as np

from sps.frontend.labels import Labels, load_labels

logger = logging.getLogger(__name__)

INSTALL_HINT = "install it with: apt-get install festival festvox-us-slt-hts"
#: the voice whose files define ``hts_dump_feats`` (the default voice)
HTS_VOICE = "cmu_us_slt_arctic_hts"
#: words per Festival call at most (cut at sentence ends, or between words)
CHUNK_WORDS = 60
_VOICE_RE = re.compile(r"[A-Za-z0-9_]+")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


def scheme_string(text: str) -> str:
    """A Scheme string literal for ``text`` (backslashes and quotes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def clean_text(text: str) -> str:
    """Text Festival can read: ASCII, whitespace collapsed (see the module docstring).

    Raises
    ------
    ValueError
        Empty text, a NUL character, or nothing speakable (no letter or digit) left.
    """
    if "\0" in text:
        raise ValueError("text contains a NUL character")
    if not text.strip():
        raise ValueError("empty text")
    folded = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    ascii_text = folded.encode("ascii", "ignore").decode("ascii")
    ascii_text = " ".join(ascii_text.split())
    if ascii_text != " ".join(text.split()):
        dropped = sorted({c for c in folded if ord(c) > 127})
        logger.warning("text changed for Festival (ASCII only): %r -> %r%s", text[:80], ascii_text[:80],
                       f" (dropped {''.join(dropped[:10])!r})" if dropped else "")
    if not any(c.isalnum() for c in ascii_text):
        raise ValueError(f"no speakable text in {text[:80]!r} (Festival reads English ASCII text)")
    return ascii_text


def split_text(text: str, max_words: int = CHUNK_WORDS) -> list[str]:
    """Chunks of at most ``max_words`` words, cut at sentence ends where possible."""
    chunks, current = [], []
    for sentence in _SENTENCE_END.split(text):
        words = sentence.split()
        while words:
            room = max_words - len(current)
            if len(words) <= room:
                current += words
                words = []
            elif current:
                chunks.append(" ".join(current))
                current = []
            else:
                chunks.append(" ".join(words[:max_words]))
                words = words[max_words:]
    if current:
        chunks.append(" ".join(current))
    return chunks


def split_sentences(text: str, max_words: int = CHUNK_WORDS) -> list[str]:
    """The sentences of a text (cut after ``. ! ? ; :``), each of at most ``max_words``
    words; pieces with no letter or digit (stray punctuation) are left out."""
    return [chunk for sentence in _SENTENCE_END.split(text) for chunk in split_text(sentence, max_words)
            if any(c.isalnum() for c in chunk)]


def check_voice(voice: str) -> str:
    """``voice`` if it is a Festival voice name (an identifier), else ValueError."""
    if not isinstance(voice, str) or not _VOICE_RE.fullmatch(voice):
        raise ValueError(f"invalid Festival voice name {voice!r} (letters, digits and '_' only)")
    return voice


def _festival_labels(text: str, voice: str, timeout: float) -> Labels:
    exe = shutil.which("festival")
    if exe is None:
        raise FileNotFoundError(f"festival not found on PATH; {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="sps_festival_") as tmp:
        lab = Path(tmp) / "utt.lab"
        script = Path(tmp) / "run.scm"
        script.write_text(
            f"(voice_{voice})\n"
            f"(set! utt (Utterance Text {scheme_string(text)}))\n"
            "(utt.synth utt)\n"
            f"(hts_dump_feats utt hts_feats_list {scheme_string(str(lab))})\n")
        try:
            proc = subprocess.run([exe, "-b", str(script)], capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"festival did not finish within {timeout:g} s for {text[:80]!r} "
                               "(raise the timeout)") from None
        if not lab.exists() or not lab.read_text().strip():
            msg = " ".join((proc.stdout + proc.stderr).split())[-500:]
            hint = f" (is the voice installed? {INSTALL_HINT})" if "voice_" in msg or "unbound" in msg else ""
            raise RuntimeError(f"festival produced no labels for {text[:80]!r} with voice {voice!r}{hint}: {msg}")
        return load_labels(lab)


#: Festival's text modules up to durations: ``utt.synth`` without the waveform
_FRONT_END_MODULES = ("Initialize", "Text", "Token_POS", "Token", "POS", "Phrasify", "Word", "Pauses",
                      "Intonation", "PostLex", "Duration")


def _front_end_script(voice: str, items: list[tuple[str, Path, Path]]) -> str:
    """Scheme program writing, for every ``(text, lab, words)``, the untimed labels to ``lab``
    and Festival's words (one per line) to ``words``; a failing text is skipped (its files
    are missing) and the rest go on."""
    modules = " ".join(f"({m} utt)" for m in _FRONT_END_MODULES)
    # the SLT HTS voice's files define hts_dump_feats: load it first for any other voice
    lines = ([] if voice == HTS_VOICE else [f"(voice_{HTS_VOICE})"]) + [f"(voice_{voice})",
             "(define (sps_front text labfile wordfile)",
             "  (unwind-protect",
             "    (let ((utt (eval (list 'Utterance 'Text text))))",   # Utterance quotes its arguments
             f"      {modules}",
             "      (hts_dump_feats utt hts_feats_list labfile)",
             "      (let ((fd (fopen wordfile \"w\")))",
             "        (mapcar (lambda (w) (format fd \"%s\\n\" (item.name w))) (utt.relation.items utt 'Word))",
             "        (fclose fd)))",
             "    (format stderr \"sps-failed %s\\n\" labfile)))"]
    for text, lab, words in items:
        lines.append(f"(sps_front {scheme_string(text)} {scheme_string(str(lab))} {scheme_string(str(words))})")
    return "\n".join(lines) + "\n"


def _run_front_end(exe: str, voice: str, chunks: list[str], timeout: float, durations: bool = False) -> list:
    """One Festival process over ``chunks``: ``(Labels, words)`` or a RuntimeError for each."""
    with tempfile.TemporaryDirectory(prefix="sps_festival_") as tmp:
        tmp = Path(tmp)
        items = [(c, tmp / f"{i}.lab", tmp / f"{i}.words") for i, c in enumerate(chunks)]
        script = tmp / "run.scm"
        script.write_text(_front_end_script(voice, items))
        try:
            proc = subprocess.run([exe, "-b", str(script)], capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
            msg = " ".join((proc.stdout + proc.stderr).split())[-300:]
        except subprocess.TimeoutExpired:
            msg = f"festival did not finish within {timeout:g} s"
        out = []
        for text, lab, words in items:
            if lab.exists() and lab.stat().st_size and words.exists():
                labels = load_labels(lab)
                out.append((labels if durations else labels.without_times(), words.read_text().split()))
            else:
                hint = f" (is the voice installed? {INSTALL_HINT})" if "voice_" in msg or "unbound" in msg else ""
                out.append(RuntimeError(f"festival produced no labels for {text[:80]!r} with voice "
                                        f"{voice!r}{hint}: {msg or 'no message'}"))
        return out


def texts_to_labels(texts, voice: str = "cmu_us_slt_arctic_hts", timeout: float = 60.0,
                    batch_size: int = 50, durations: bool = False) -> list:
    """Untimed full-context labels and words for many texts, a few Festival processes in all.

    Runs Festival's text modules up to its duration model (the labels equal those of
    :func:`text_to_labels`, without synthesising a waveform), ``batch_size`` texts per
    process. Texts are cleaned and cut into chunks as in :func:`text_to_labels`; a batch
    that fails as a whole is retried text by text, so one bad text costs only itself.

    Parameters
    ----------
    texts : sequence of str
    voice : str
        Festival voice (sets the lexicon and phrasing); the SLT HTS voice, whose files
        define the label dump, is loaded before any other.
    timeout : float
        Seconds per chunk (a batch process gets ``timeout`` plus 2 s per further chunk).
    batch_size : int
        Chunks per Festival process.
    durations : bool
        Keep the times of Festival's duration module (``Labels.predicted_times``).

    Returns
    -------
    list, one entry per text
        ``(Labels, words)``: the labels (chunks joined) and Festival's words; or the
        exception (``ValueError`` for bad text, ``RuntimeError`` for a Festival failure,
        ``FileNotFoundError`` when Festival is missing) that explains the failure.
    """
    check_voice(voice)
    exe = shutil.which("festival")
    results: list = [None] * len(texts)
    chunks: list[tuple[int, str]] = []
    for i, text in enumerate(texts):
        try:
            chunks += [(i, c) for c in split_text(clean_text(text))]
        except ValueError as err:
            results[i] = err
    if chunks and exe is None:
        missing = FileNotFoundError(f"festival not found on PATH; {INSTALL_HINT}")
        return [r if r is not None else missing for r in results]
    done: list = [None] * len(chunks)
    for start in range(0, len(chunks), batch_size):
        part = list(range(start, min(start + batch_size, len(chunks))))
        got = _run_front_end(exe, voice, [chunks[k][1] for k in part], timeout + 2.0 * (len(part) - 1), durations)
        if len(part) > 1 and all(isinstance(g, Exception) for g in got):
            got = [_run_front_end(exe, voice, [chunks[k][1]], timeout, durations)[0] for k in part]
        for k, g in zip(part, got):
            done[k] = g
    for i in range(len(texts)):
        if results[i] is not None:
            continue
        parts = [done[k] for k, (j, _) in enumerate(chunks) if j == i]
        err = next((p for p in parts if isinstance(p, Exception)), None)
        if err is not None:
            results[i] = err
            continue
        times = None
        if durations:
            offsets = np.cumsum([0] + [int(lab.times[-1, -1]) for lab, _ in parts[:-1]])
            times = np.concatenate([lab.times + off for (lab, _), off in zip(parts, offsets)])
        labels = Labels(contexts=[c for lab, _ in parts for c in lab.contexts], times=times, num_states=1,
                        path=f"<festival {voice}>", predicted_times=durations)
        results[i] = (labels, [w for _, words in parts for w in words])
    return results


def text_to_labels(text: str, voice: str = "cmu_us_slt_arctic_hts", durations: bool = False,
                   timeout: float = 60.0) -> Labels:
    """Full-context labels for a text, made by Festival.

    Parameters
    ----------
    text : str
        Any length; cleaned with :func:`clean_text` and cut by :func:`split_text`.
    voice : str
        Festival voice (``voice_<name>`` must exist); it sets the lexicon, phone set
        and duration model.
    durations : bool
        False (default): labels without times, to be timed by a duration model.
        True: keep Festival's predicted times (``Labels.predicted_times`` is True).
    timeout : float
        Seconds before one Festival call (one chunk) is given up on.

    Returns
    -------
    Labels
        One row per phone, phone-aligned.

    Raises
    ------
    ValueError
        Bad text or voice name.
    FileNotFoundError
        Festival is not installed.
    RuntimeError
        Festival failed (unknown voice, timeout ...); the message holds its output.
    """
    check_voice(voice)
    chunks = split_text(clean_text(text))
    parts = [_festival_labels(chunk, voice, timeout) for chunk in chunks]
    contexts = [c for p in parts for c in p.contexts]
    offset, times = 0, []
    for p in parts:
        times.append(p.times + offset)
        offset += int(p.times[-1, -1])
    labels = Labels(contexts=contexts, times=np.concatenate(times), num_states=1,
                    path=f"<festival {voice}>", predicted_times=True)
    return labels if durations else labels.without_times()
