"""shuffled_batches: the one data order of the in-memory problems, against its documented contract."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from bench_core.batching import shuffled_batches


def rows(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs whose first column is the row's index, and labels that are the index too (to check pairing)."""
    index = torch.arange(n)
    return torch.stack([index.float(), -index.float()], dim=1), index.clone()


def epochs(n: int, batch_size: int, seed: int, count: int) -> list[list[int]]:
    """The row indices drawn in each of ``count`` epochs (``n // batch_size`` batches make an epoch)."""
    batches = shuffled_batches(rows(n), batch_size, torch.Generator().manual_seed(seed))
    per_epoch = n // batch_size
    return [[int(i) for _, y in itertools.islice(batches, per_epoch) for i in y] for _ in range(count)]


def test_every_sample_appears_once_per_epoch_when_the_batch_size_divides_the_data():
    for epoch in epochs(12, 4, seed=0, count=3):
        assert sorted(epoch) == list(range(12))


def test_the_last_partial_batch_is_dropped_and_every_batch_has_the_same_size():
    x, y = rows(10)
    batches = shuffled_batches((x, y), 3, torch.Generator().manual_seed(0))
    sizes = [len(batch[0]) for batch in itertools.islice(batches, 30)]
    assert sizes == [3] * 30
    for epoch in epochs(10, 3, seed=0, count=5):  # 3 batches of 3: 9 of the 10 rows, none twice
        assert len(epoch) == len(set(epoch)) == 9 and set(epoch) <= set(range(10))


def test_a_row_left_out_of_one_epoch_comes_back_in_another():
    left_out = {(set(range(10)) - set(epoch)).pop() for epoch in epochs(10, 3, seed=0, count=20)}
    assert len(left_out) > 1, "the dropped row is drawn anew each epoch, not always the same one"


def test_the_rows_of_every_tensor_stay_together():
    x, y = rows(20)
    for bx, by in itertools.islice(shuffled_batches((x, y), 5, torch.Generator().manual_seed(3)), 12):
        assert torch.equal(bx[:, 0].long(), by) and torch.equal(bx[:, 1], -bx[:, 0])


def test_the_same_seed_gives_the_same_order_and_other_seeds_other_orders():
    assert epochs(50, 5, seed=7, count=3) == epochs(50, 5, seed=7, count=3)
    orders = [epochs(50, 5, seed=seed, count=1)[0] for seed in range(5)]
    assert len({tuple(order) for order in orders}) == 5
    first, second = epochs(50, 5, seed=7, count=2)
    assert first != second, "each epoch is shuffled anew"


def test_the_order_is_the_documented_plain_pytorch_loop():
    x, y = rows(23)
    batch_size, seed = 4, 11
    generator = torch.Generator().manual_seed(seed)
    expected = []
    for _ in range(3):  # the loop of the module's docstring
        perm = torch.randperm(23, generator=generator)
        for k in range(23 // batch_size):
            idx = perm[k * batch_size:(k + 1) * batch_size]
            expected.append((x[idx], y[idx]))
    got = list(itertools.islice(shuffled_batches((x, y), batch_size, torch.Generator().manual_seed(seed)),
                                len(expected)))
    for (gx, gy), (ex, ey) in zip(got, expected, strict=True):
        assert torch.equal(gx, ex) and torch.equal(gy, ey)


def test_a_batch_as_large_as_the_data_is_the_stored_tensors_themselves_every_step():
    x, y = rows(6)
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    batches = shuffled_batches((x, y), 6, generator)
    for _ in range(3):  # not shuffled, not copied: the very tensors, in their stored order
        bx, by = next(batches)
        assert bx is x and by is y
    assert torch.equal(generator.get_state(), state), "no randperm: the generator is not drawn from"


def test_a_full_batch_is_the_documented_plain_pytorch_loop():
    x, y = rows(7)
    for step, (bx, by) in enumerate(itertools.islice(shuffled_batches((x, y), 7, torch.Generator()), 4)):
        assert torch.equal(bx, x) and torch.equal(by, y), step  # the docstring's loop: tuple(tensors) every step


def test_any_integer_type_is_a_batch_size():
    batch = next(shuffled_batches(rows(8), np.int64(4), torch.Generator().manual_seed(0)))
    assert len(batch[0]) == 4


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, 2.5, True, "4", None])
def test_a_batch_size_that_is_not_a_positive_integer_is_refused_at_once(batch_size):
    with pytest.raises(ValueError, match=r"^batch_size=.* must be a positive integer$"):
        shuffled_batches(rows(8), batch_size, torch.Generator())  # not at the first next()


def test_a_batch_size_above_the_number_of_samples_is_refused_at_once():
    with pytest.raises(ValueError, match=r"batch_size 9 exceeds the 8 training samples"):
        shuffled_batches(rows(8), 9, torch.Generator())
