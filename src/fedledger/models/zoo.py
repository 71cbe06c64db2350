"""The model zoo: small, CPU-friendly PyTorch models for the bundled data sets.

Any `torch.nn.Module` works with fedledger; these are the named ones the CLI offers. Models
avoid BatchNorm and dropout so that members can be trained together with `torch.func.vmap`
(stateless forward passes); a user model with buffers falls back to one member at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from fedledger.core.errors import ConfigError
from fedledger.core.plugins import load_object
from fedledger.models.spectral import lowpass_logistic_regression, lowpass_logistic_regression_nobias

ModelFactory = Callable[[tuple[int, ...], int], nn.Module]

#: What a user model factory looks like, for help texts and error messages.
FACTORY_SIGNATURE = "factory(input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module"


def _features(input_shape: tuple[int, ...]) -> int:
    return math.prod(input_shape)


def logistic_regression(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Multinomial logistic regression (softmax regression); binary tasks use two logits."""
    return nn.Sequential(nn.Flatten(), nn.Linear(_features(input_shape), num_classes))


def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: int = 128) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(_features(input_shape), hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def tabular_net(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Two hidden layers sized for tens to hundreds of tabular features."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(_features(input_shape), 64),
        nn.ReLU(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, num_classes),
    )


def small_cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Two conv blocks and a small head for 1x28x28 images (about 60k parameters)."""
    if len(input_shape) != 3 or input_shape[1:] != (28, 28):
        raise ConfigError(f"model cnn needs 28x28 images (C, 28, 28), not input shape {input_shape}")
    channels = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )


def tanh_cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The DP-SGD CNN with tanh activations (about 26k parameters) of Papernot, Thakurta, Song, Chien, Erlingsson
    2021 ("Tempered sigmoid activations for deep learning with differential privacy") and Tramer and Boneh 2021
    ("Differentially private learning needs better features (or much more data)", 86.0% on Fashion-MNIST at
    epsilon 3): conv 16x8x8 stride 2, max-pool 2 stride 1, conv 32x4x4 stride 2, max-pool 2 stride 1, fc 32, fc."""
    if len(input_shape) != 3 or input_shape[1:] != (28, 28):
        raise ConfigError(f"model tanh_cnn needs 28x28 images (C, 28, 28), not input shape {input_shape}")
    return nn.Sequential(
        nn.Conv2d(input_shape[0], 16, 8, stride=2, padding=3),
        nn.Tanh(),
        nn.MaxPool2d(2, stride=1),
        nn.Conv2d(16, 32, 4, stride=2),
        nn.Tanh(),
        nn.MaxPool2d(2, stride=1),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 32),
        nn.Tanh(),
        nn.Linear(32, num_classes),
    )


MODELS: dict[str, ModelFactory] = {
    "logreg": logistic_regression,
    "logreg-lowpass": lowpass_logistic_regression,
    "logreg-lowpass-nobias": lowpass_logistic_regression_nobias,
    "mlp": mlp,
    "tabular": tabular_net,
    "cnn": small_cnn,
    "tanh_cnn": tanh_cnn,
}


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, *, seed: int = 0) -> nn.Module:
    """A named model, or a user model factory named `path/to/file.py:factory` or `package.module:factory`.

    The factory is called as `factory(input_shape, num_classes)` (input_shape: the shape of one example, e.g.
    (64,) or (1, 28, 28); num_classes: the number of labels) and returns a torch.nn.Module mapping a batch
    [n, *input_shape] to logits [n, num_classes]. Initial weights depend only on `seed`, so every member of a
    federation starts from the same model. A factory that fails raises ConfigError (one line).
    """
    if name in MODELS:
        factory = MODELS[name]
    elif ":" in name:
        factory = load_object(name, "model factory")
    else:
        raise ConfigError(
            f"unknown model {name!r}; choose one of: {', '.join(MODELS)} (or path/to/file.py:factory, "
            "package.module:factory)"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = factory(tuple(input_shape), num_classes)
        except ConfigError:
            raise
        except Exception as e:  # user code: reported in one line, not a traceback
            raise ConfigError(
                f"model factory {name!r} failed for input_shape={tuple(input_shape)}, num_classes={num_classes}: "
                f"{type(e).__name__}: {e} (expected {FACTORY_SIGNATURE})"
            ) from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model factory {name!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model
