"""The low-pass softmax regression: a fixed orthonormal DCT basis that is neither trained nor sent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedledger.core.errors import ConfigError
from fedledger.models import build_model, get_flat
from fedledger.models.spectral import dct_matrix
from fedledger.privacy.rotation import choose_block


def test_dct_is_orthonormal_and_the_basis_keeps_the_low_frequencies() -> None:
    d = dct_matrix(8)
    assert torch.allclose(d @ d.T, torch.eye(8, dtype=torch.float64), atol=1e-12)
    model = build_model("logreg-lowpass", (64,), 10, seed=0)
    basis = model.basis
    assert basis.shape == (64, 25)
    assert torch.allclose(basis.T @ basis, torch.eye(25), atol=1e-5)
    # a smooth image (the constant) lives in the first frequency; the highest frequency is filtered out
    const = torch.ones(1, 64)
    checker = torch.outer(d[7], d[7]).reshape(1, 64).float()
    assert torch.allclose(const @ basis, torch.tensor([[8.0] + [0.0] * 24]), atol=1e-5)
    assert torch.allclose(checker @ basis, torch.zeros(1, 25), atol=1e-5)


def test_only_the_linear_layer_is_a_parameter() -> None:
    model = build_model("logreg-lowpass", (64,), 10, seed=0)
    assert get_flat(model).numel() == 25 * 10 + 10
    assert not list(model.buffers())
    before = model.basis.clone()
    torch.nn.utils.vector_to_parameters(torch.zeros(260), model.parameters())
    assert torch.equal(model.basis, before)


def test_non_square_inputs_are_refused() -> None:
    with pytest.raises(ConfigError, match="square images"):
        build_model("logreg-lowpass", (30,), 2, seed=0)
    assert np.isfinite(build_model("logreg-lowpass", (1, 8, 8), 10, seed=0)(torch.randn(2, 1, 8, 8)).detach()).all()


def test_without_intercept_the_update_fits_one_power_of_two_block() -> None:
    """The demo's model: 250 parameters travel as 256 rotated coordinates (260 would travel as 512)."""
    plain = build_model("logreg-lowpass", (64,), 10, seed=0)
    lean = build_model("logreg-lowpass-nobias", (64,), 10, seed=0)
    assert get_flat(lean).numel() == 25 * 10
    assert lean.linear.bias is None and torch.equal(lean.basis, plain.basis)
    assert choose_block(250) == 256 and choose_block(260) == 512
