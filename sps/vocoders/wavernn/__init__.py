"""WaveRNN vocoder (dual softmax, masked GRU) with fast and folded generation.

See ``docs/wavernn.md``. Public names::

    WaveRNN                    the model (``loss``, ``generate``)
    split_16bit, merge_16bit   waveform <-> coarse/fine bytes
    fold, unfold               segmenting a long utterance for batched generation
    magnitude_prune            sparsify the recurrent and output matrices
"""
from .generate import fold, unfold
from .model import WaveRNN, magnitude_prune
from .ops import merge_16bit, split_16bit

__all__ = ["WaveRNN", "split_16bit", "merge_16bit", "fold", "unfold", "magnitude_prune"]
