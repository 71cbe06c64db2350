"""Deterministic randomness derived from one run seed.

Every consumer asks for a generator by a label, so adding a new consumer never shifts the
random stream of another one, and a run is reproducible under `--seed`.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def derive_seed(seed: int, *labels: object) -> int:
    """A 63-bit seed derived from the run seed and a path of labels."""
    text = "/".join([str(seed), *map(str, labels)]).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


def numpy_rng(seed: int, *labels: object) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, *labels))


def torch_generator(seed: int, *labels: object) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, *labels))
    return g
