"""Block-sparse products with banded matrices (mel filterbanks, resampling kernels).

A mel filterbank (each FFT bin feeds at most two filters) and a windowed-sinc
resampling kernel (each output phase reads a dozen input samples) are banded: a
dense product with them spends most of its time multiplying zeros.  Splitting the
columns into blocks, each with the few rows holding its weights, keeps the products
dense BLAS calls while skipping the zeros.
"""

from __future__ import annotations

import torch


def column_blocks(matrix: torch.Tensor, *, step: int = 16, overhead: int = 300) -> list[tuple[int, int, int, int]]:
    """Split a banded matrix into column blocks for a block-sparse product.

    Each block ``(c0, c1, r0, r1)`` is the columns ``c0:c1`` and the rows ``r0:r1``
    holding their non-zero entries.  A dynamic programme over block boundaries
    every ``step`` columns minimises the entries multiplied plus ``overhead`` entries
    per block (the cost of one more matrix-product call), so narrow bands get small
    blocks and wide bands large ones.

    Args:
        matrix: ``(rows, cols)``.

    Returns:
        Blocks in column order; columns without non-zero entries are left out.
    """
    nz = matrix != 0
    n_rows, n_cols = matrix.shape
    step = max(step, n_cols // 128)  # the programme is quadratic in the number of boundaries
    used = nz.any(dim=0)
    first = torch.where(used, nz.to(torch.uint8).argmax(dim=0), n_rows).tolist()
    last = torch.where(used, n_rows - 1 - nz.flip(0).to(torch.uint8).argmax(dim=0), -1).tolist()
    bounds = [*range(0, n_cols, step), n_cols]
    spans = []  # spans[i][j]: (first row, last row) of the columns bounds[i]:bounds[j]
    for i in range(len(bounds) - 1):
        lo, hi, row = n_rows, -1, {}
        for j in range(i + 1, len(bounds)):
            lo = min(lo, min(first[bounds[j - 1]:bounds[j]]))
            hi = max(hi, max(last[bounds[j - 1]:bounds[j]]))
            row[j] = (lo, hi)
        spans.append(row)
    best, prev = [0] + [None] * (len(bounds) - 1), [0] * len(bounds)
    for j in range(1, len(bounds)):
        for i in range(j):
            lo, hi = spans[i][j]
            cost = best[i] + ((hi - lo + 1) * (bounds[j] - bounds[i]) + overhead if hi >= lo else 0)
            if best[j] is None or cost < best[j]:
                best[j], prev[j] = cost, i
    blocks, j = [], len(bounds) - 1
    while j > 0:
        i = prev[j]
        lo, hi = spans[i][j]
        if hi >= lo:
            blocks.append((bounds[i], bounds[j], lo, hi + 1))
        j = i
    return blocks[::-1]
