"""Record-level DP through secure aggregation, and secure aggregation without DP (issue 17, item 2).

**Record level, cross silo** (`--dp record --secagg`). Each member takes one DP-SGD step per secure sum: it
samples its own batch (Poisson, rate q, a secret only it knows), clips every per-example gradient to C, sums
them, and feeds that sum through the member-level encoding (rotation from a public seed, scale, stochastic
rounding, wrap modulo 2^b) with only its *share* of the noise: a discrete Gaussian N_Z(0, s^2) per coordinate
with s^2 sized so that the sum of `min_survivors` shares carries the full DP-SGD noise. The aggregator sees only
the sum, which is one DP-SGD step on the union of the members' records: the sum of the clipped gradients of a
Poisson sample of every record at rate q, plus noise of variance k s^2 >= m s^2 (k survivors). It divides by
the expected batch q * sum(n_i) of the survivors (public: the record counts are committed on chain) and steps.

Why one step per sum: if a member took several local steps with only its noise share, its intermediate model
(and so its later gradients) would depend on its records through far less noise than the accounting assumes,
and the one sum released could not be analysed as DP-SGD steps. Each secure sum is therefore exactly one
noisy step (DP-FedSGD); a round runs `steps_per_round` of them, as many as central DP-SGD takes in the same
epochs, so federated and central DP-SGD have the same sample rate, steps and noise multiplier.

Privacy of one step, for one record of member i (add/remove):
* the per-example clip bounds the change of the member's batch sum by C; clipping that sum at K = cap * C (so
  the encoding and the proofs have a fixed bound) is a projection onto a ball, which cannot increase the change;
  the rotation is orthogonal; so the scaled vector moves by at most G = C * scale in L2;
* stochastic rounding round(x) = floor(x + u) with the member's secret uniform u moves each coordinate by less
  than the difference plus one, so for a fixed u the integer vector moves by at most Delta = G + sqrt(D) (D the
  padded length; KLS21's first bound). The conditional-rounding bound of the encoding is set to the largest
  norm any rounding can reach (int_norm + sqrt(D)), so it never redraws: u does not depend on the data, and the
  mechanism is a mixture over u of mechanisms of sensitivity Delta (Renyi divergence is jointly quasi-convex,
  van Erven and Harremoes 2014, so the bound for each u holds for the mixture);
* the sum of m independent N_Z(0, s^2) shares is treated as the continuous Gaussian of variance m s^2, as the
  member-level pipeline does when it claims amplification (KLS21 show the difference is the tau term, recorded
  in the plan); z = sqrt(m s^2) / Delta; each step is a `PoissonSampledDpEvent(q, GaussianDpEvent(z))`
  (Mironov, Talwar, Zhang 2019), composed over the steps in dp-accounting's RDP accountant. Amplification by
  subsampling over records is claimed: each member samples its own batch in secret.

Tolerance (as for member-level DP): the noise is sized for m = `min_survivors` of the n members (the cohort
less a margin over the expected dropouts). The guarantee against the aggregator holds while at least m members
whose noise shares are secret survive: up to n - m members may drop out, or collude with the aggregator and
subtract their own shares, and any combination of the two up to n - m. With fewer than m survivors the round is
not released (`InsufficientSurvivors`). SecAgg+ itself keeps every individual input hidden while no more than
its threshold of a member's neighbours collude (docs/secagg.md).

**No DP** (`--secagg` alone, as Flower's SecAgg+ mod offers): each member clips its whole update to C (the
bound the update proof enforces), rotates, scales, rounds and wraps it, with no noise; the aggregator learns
only the sum, which it divides by the survivors. `plain_secagg_plan` chooses the largest scale for which the
sum of n members cannot wrap. Nothing is accounted (there is no DP).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from fedledger.core.errors import ConfigError
from fedledger.privacy import accounting
from fedledger.privacy.discrete_gaussian import MAX_VARIANCE
from fedledger.privacy.distributed import WRAP_TAIL, DdpPlan
from fedledger.privacy.rotation import choose_block

#: cap on the batch sum, in per-example clips above the expected batch of the largest member: a Poisson
#: batch passes expected + 6 standard deviations with probability below 1e-9 (clipping it there is still private)
BATCH_TAIL_SIGMAS = 6.0
#: largest integer scale without DP: rounding error sqrt(D) / G is negligible long before this, and entries
#: stay narrow enough for the update proof's range checks
PLAIN_MAX_SCALE = 2.0**20


@dataclass(frozen=True, kw_only=True)
class RecordPlan(DdpPlan):
    """A `DdpPlan` for record-level DP-SGD steps through SecAgg+.

    Reused fields, in record units: `int_norm` is the integer norm bound of a member's clipped batch sum
    (K * scale), `l2_sensitivity` the per-record bound Delta = C * scale + sqrt(padded), `rounds` the planned
    secure sums (DP-SGD steps), `sample_rate` the Poisson rate q, `secret_sampling` True (each member samples
    its own records), `noise_multiplier` the z that central DP-SGD would need, and `noise_multiplier_actual`
    (inherited) the z the shares give m survivors."""

    record_clip: float  # C, per example
    batch_clip: float  # K = cap * C, on a member's batch sum
    steps_per_round: int

    @property
    def rounding_bound(self) -> float:
        # any stochastic rounding of a vector of norm <= int_norm stays within int_norm + sqrt(padded): the
        # conditional rounding of `encode_members` therefore never redraws (see the module docstring)
        return self.int_norm + math.sqrt(self.padded)

    @property
    def scale(self) -> float:
        return self.int_norm / self.batch_clip

    def describe(self) -> dict[str, Any]:
        """What results.json says about the distributed noise and what it tolerates."""
        return {
            "mechanism": "DP-SGD steps through SecAgg+: per-example clipping, each member's noise share a discrete "
                         "Gaussian (Canonne, Kamath, Steinke 2020) sized for the minimum survivors",
            "noise_multiplier": self.noise_multiplier_actual,
            "noise_multiplier_central": self.noise_multiplier,
            "member_noise_variance": self.member_variance,
            "record_clip": self.record_clip,
            "batch_clip": self.batch_clip,
            "scale": self.scale,
            "l2_sensitivity_integer": self.l2_sensitivity,
            "sample_rate": self.sample_rate,
            "steps_per_round": self.steps_per_round,
            "steps_planned": self.rounds,
            "epsilon_at_planned_steps": self.epsilon_total,
            "tau": self.tau,
            "cohort": self.n,
            "min_survivors": self.min_survivors,
            "tolerates": f"up to {self.n - self.min_survivors} of {self.n} members dropping out or colluding with "
                         "the aggregator (they know their own noise shares); fewer survivors: no release",
            "bits": self.bits,
        }


@dataclass(frozen=True)
class PlainSecAggPlan(DdpPlan):
    """A `DdpPlan` with no noise: secure aggregation of clipped, quantized updates without DP."""

    def epsilon_after(self, rounds: int) -> float:
        return math.inf  # no DP: nothing bounds what the sum reveals about a record or a member

    def describe(self) -> dict[str, Any]:
        return {"mechanism": "SecAgg+ of clipped, rotated, quantized updates (no DP, no noise)",
                "scale_integer": self.int_norm,
                "cohort": self.n, "min_survivors": self.min_survivors, "bits": self.bits}


def _geometry(d: int, block: int | None) -> tuple[int, int, float]:
    blk = block or choose_block(d)
    padded = math.ceil(d / blk) * blk
    conc = math.sqrt(2 * math.log(2 / WRAP_TAIL) / blk)  # per-coordinate bound after rotation (distributed.py)
    return blk, padded, conc


def _largest(fits: Any, hi_cap: float) -> float:
    """The largest g in [1, hi_cap] with fits(g) (fits is monotone), to 0.1%."""
    lo, hi = 1.0, 2.0
    while hi < hi_cap and fits(hi):
        lo, hi = hi, hi * 2
    if hi >= hi_cap and fits(hi_cap):
        return hi_cap
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        if hi / lo < 1.001:
            break
    return lo


def batch_cap(max_records: int, sample_rate: float) -> int:
    """Per-example clips a member's batch sum is clipped to: its expected batch plus BATCH_TAIL_SIGMAS deviations."""
    mean = sample_rate * max_records
    return max(1, math.ceil(mean + BATCH_TAIL_SIGMAS * math.sqrt(mean) + 1))


def plan_record_secagg(*, epsilon: float, delta: float, steps_per_round: int, rounds: int, sample_rate: float,
                       d: int, n: int, min_survivors: int, max_records: int, clip_norm: float, bits: int = 32,
                       extra: int = 0, block: int | None = None) -> RecordPlan:
    """Noise shares and scale for `rounds * steps_per_round` DP-SGD steps at (epsilon, delta) through SecAgg+.

    z is the noise multiplier central DP-SGD needs for the same steps and rate (`calibrate_noise`); each member's
    share has variance s^2 = ceil((z Delta)^2 / m), Delta = G + sqrt(D) (module docstring). The per-record scale G
    is the largest for which the shares stay in the exact sampler's range and the sum of n batch sums (each at
    most cap * G in norm) plus the noise cannot wrap modulo 2^bits."""
    if not 8 <= bits <= 32:
        raise ConfigError(f"bits must be in 8..32, got {bits}")
    if not 1 <= min_survivors <= n:
        raise ConfigError(f"minimum survivors must be in 1..{n}")
    if not 0 < sample_rate <= 1 or steps_per_round < 1 or clip_norm <= 0:
        raise ConfigError("need 0 < sample rate <= 1, at least one step a round and a positive clip norm")
    steps = steps_per_round * rounds
    z = accounting.calibrate_noise(epsilon, delta, sample_rate, steps)
    blk, padded, conc = _geometry(d, block)
    cap = batch_cap(max_records, sample_rate)
    half = 2.0 ** (bits - 1)
    tail = math.sqrt(2 * math.log(2 / WRAP_TAIL))

    def variance(g: float) -> int:
        return max(1, math.ceil((z * (g + math.sqrt(padded))) ** 2 / min_survivors))

    def fits(g: float) -> bool:
        var = variance(g)
        return var <= MAX_VARIANCE and n * (cap * g * conc + 1) + tail * math.sqrt(n * var) < half

    if not fits(1.0):
        raise ConfigError(f"{bits} bits cannot hold the sum of {n} members' noisy batch gradients; use more bits")
    g = _largest(fits, 2.0**40)
    var = variance(g)
    l2 = g + math.sqrt(padded)
    plan = RecordPlan(
        d=d, padded=padded, block=blk, bits=bits, n=n, min_survivors=min_survivors, rounds=steps,
        epsilon_target=epsilon, delta=delta, adaptive=False, extra=extra, noise_multiplier=z, int_norm=cap * g,
        l2_sensitivity=l2, l1_sensitivity=math.sqrt(padded) * l2, bit_scale=0, member_variance=var,
        rho_per_round=0.0, tau=accounting.ddg_tau(var, min_survivors), epsilon_total=0.0, sample_rate=sample_rate,
        secret_sampling=True, record_clip=float(clip_norm), batch_clip=float(cap * clip_norm),
        steps_per_round=steps_per_round,
    )
    object.__setattr__(plan, "epsilon_total", plan.epsilon_after(steps))
    return plan


def plain_secagg_plan(*, d: int, n: int, min_survivors: int = 1, bits: int = 32, extra: int = 0,
                      block: int | None = None) -> PlainSecAggPlan:
    """Scale for summing n clipped updates without noise: the largest for which the sum cannot wrap mod 2^bits."""
    if not 8 <= bits <= 32:
        raise ConfigError(f"bits must be in 8..32, got {bits}")
    blk, padded, conc = _geometry(d, block)
    half = 2.0 ** (bits - 1)

    def fits(g: float) -> bool:
        return n * (g * conc + 1) < half

    if not fits(1.0):
        raise ConfigError(f"{bits} bits cannot hold the sum of {n} members; use more bits")
    g = _largest(fits, PLAIN_MAX_SCALE)
    return PlainSecAggPlan(
        d=d, padded=padded, block=blk, bits=bits, n=n, min_survivors=min_survivors, rounds=2**62,
        epsilon_target=math.inf, delta=0.0, adaptive=False, extra=extra, noise_multiplier=0.0, int_norm=g,
        l2_sensitivity=0.0, l1_sensitivity=0.0, bit_scale=0, member_variance=0, rho_per_round=0.0, tau=0.0,
        epsilon_total=math.inf, sample_rate=1.0, secret_sampling=False,
    )


def record_schedule(counts: Sequence[int], batch_size: int, members_per_round: int, epochs: float) -> tuple[float, int]:
    """(q, steps per round): the sample rate and steps of central DP-SGD on the pooled records with batch
    `batch_size * members_per_round` (`privacy.baseline.central_dpsgd`), so both take the same noisy steps."""
    from fedledger.privacy.dpsgd import dpsgd_schedule

    return dpsgd_schedule(int(sum(counts)), batch_size * max(1, members_per_round), epochs)


def clipped_batch_sums(model: nn.Module, flat: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                       offsets: np.ndarray, counts: np.ndarray, sample_rate: float, clip_norm: float,
                       generators: Sequence[torch.Generator], *, chunk: int = 512,
                       loss_fn: Any = None) -> tuple[torch.Tensor, np.ndarray]:
    """Each member's DP-SGD step before noise: Poisson-sample its rows (rate q, its own secret generator), clip
    every per-example gradient at `flat` to `clip_norm`, sum. Returns ([members, d] sums, batch sizes).

    Vectorized over all members' sampled examples at once (torch.func per-sample gradients)."""
    from fedledger.models import set_flat

    criterion = loss_fn or nn.functional.cross_entropy
    rows, owner = [], []
    for j, (lo, n, gen) in enumerate(zip(offsets, counts, generators, strict=True)):
        picked = torch.nonzero(torch.rand(int(n), generator=gen) < sample_rate).flatten() + int(lo)
        rows.append(picked)
        owner.append(torch.full((len(picked),), j, dtype=torch.long))
    idx = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)
    who = torch.cat(owner) if owner else torch.zeros(0, dtype=torch.long)
    sizes = np.array([len(r) for r in rows], dtype=np.int64)
    d = int(flat.numel())
    sums = torch.zeros(len(counts), d, dtype=torch.float32)
    work = model
    set_flat(work, flat)
    names = [k for k, _ in work.named_parameters()]
    params = {k: v.detach() for k, v in work.named_parameters()}
    buffers = {k: v.detach() for k, v in work.named_buffers()}

    def loss_one(p: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        out = functional_call(work, (p, buffers), (xb.unsqueeze(0),))
        return criterion(out, yb.unsqueeze(0))

    per_example = vmap(grad(loss_one), in_dims=(None, 0, 0))
    for start in range(0, len(idx), chunk):
        part = idx[start : start + chunk]
        g = per_example(params, X[part], y[part])
        flat_g = torch.cat([g[k].reshape(len(part), -1) for k in names], dim=1)
        norms = flat_g.norm(dim=1, keepdim=True)
        flat_g = flat_g * torch.clamp(clip_norm / norms.clamp_min(1e-12), max=1.0)
        sums.index_add_(0, who[start : start + chunk], flat_g)
    return sums, sizes
