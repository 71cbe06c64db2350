"""Softmax regression on the low frequencies of an image: a fixed, public 2-D DCT-II low-pass basis, then a
linear layer.

Why: under member-level DP the noise on the model has norm proportional to sqrt(d) and the signal does not
grow with d, so fewer trainable parameters means less noise per unit of signal. Handwritten digits are smooth
at 8x8: their k x k lowest DCT frequencies keep most of what a linear classifier uses, and the basis depends
on no data, so it costs no privacy (filtering DP noise in the spectral domain: Feng, Zhang, Huang, et al.
2022, "Spectral-DP"). The basis is a plain tensor attribute, not a parameter or a buffer: it is not trained,
not noised, not sent, and members still train together under `torch.func.vmap`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fedledger.core.errors import ConfigError


def dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II: row k is the k-th cosine basis vector of length n."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    mat = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    mat[0] /= math.sqrt(2)
    return mat


class LowpassLinear(nn.Module):
    """logits = linear(x @ basis), basis [side^2, keep^2]: the keep x keep lowest 2-D DCT frequencies."""

    def __init__(self, side: int, keep: int, num_classes: int, bias: bool = True) -> None:
        super().__init__()
        if not 1 <= keep <= side:
            raise ConfigError(f"low-pass model: keep {keep} frequencies of {side}")
        d = dct_matrix(side)[:keep]
        self.basis = torch.einsum("ui,vj->ijuv", d, d).reshape(side * side, keep * keep).float().contiguous()
        self.linear = nn.Linear(keep * keep, num_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1) @ self.basis)


def lowpass_logistic_regression(input_shape: tuple[int, ...], num_classes: int, keep: int = 5,
                                bias: bool = True) -> nn.Module:
    """Softmax regression on the keep x keep lowest DCT frequencies of a square image (digits: 5 x 5 of 8 x 8,
    d = 260 parameters instead of 650)."""
    pixels = math.prod(input_shape)
    side = math.isqrt(pixels)
    if side * side != pixels:
        raise ConfigError(f"model logreg-lowpass needs square images, not input shape {input_shape}")
    return LowpassLinear(side, min(keep, side), num_classes, bias)


def lowpass_logistic_regression_nobias(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The same without the per-class intercept (digits: d = 250). The lowest frequency, the image's mean
    intensity, stands in for it. Why drop it: member-level DP rotates an update in power-of-two blocks, so 250
    parameters travel as 256 coordinates where 260 travel as 512; secure aggregation and the update proofs cost
    half (docs/privacy.md, "Member-level recipe")."""
    return lowpass_logistic_regression(input_shape, num_classes, bias=False)
