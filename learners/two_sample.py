"""Are two sets of embeddings drawn from the same distribution? A kernel two-sample test.

Maximum mean discrepancy (Gretton et al., 2012) with a Gaussian kernel whose bandwidth is
the median pairwise distance, and a permutation test for the p-value: the labels "first
set" / "second set" are shuffled ``permutations`` times and the p-value is the share of
shuffles whose MMD is at least the observed one. Written here (forty lines over torch,
which is already loaded) rather than taken from alibi-detect, whose MMD detector brings a
deep-learning backend and its own preprocessing for what is one kernel matrix.

>>> import torch
>>> same = two_sample_test(torch.randn(80, 8, generator=torch.Generator().manual_seed(1)),
...                        torch.randn(80, 8, generator=torch.Generator().manual_seed(2)))
>>> same.p_value > 0.05
True
>>> moved = two_sample_test(torch.randn(80, 8, generator=torch.Generator().manual_seed(1)),
...                         torch.randn(80, 8, generator=torch.Generator().manual_seed(2)) + 1.0)
>>> moved.p_value < 0.01
True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["TwoSampleResult", "two_sample_test"]


@dataclass(frozen=True)
class TwoSampleResult:
    mmd2: float
    p_value: float
    n_first: int
    n_second: int


def _mmd2(kernel: Tensor, row_sums: Tensor, first: Tensor, n: int, m: int) -> float:
    """Unbiased MMD² for the split ``first`` (a 0/1 float vector of the first set's rows), by
    one matrix-vector product: the kernel's diagonal is 1 (Gaussian), ``row_sums = K @ 1``."""
    k_first = kernel @ first
    xx = float(first @ k_first) - n
    xy = float((1 - first) @ k_first)
    yy = float(row_sums.sum()) - float(first @ k_first) - 2 * xy - m
    return xx / (n * (n - 1)) + yy / (m * (m - 1)) - 2 * xy / (n * m)


@torch.no_grad()
def two_sample_test(first: Tensor, second: Tensor, *, permutations: int = 200, seed: int = 0) -> TwoSampleResult:
    """MMD² between ``first`` ``[n, d]`` and ``second`` ``[m, d]`` (n, m >= 2) and its permutation p-value."""
    if first.dim() != 2 or second.dim() != 2 or first.shape[1] != second.shape[1]:
        raise ValueError(f"expected [n, d] and [m, d] embeddings, got {tuple(first.shape)} and {tuple(second.shape)}")
    if len(first) < 2 or len(second) < 2:
        raise ValueError("each set needs at least 2 embeddings")
    pooled = torch.cat([first, second]).float()
    distances = torch.cdist(pooled, pooled).pow(2)
    positive = distances[distances > 0]
    bandwidth = positive.median() if positive.numel() else torch.tensor(1.0)
    kernel = torch.exp(-distances / bandwidth)
    del distances
    kernel.fill_diagonal_(1.0)
    row_sums = kernel.sum(dim=1)
    n, m = len(first), len(second)
    split = torch.zeros(n + m)
    split[:n] = 1.0
    observed = _mmd2(kernel, row_sums, split, n, m)
    generator = torch.Generator().manual_seed(seed)
    at_least = 0
    for _ in range(permutations):
        shuffled = split[torch.randperm(n + m, generator=generator)]
        at_least += _mmd2(kernel, row_sums, shuffled, n, m) >= observed - 1e-9
    return TwoSampleResult(mmd2=observed, p_value=(at_least + 1) / (permutations + 1), n_first=n, n_second=m)
