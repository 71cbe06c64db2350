"""A model's trainable parameters as one vector, and back, without a loop over entries."""

from __future__ import annotations

import torch
from torch import nn

from fedledger.core.vectors import ParamLayout


def layout_of(model: nn.Module) -> ParamLayout:
    return ParamLayout.of(dict(model.named_parameters()))


def get_flat(model: nn.Module) -> torch.Tensor:
    """A detached copy of the trainable parameters as one float32 vector."""
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()


def set_flat(model: nn.Module, vec: torch.Tensor) -> None:
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(vec, model.parameters())


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
