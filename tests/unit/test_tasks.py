import pytest
import torch

from grokscope.data.tasks import OPERATIONS, all_pairs, is_prime, make_split


def test_operations_match_python_arithmetic():
    p = 13
    a, b = torch.tensor([3, 5, 12]), torch.tensor([4, 7, 9])
    expect = {
        "add": [(x + y) % p for x, y in zip(a.tolist(), b.tolist())],
        "sub": [(x - y) % p for x, y in zip(a.tolist(), b.tolist())],
        "mul": [(x * y) % p for x, y in zip(a.tolist(), b.tolist())],
        "div": [(x * pow(y, -1, p)) % p for x, y in zip(a.tolist(), b.tolist())],
        "sq": [(x * x + y * y) % p for x, y in zip(a.tolist(), b.tolist())],
        "sq_ab": [(x * x + x * y + y * y) % p for x, y in zip(a.tolist(), b.tolist())],
        "cube_ab": [(x**3 + x * y) % p for x, y in zip(a.tolist(), b.tolist())],
    }
    for name, want in expect.items():
        assert OPERATIONS[name].fn(a, b, p).tolist() == want, name


def test_pairs_zero_exclusion_and_unordered():
    assert len(all_pairs(97)) == 96 * 96 == 9216  # the papers' code default
    assert len(all_pairs(97, exclude_zero=False)) == 97 * 97
    assert len(all_pairs(37, exclude_zero=False, unordered=True)) == 37 * 38 // 2


def test_split_is_shared_across_tasks_and_fixed_by_seed():
    s1 = make_split(("add", "mul"), 11, 0.5, data_seed=3)
    s2 = make_split(("add", "mul"), 11, 0.5, data_seed=3)
    s3 = make_split(("add", "mul"), 11, 0.5, data_seed=4)
    assert torch.equal(s1.train_idx, s2.train_idx)
    assert not torch.equal(s1.train_idx, s3.train_idx)
    assert s1.targets.shape == (100, 2)
    assert set(s1.train_idx.tolist()).isdisjoint(s1.test_idx.tolist())
    assert s1.n_train + len(s1.test_idx) == 100
    a, b = s1.pairs[:, 0], s1.pairs[:, 1]
    assert torch.equal(s1.targets[:, 1], (a * b) % 11)


@pytest.mark.parametrize("n,prime", [(2, True), (9, False), (97, True), (91, False), (1, False)])
def test_is_prime(n, prime):
    assert is_prime(n) == prime
