"""Conversion between a model's parameters and one flat vector, and its byte encoding.

The flat layout is the order of `named_parameters()`; `ParamLayout` remembers shapes so a vector
can be turned back into tensors without a Python loop over entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ParamLayout:
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, params: Mapping[str, torch.Tensor]) -> ParamLayout:
        return cls(tuple(params), tuple(tuple(p.shape) for p in params.values()))

    @property
    def sizes(self) -> list[int]:
        return [int(np.prod(s)) if s else 1 for s in self.shapes]

    @property
    def dim(self) -> int:
        return sum(self.sizes)

    def flatten(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Concatenate parameters; a leading batch dimension (stacked members) is kept."""
        tensors = [params[n] for n in self.names]
        lead = tensors[0].shape[: tensors[0].dim() - len(self.shapes[0])]
        return torch.cat([t.reshape(*lead, -1) for t in tensors], dim=-1)

    def unflatten(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        lead = vec.shape[:-1]
        parts = torch.split(vec, self.sizes, dim=-1)
        return {n: p.reshape(*lead, *s) for n, p, s in zip(self.names, parts, self.shapes, strict=True)}


def to_bytes(vec: torch.Tensor | np.ndarray) -> bytes:
    """Little-endian float32 bytes: the canonical encoding that model hashes are taken over."""
    arr = vec.detach().cpu().numpy() if isinstance(vec, torch.Tensor) else np.asarray(vec)
    return np.ascontiguousarray(arr, dtype="<f4").tobytes()


def from_bytes(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(data, dtype="<f4").copy())
