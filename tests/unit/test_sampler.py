import torch

from grokscope.data.sampler import sample_indices


def test_sampling_is_per_run_and_batch_independent():
    seeds = torch.tensor([42, 137, 2024])
    both = sample_indices(seeds, step=5, batch=64, n=100)
    alone = sample_indices(seeds[1:2], step=5, batch=64, n=100)
    assert torch.equal(both[1:2], alone)
    assert not torch.equal(both[0], both[1])
    assert not torch.equal(sample_indices(seeds, 6, 64, 100), both)
    assert both.min() >= 0 and both.max() < 100


def test_sampling_is_roughly_uniform():
    idx = sample_indices(torch.tensor([1]), step=0, batch=200_000, n=10)
    counts = torch.bincount(idx.flatten(), minlength=10).float()
    assert (counts / counts.mean() - 1).abs().max() < 0.03
