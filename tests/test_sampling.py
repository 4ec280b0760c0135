"""The shared inverse-CDF sampler against a NumPy reference."""
import numpy as np
import torch

from sps.vocoders.sampling import sample_cdf


def test_sample_cdf_matches_numpy_inverse_cdf():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(500, 256, generator=g) * 3
    u = torch.rand(500, generator=g)
    for temp in (1.0, 0.6):
        got = sample_cdf(logits, u, temp).numpy()
        z = logits.double().numpy() / temp
        p = np.exp(z - z.max(1, keepdims=True))
        cdf = np.cumsum(p, 1) / p.sum(1, keepdims=True)
        want = [min(np.searchsorted(cdf[i], u[i].item(), side="right"), 255) for i in range(500)]
        assert np.array_equal(got, want)


def test_sample_cdf_argmax_and_extremes():
    logits = torch.tensor([[0.0, 5.0, 1.0], [2.0, 0.0, 0.0]])
    assert sample_cdf(logits, torch.zeros(2), argmax=True).tolist() == [1, 0]
    # u = 0 takes the first class with any mass, u -> 1 the last
    assert sample_cdf(logits, torch.zeros(2)).tolist() == [0, 0]
    assert sample_cdf(logits, torch.full((2,), 0.999999)).tolist() == [2, 2]
