"""Linear compression that commutes with the SecAgg+ masks: a subsampled randomized Hadamard transform (SRHT).

A member maps its update x (length d) to c = sqrt(p / k) . S . H . D . P . pad(x), k coordinates of the
randomized Hadamard rotation of x (the same `Rotation` the pipeline already uses, p its padded length), kept at
k public positions S drawn without replacement (Ailon and Chazelle 2009; Tropp 2011, "Improved analysis of the
subsampled randomized Hadamard transform"). The rotation is orthogonal and the factor sqrt(p / k) makes the
decompression R^T S^T c sqrt(p / k) an unbiased estimate of x, and E||c||^2 = ||x||^2.

Everything after it is the member-level pipeline of `distributed.py` on the k-dimensional vector c: clip c to C
(in the compressed space: the sensitivity the DP accounting uses is that of what is sent), rotate it again (so the
wrap bound of the plan holds for c as for any vector), scale, round, add the noise share, wrap, mask. The map is
public and the same for every member of a round (seeded from the task's public seed, the round index and the
round's seed on chain), and linear, so the server sums compressed vectors and decompresses the sum only:
decompress(sum of c_i) = sum of decompress(c_i). Compression to k coordinates at the same noise per coordinate
adds no DP noise in the model space (k coordinates of std s, scaled by sqrt(p / k) on the way back, have the
norm of p coordinates of std s) and only the sketch's own variance (p / k - 1) ||sum||^2 on the signal, which is
small against the noise that member-level DP adds (Chen, Choquette-Choo, Kairouz, Suresh 2022, "The
fundamental price of secure aggregation in differentially private federated learning").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from fedledger.core.config import parse_compress
from fedledger.core.errors import ConfigError
from fedledger.core.hashing import Usage, domain_hash
from fedledger.privacy.rotation import Rotation, choose_block

#: `--bits auto`: the smallest width whose plan has rounding inflate the L2 sensitivity by at most this
#: fraction (the noise, sized to the sensitivity, then grows by at most as much against exact arithmetic)
AUTO_BITS_SLACK = 0.05

def sketch_shape(d: int, ratio: float) -> tuple[int, int]:
    """(rows, block): the coordinates kept for a model of d parameters compressed by `ratio` (of the rotation's
    padded length p), rounded up to a whole number of blocks of the rotation that follows, so that rotation pads
    nothing and every coordinate sent carries signal (blocks down to 64: a small block only widens the wrap bound,
    i.e. may need a bit more; `--bits auto` finds out)."""
    blk0 = choose_block(d)
    padded = math.ceil(d / blk0) * blk0
    target = max(1, math.ceil(padded / ratio))
    blk = choose_block(target, min_block=64)
    return min(padded, math.ceil(target / blk) * blk), blk


def sketch_rows(d: int, ratio: float) -> int:
    return sketch_shape(d, ratio)[0]


@dataclass(frozen=True)
class SketchMap:
    """The public SRHT of one round. `compress`: [n, d] -> [n, rows]; then, like `Rotation`, `forward` rotates a
    (clipped) compressed vector to [n, padded] and `inverse` maps a rotated vector back to the model: [n, padded]
    -> [n, d] (un-rotate, place at the kept positions, scale, un-rotate the model rotation)."""

    d: int
    rows: int
    seed: bytes
    block: int  # of the rotation after compression (the plan's block)

    compresses = True

    @classmethod
    def for_round(cls, d: int, rows: int, block: int, public_seed: bytes, round_index: int,
                  round_seed: bytes = b"") -> SketchMap:
        seed = domain_hash(Usage.DP_ROTATION, b"srht", public_seed, round_index.to_bytes(8, "big"), round_seed,
                           str(d).encode(), str(rows).encode())
        return cls(d=d, rows=rows, seed=seed, block=block)

    @cached_property
    def inner(self) -> Rotation:
        return Rotation(d=self.d, block=choose_block(self.d), seed=domain_hash(Usage.DP_ROTATION, b"inner", self.seed))

    @cached_property
    def outer(self) -> Rotation:
        return Rotation(d=self.rows, block=self.block, seed=domain_hash(Usage.DP_ROTATION, b"outer", self.seed))

    @cached_property
    def kept(self) -> torch.Tensor:
        """The k kept positions among the inner rotation's padded coordinates (public, sorted)."""
        g = np.random.Generator(np.random.PCG64(list(domain_hash(Usage.DP_ROTATION, b"kept", self.seed))))
        return torch.from_numpy(np.sort(g.choice(self.inner.padded, size=self.rows, replace=False)))

    @property
    def padded(self) -> int:
        return self.outer.padded

    @property
    def factor(self) -> float:
        return math.sqrt(self.inner.padded / self.rows)

    def compress(self, x: torch.Tensor) -> torch.Tensor:
        """[n, d] -> [n, rows] (float64): sqrt(p / k) S R x."""
        return self.inner.forward(x)[:, self.kept] * self.factor

    def decompress(self, c: torch.Tensor) -> torch.Tensor:
        """[n, rows] -> [n, d]: sqrt(p / k) R^T S^T c, an unbiased estimate of x for c = compress(x)."""
        c = c.to(torch.float64)
        z = torch.zeros(c.shape[0], self.inner.padded, dtype=torch.float64)
        z[:, self.kept] = c * self.factor
        return self.inner.inverse(z)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.outer.forward(c)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self.decompress(self.outer.inverse(y))


def round_map(plan: Any, public_seed: bytes, round_index: int, round_seed: bytes = b"") -> Rotation | SketchMap:
    """The public linear map of a round for `plan`: the plain rotation, or the SRHT when the plan compresses.
    Without compression `round_seed` is not used (the rotation depends on the task's seed and the round only)."""
    rows = getattr(plan, "sketch_rows", 0)
    if rows:
        return SketchMap.for_round(plan.d, rows, plan.block, public_seed, round_index, round_seed)
    return Rotation.for_round(plan.d, public_seed, round_index, plan.block)


def auto_bits(plan_fn: Any, **kwargs: Any) -> Any:
    """The plan at the fewest bits (8..32) that hold the sum of n members plus noise and keep rounding's
    inflation of the sensitivity within `AUTO_BITS_SLACK` (`plan_fn` is `plan_distributed_dp`)."""
    last: Exception | None = None
    for bits in range(8, 33):
        try:
            plan = plan_fn(bits=bits, **kwargs)
        except ConfigError as e:
            last = e
            continue
        if plan.rounding_bound <= (1 + AUTO_BITS_SLACK) * plan.int_norm or bits == 32:
            return plan
    raise ConfigError(f"no width up to 32 bits holds this sum: {last}")


__all__ = ["SketchMap", "auto_bits", "float32_bytes", "parse_compress", "round_map", "sketch_rows", "sketch_shape",
           "traffic_report"]


def float32_bytes(d: int) -> int:
    return 4 * d


def traffic_report(rounds: list[tuple[int, int]], d: int, plan: Any = None) -> dict[str, Any]:
    """results.json `traffic`: bytes a member sent per round (the round's measured bytes_up over its
    participants) against float32 (4 d bytes), and what the plan put on the wire per coordinate."""
    per = [up / n for up, n in rounds if n]
    mean = sum(per) / len(per) if per else 0.0
    f32 = float32_bytes(d)
    out: dict[str, Any] = {
        "bytes_up_per_member_per_round": [round(x) for x in per],
        "bytes_up_per_member_mean": round(mean, 1),
        "float32_bytes": f32,
        "reduction_vs_float32": 1 - mean / f32 if per else None,
    }
    if plan is not None:
        out |= {"bits": plan.bits, "coordinates_sent": plan.length, "model_parameters": d,
                "sketch_rows": plan.sketch_rows,  # 0: no compression
                # model parameters per coordinate kept (rows are rounded up to whole rotation blocks)
                "effective_ratio": d / plan.sketch_rows if plan.sketch_rows else 1.0}
    return out
