"""A small transformer classifier built from torch.nn layers (no download), for `--model file.py:factory`.

An example is read as a sequence of tokens: a digits image (64 pixels) as its 8 rows of 8 pixels, an image
[C, H, W] as its H rows of C*W values, any other vector as sqrt(n) tokens. Each token is embedded, a learned
position is added, two pre-norm encoder layers (4 heads, no dropout) mix the tokens, and the mean token is
classified. No buffers (LayerNorm only), so fedledger trains all members at once with torch.func.vmap.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class TinyTransformer(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, d_model: int = 32, heads: int = 4,
                 layers: int = 2, feedforward: int = 64) -> None:
        super().__init__()
        if len(input_shape) == 3:
            self.tokens, self.features = input_shape[1], input_shape[0] * input_shape[2]
        else:
            n = math.prod(input_shape)
            self.tokens = max(1, math.isqrt(n))
            while n % self.tokens:
                self.tokens -= 1
            self.features = n // self.tokens
        self.embed = nn.Linear(self.features, d_model)
        self.position = nn.Parameter(0.02 * torch.randn(1, self.tokens, d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=feedforward, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == self.features and x.dim() == 3:  # already [batch, tokens, features]
            tokens = x
        else:
            tokens = x.reshape(x.shape[0], self.tokens, self.features)
        h = self.encoder(self.embed(tokens) + self.position)
        return self.head(self.norm(h.mean(dim=1)))


def build(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The factory fedledger calls: `build(input_shape, num_classes)`."""
    return TinyTransformer(input_shape, num_classes)
