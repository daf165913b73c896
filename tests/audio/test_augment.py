"""SpecAugment: mask sizes within the paper's ratios, per-example masks, reproducible under a generator."""

from __future__ import annotations

import pytest
import torch

from soundedit.audio import spec_augment
from soundedit.errors import InputError


def _masked_rows_cols(masked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For a (F, T) 0/1 mask: which mel rows are fully masked, which time columns are fully masked."""
    return masked.all(dim=1), masked.all(dim=0)


def test_mask_sizes_follow_the_ratios():
    n_freq, n_time = 128, 431
    mel = torch.ones(512, n_freq, n_time)
    out = spec_augment(mel, generator=torch.Generator().manual_seed(0))
    freq_widths, time_widths = [], []
    for row in out == 0:
        rows, cols = _masked_rows_cols(row)
        freq_widths.append(int(rows.sum()))
        time_widths.append(int(cols.sum()))
        # one mask of each kind: masked rows/cols are contiguous bands
        for band in (rows, cols):
            idx = torch.nonzero(band).flatten()
            if idx.numel():
                assert int(idx[-1] - idx[0]) + 1 == idx.numel()
    assert max(freq_widths) <= int(0.15 * n_freq) and max(time_widths) <= int(0.3 * n_time)
    # widths uniform over 0..max: the mean is about half the max, and the largest are reached
    assert sum(freq_widths) / 512 == pytest.approx(int(0.15 * n_freq) / 2, rel=0.15)
    assert sum(time_widths) / 512 == pytest.approx(int(0.3 * n_time) / 2, rel=0.15)
    assert max(freq_widths) >= int(0.15 * n_freq) - 1 and max(time_widths) >= int(0.3 * n_time) - 5
    # everything not masked is untouched
    assert torch.equal(out[out != 0], mel[out != 0])


def test_reproducible_per_example_and_shapes():
    mel = torch.rand(8, 64, 100, generator=torch.Generator().manual_seed(1)) + 0.1
    a = spec_augment(mel, generator=torch.Generator().manual_seed(3), n_masks=2)
    b = spec_augment(mel, generator=torch.Generator().manual_seed(3), n_masks=2)
    c = spec_augment(mel, generator=torch.Generator().manual_seed(4), n_masks=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    masks = [(a[i] == 0) for i in range(8)]
    assert any(not torch.equal(masks[0], m) for m in masks[1:])  # each example has its own masks
    four = spec_augment(mel[:, None], generator=torch.Generator().manual_seed(3), n_masks=2)
    assert four.shape == (8, 1, 64, 100) and torch.equal(four[:, 0], a)
    single = spec_augment(mel[0], generator=torch.Generator().manual_seed(3), value=-1.0)
    assert single.shape == (64, 100) and (single == -1.0).any()
    more = spec_augment(mel, generator=torch.Generator().manual_seed(3), n_masks=4)
    assert (more == 0).float().mean() > (spec_augment(mel, generator=torch.Generator().manual_seed(3)) == 0).float().mean()
    assert torch.equal(spec_augment(mel, n_masks=0), mel)


def test_differentiable_and_checks():
    mel = torch.rand(2, 16, 20, requires_grad=True)
    spec_augment(mel, generator=torch.Generator().manual_seed(0)).sum().backward()
    assert mel.grad is not None and set(mel.grad.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(InputError, match="freq_ratio"):
        spec_augment(mel, freq_ratio=1.5)
    with pytest.raises(InputError, match="n_masks"):
        spec_augment(mel, n_masks=-1)
    with pytest.raises(InputError, match="expected"):
        spec_augment(torch.zeros(3))
