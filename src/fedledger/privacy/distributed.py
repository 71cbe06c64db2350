"""Member-level distributed DP: clip -> rotate -> scale and round -> discrete Gaussian share ->
wrap mod 2**b -> SecAgg+ -> decode the sum only.

`plan_distributed_dp` chooses every parameter for a target (epsilon, delta, rounds, cohort,
minimum survivors, bits) and `DistributedDP` runs the pipeline on a stacked [n, d] float tensor
of member updates, vectorized over members. The per-member encode step (`encode_members`) and the
server decode step (`decode_sum`) are separate functions, and `MemberEncoding` exposes the
intermediate integer vectors (after clipping, rotation, scaling and rounding, before noise; the
noise share; the wrapped vector) for the zero-knowledge layer.

Vector layout sent through secure aggregation (all coordinates modulo 2**b):
    [0, padded)                    the rotated, scaled, rounded update
    padded (only if adaptive)      the clip bit: bit_scale if ||update|| <= C else 0
    then `extra` coordinates       reserved (zeros from this layer), e.g. for a zk blinding value
                                   split into limbs (see `limbs_encode`)
The noise share covers the update and clip-bit coordinates, not the extra ones.

Adaptive clipping follows Andrew et al. 2021 ("Differentially private learning with adaptive
clipping"): each member contributes the bit [||update|| <= C] (the *unclipped* indicator); the
server sees only the noisy sum, forms the unclipped fraction b and moves C <- C exp(-eta (b - q)),
so C shrinks when more than a fraction q of members are unclipped and grows otherwise. The clip
bit is part of the same noised vector, so its privacy cost is inside the joint sensitivity.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from fedledger.core.errors import ConfigError, FedLedgerError
from fedledger.core.hashing import Usage, domain_hash
from fedledger.core.rng import CryptoRng, Entropy, Purpose, SystemEntropy
from fedledger.privacy import accounting
from fedledger.privacy.compress import SketchMap, auto_bits, parse_compress, round_map, sketch_shape
from fedledger.privacy.discrete_gaussian import MAX_VARIANCE, sample_discrete_gaussian
from fedledger.privacy.rotation import Rotation, choose_block
from fedledger.secagg.context import SessionContext
from fedledger.secagg.driver import run_round
from fedledger.secagg.graph import SecAggParams
from fedledger.secagg.keys import Identity, PublicIdentity
from fedledger.secagg.messages import Kind
from fedledger.secagg.packing import packed_size

ROUNDING_BETA = math.exp(-0.5)  # KLS21's conditional-rounding failure parameter
WRAP_TAIL = 2.0**-40  # chance per coordinate that the wrap bound fails
ANDREW_LR = 0.2  # geometric learning rate eta_C (Andrew et al. 2021)
ANDREW_COUNT_NOISE = 20.0  # count noise std = n / 20 (Andrew et al. 2021 recommendation)


class InsufficientSurvivors(FedLedgerError, RuntimeError):
    """Fewer members survived than the noise was sized for: releasing the sum would break the DP guarantee."""

    exit_code = 7


@dataclass(frozen=True)
class DdpPlan:
    """Every parameter of the distributed discrete Gaussian pipeline, and what it costs."""

    d: int
    padded: int
    block: int
    bits: int
    n: int
    min_survivors: int
    rounds: int
    epsilon_target: float
    delta: float
    adaptive: bool
    extra: int
    noise_multiplier: float  # of the equivalent continuous Gaussian per round (std / L2 sensitivity)
    int_norm: float  # L2 norm of a clipped update in integer units (= C * scale)
    l2_sensitivity: float  # after conditional rounding, including the clip bit
    l1_sensitivity: float
    bit_scale: int  # integer value of the clip bit (0 when not adaptive)
    member_variance: int  # variance of each member's discrete Gaussian share
    rho_per_round: float
    tau: float
    epsilon_total: float  # at `rounds` rounds, at `delta`
    sample_rate: float  # 1.0 unless sampling is secret
    secret_sampling: bool
    sketch_rows: int = 0  # SRHT compression (privacy/compress.py): coordinates kept of the model's d; 0: none

    @property
    def length(self) -> int:
        """Coordinates per secure-aggregation vector."""
        return self.padded + (1 if self.adaptive else 0) + self.extra

    @property
    def rounding_bound(self) -> float:
        """Conditional rounding accepts a rounded update only if its norm is at most this (KLS21)."""
        return _rounding_bound(self.int_norm, self.padded)

    def epsilon_after(self, rounds: int) -> float:
        if rounds <= 0:
            return 0.0
        if self.secret_sampling:
            return accounting.gaussian_rounds_epsilon(self.noise_multiplier_actual, rounds, self.delta,
                                                      self.sample_rate)
        return accounting.zcdp_epsilon(self.rho_per_round, rounds, self.delta)

    @property
    def noise_multiplier_actual(self) -> float:
        return math.sqrt(self.min_survivors * self.member_variance) / self.l2_sensitivity

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"length": self.length}


def _rounding_bound(int_norm: float, dim: int) -> float:
    a = (int_norm + math.sqrt(dim)) ** 2
    b = int_norm**2 + dim / 4 + math.sqrt(2 * math.log(1 / ROUNDING_BETA)) * (int_norm + math.sqrt(dim) / 2)
    return math.sqrt(min(a, b))


def _sensitivities(int_norm: float, padded: int, bit_scale: int) -> tuple[float, float]:
    l2u = _rounding_bound(int_norm, padded)
    l1u = min(l2u**2, math.sqrt(padded) * l2u)
    return math.sqrt(l2u**2 + bit_scale**2), l1u + bit_scale


def plan_distributed_dp(
    *,
    epsilon: float,
    delta: float,
    rounds: int,
    d: int,
    n: int,
    min_survivors: int | None = None,
    bits: int = 32,
    adaptive: bool = False,
    secret_sampling: bool = False,
    sample_rate: float = 1.0,
    extra: int = 0,
    block: int | None = None,
    compress: float | None = None,
) -> DdpPlan:
    """Choose noise, scale and sensitivities for `rounds` rounds at (epsilon, delta).

    The noise is sized for `min_survivors` (default: n) members; the scale is the largest for
    which the sum of n members can never wrap modulo 2**bits (with the rotation's concentration
    bound), capped so each member's variance stays within the exact sampler's range. `compress` (a ratio > 1):
    the update is compressed to `sketch_rows(d, compress)` coordinates first (privacy/compress.py) and every
    figure (padding, sensitivity, wrap bound) is about the compressed vector, which is clipped to C itself.
    """
    if not 8 <= bits <= 32:
        raise ConfigError(f"bits must be in 8..32, got {bits}")
    m = n if min_survivors is None else min_survivors
    if not 1 <= m <= n:
        raise ConfigError(f"minimum survivors must be in 1..{n}")
    if secret_sampling and not 0 < sample_rate < 1:
        raise ConfigError("secret sampling needs the sampling rate (0 < rate < 1)")
    q = sample_rate if secret_sampling else 1.0
    z = accounting.calibrate_rounds(epsilon, delta, rounds, q)
    rows, sketch_block = sketch_shape(d, compress) if compress else (0, 0)
    blk = block or sketch_block or choose_block(d)
    padded = math.ceil((rows or d) / blk) * blk
    # coordinate concentration after rotation: |y_j| <= ||x_block|| * sqrt(2 ln(2 / tail) / B) with
    # ||x_block|| <= ||x||: holds whatever the update looks like (even all its mass in one block)
    conc = math.sqrt(2 * math.log(2 / WRAP_TAIL) / blk)
    half = 2.0 ** (bits - 1)

    def build(g: float) -> tuple[float, float, int, int]:
        # bit scale: count noise std about n/20 (Andrew et al.), solved jointly with the total noise
        l2u, _ = _sensitivities(g, padded, 0)
        if adaptive:
            kappa = min(ANDREW_COUNT_NOISE, n / (math.sqrt(2) * z))
            sig_tot = z * l2u / math.sqrt(1 - (z * kappa / n) ** 2)
            bscale = max(1, math.ceil(kappa * sig_tot / n))
        else:
            bscale = 0
        l2, l1 = _sensitivities(g, padded, bscale)
        var = max(1, math.ceil((z * l2) ** 2 / m))
        # make sure the exact KLS21 bound (with tau) meets the target; bump the variance if not
        rho_target = 1 / (2 * z * z)
        for _ in range(60):
            rho, _ = accounting.ddg_rho(l2, l1, var, m)
            if rho <= rho_target * (1 + 1e-9):
                break
            var = math.ceil(var * 1.01) + 1
        return l2, l1, bscale, var

    def fits(g: float) -> bool:
        _, _, bscale, var = build(g)
        if var > MAX_VARIANCE:
            return False
        tail_k = math.sqrt(2 * math.log(2 / WRAP_TAIL))
        noise = tail_k * math.sqrt(n * var)
        coord = n * (g * conc + 1) + noise
        bitc = n * bscale + noise
        return max(coord, bitc) < half

    if not fits(1.0):
        raise ConfigError(
            f"{bits} bits cannot hold the sum of {n} members at this noise level; use more bits "
            f"(the pipeline needs about log2(n * noise) + a few bits)"
        )
    lo, hi = 1.0, 2.0
    while fits(hi) and hi < 2.0**40:
        lo, hi = hi, hi * 2
    for _ in range(50):
        mid = math.sqrt(lo * hi)
        if fits(mid):
            lo = mid
        else:
            hi = mid
        if hi / lo < 1.001:
            break
    g = lo
    l2, l1, bscale, var = build(g)
    rho, tau = accounting.ddg_rho(l2, l1, var, m)
    plan = DdpPlan(
        d=d, padded=padded, block=blk, bits=bits, n=n, min_survivors=m, rounds=rounds, epsilon_target=epsilon,
        delta=delta, adaptive=adaptive, extra=extra, noise_multiplier=z, int_norm=g, l2_sensitivity=l2,
        l1_sensitivity=l1, bit_scale=bscale, member_variance=var, rho_per_round=rho, tau=tau,
        epsilon_total=0.0, sample_rate=q, secret_sampling=secret_sampling, sketch_rows=rows,
    )
    eps = plan.epsilon_after(rounds)
    object.__setattr__(plan, "epsilon_total", eps)
    return plan


@dataclass(frozen=True)
class MemberEncoding:
    """Per-member intermediate values (rows are members) for audit and zero-knowledge proofs.

    clipped: the clipped update (float64 [n, d]; with compression the clipped compressed vector, [n, rows]);
    unclipped: the clip bit (bool [n]);
    rotated: clipped, rotated and scaled (float64 [n, padded]); values: the integer vector before
    noise, update then clip bit then extra zeros (int64 [n, length]); noise: each member's
    discrete Gaussian share (int64 [n, length], zero on extra coordinates); wrapped: values +
    noise mod 2**bits (uint32 [n, length]), the secure-aggregation input.
    """

    clipped: np.ndarray
    unclipped: np.ndarray
    rotated: np.ndarray
    values: np.ndarray
    noise: np.ndarray
    wrapped: np.ndarray
    clip_norm: float
    scale: float


def encode_members(
    plan: DdpPlan, deltas: torch.Tensor | np.ndarray, clip_norm: float, rotation: Rotation | SketchMap, rng: CryptoRng
) -> MemberEncoding:
    """Clip, rotate, scale, conditionally round, add the noise share, wrap: all members at once."""
    x = torch.as_tensor(np.asarray(deltas) if not isinstance(deltas, torch.Tensor) else deltas)
    x = x.detach().to(torch.float64)
    if x.ndim != 2 or x.shape[1] != plan.d:
        raise ValueError(f"deltas must be [n, {plan.d}], got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("deltas contain NaN or infinity")
    if isinstance(rotation, SketchMap):  # SRHT: clip, rotate and round the compressed vector (compress.py)
        x = rotation.compress(x)
    n = x.shape[0]
    norms = x.norm(dim=1)
    unclipped = norms <= clip_norm
    factor = torch.clamp(clip_norm / torch.clamp(norms, min=1e-300), max=1.0)
    clipped = x * factor[:, None]
    scale = plan.int_norm / clip_norm
    rotated = (rotation.forward(clipped) * scale).numpy()
    # conditional stochastic rounding (KLS21): redraw the rows whose rounded norm is too large
    floor = np.floor(rotated)
    frac = rotated - floor
    ints = np.empty(rotated.shape, dtype=np.int64)
    todo = np.arange(n)
    bound = plan.rounding_bound
    for _ in range(1000):
        if not todo.size:
            break
        u = rng.uniform(todo.size * plan.padded).reshape(todo.size, plan.padded)
        r = floor[todo] + (u < frac[todo])
        ok = np.sqrt((r * r).sum(axis=1)) <= bound
        ints[todo[ok]] = r[ok].astype(np.int64)
        todo = todo[~ok]
    if todo.size:
        raise FedLedgerError("conditional rounding did not succeed (update not clipped?)")
    values = np.zeros((n, plan.length), dtype=np.int64)
    values[:, : plan.padded] = ints
    noised = plan.padded + (1 if plan.adaptive else 0)
    if plan.adaptive:
        values[:, plan.padded] = unclipped.numpy().astype(np.int64) * plan.bit_scale
    noise = np.zeros_like(values)
    if plan.member_variance:  # zero: secure aggregation without DP (privacy/record_secagg.py)
        noise[:, :noised] = sample_discrete_gaussian(plan.member_variance, n * noised, rng).reshape(n, noised)
    mod = 1 << plan.bits
    wrapped = np.mod(values + noise, mod).astype(np.uint32)
    return MemberEncoding(
        clipped=clipped.numpy(), unclipped=unclipped.numpy(), rotated=rotated, values=values, noise=noise,
        wrapped=wrapped, clip_norm=float(clip_norm), scale=float(scale),
    )


@dataclass(frozen=True)
class DecodedSum:
    total: torch.Tensor  # estimate of the sum of the survivors' clipped updates, float32 [d]
    unclipped_count: float | None  # noisy number of survivors whose update was not clipped
    extra: np.ndarray  # the summed extra coordinates, modulo 2**bits (uint32)


def decode_sum(plan: DdpPlan, total: np.ndarray, clip_norm: float, rotation: Rotation | SketchMap) -> DecodedSum:
    """Server side: centre the modular sum, undo scale and rotation; read the clip-bit count."""
    t = np.asarray(total, dtype=np.int64).reshape(-1)
    if t.shape != (plan.length,):
        raise ValueError(f"sum must have length {plan.length}")
    half, mod = 1 << (plan.bits - 1), 1 << plan.bits
    signed = np.where(t >= half, t - mod, t)
    upd = torch.from_numpy(signed[: plan.padded].astype(np.float64))[None, :] / (plan.int_norm / clip_norm)
    est = rotation.inverse(upd)[0].to(torch.float32)
    count = float(signed[plan.padded]) / plan.bit_scale if plan.adaptive else None
    start = plan.padded + (1 if plan.adaptive else 0)
    return DecodedSum(total=est, unclipped_count=count, extra=t[start:].astype(np.uint32))


def adaptive_clip_update(clip_norm: float, unclipped_fraction: float, target_quantile: float,
                         lr: float = ANDREW_LR) -> float:
    """Andrew et al. 2021 geometric update on the *unclipped* fraction."""
    b = min(1.0, max(0.0, unclipped_fraction))
    return clip_norm * math.exp(-lr * (b - target_quantile))


@dataclass(frozen=True)
class AggregateResult:
    mean: torch.Tensor  # float32 [d]: sum / number of survivors
    sum: torch.Tensor  # float32 [d]
    survivors: np.ndarray  # bool [n]
    bytes_up_per_member: float
    bytes_down_per_member: float
    epsilon_so_far: float
    clip_norm_used: float
    clip_norm_next: float
    unclipped_fraction: float | None
    masked_inputs: Mapping[int, bytes] = field(default_factory=dict)
    encoding: MemberEncoding | None = None
    # with an `InputBinding`: the sum modulo 2**bits as SecAgg+ returned it, T (the survivors'
    # field coordinates summed mod p) and the members the binding set aside before unmasking
    total: np.ndarray | None = None
    blinding_sum: int | None = None
    excluded: tuple[int, ...] = ()
    secagg_seconds: float = 0.0  # wall time of the SecAgg+ exchange (all parties, in process)


class InputBinding(Protocol):
    """Hooks that bind each member's proof to its secure-aggregation input (see fedledger.sim.proofs).

    `blindings` runs after encoding and before masking: it commits to each survivor's input and
    returns the field coordinate t_i per member id (all ids). `screen` runs once every masked input is
    in, before the survivor list is fixed: it returns the member ids to treat as dropouts.
    """

    def blindings(self, encoding: MemberEncoding, survivors: np.ndarray, ids: list[int]) -> Mapping[int, int]: ...

    def screen(self, masked: Mapping[int, np.ndarray], masked_blindings: Mapping[int, int],
               records: Mapping[int, Any]) -> Collection[int]: ...


class DistributedDP:
    """The member-level pipeline for a task: plan once, then `aggregate` every round.

    Holds the current clip norm (adaptive clipping moves it after each round) and the number of
    rounds released; `state_dict`/`load_state_dict` resume both.
    """

    def __init__(
        self,
        *,
        epsilon: float,
        delta: float,
        clip_norm: float,
        d: int,
        n: int,
        rounds: int,
        min_survivors: int | None = None,
        bits: int | str = 32,
        adaptive_clip: bool = False,
        target_quantile: float = 0.5,
        secret_sampling: bool = False,
        sample_rate: float = 1.0,
        secagg: bool = True,
        public_seed: bytes = b"",
        task_id: bytes | None = None,
        identities: Mapping[int, Identity] | None = None,
        pki: Mapping[int, PublicIdentity] | None = None,
        secagg_dropout: float = 0.0,
        extra: int = 0,
        keep_encoding: bool = False,
        plan: DdpPlan | None = None,
        compress: float | None = None,
    ) -> None:
        if clip_norm <= 0:
            raise ConfigError("clip_norm must be positive")
        kw: dict[str, Any] = dict(epsilon=epsilon, delta=delta, rounds=rounds, d=d, n=n, min_survivors=min_survivors,
                                  adaptive=adaptive_clip, secret_sampling=secret_sampling, sample_rate=sample_rate,
                                  extra=extra, compress=compress)
        # `plan`: another pipeline's plan over the same encoding (privacy/record_secagg.py); else member level.
        # bits "auto": the fewest that hold the sum of n members plus noise (compress.auto_bits)
        if plan is not None:
            self.plan = plan
        elif bits == "auto":
            self.plan = auto_bits(plan_distributed_dp, **kw)
        else:
            self.plan = plan_distributed_dp(bits=int(bits), **kw)
        bits = self.plan.bits
        self.target_quantile = target_quantile
        self.clip_norm = float(clip_norm)
        self.rounds_done = 0
        self.secagg = secagg
        self.public_seed = public_seed
        self.task_id = task_id or domain_hash(Usage.TASK_SPEC, b"distributed-dp", public_seed)
        self.identities = identities
        self.pki = pki
        self.secagg_params: SecAggParams | None = (
            SecAggParams.for_cohort(n, self.plan.length, bits, dropout=secagg_dropout) if secagg else None
        )
        self.keep_encoding = keep_encoding

    @classmethod
    def from_config(cls, privacy: Any, *, d: int, n: int, rounds: int, min_survivors: int | None = None,
                    **kwargs: Any) -> DistributedDP:
        """From a `PrivacyConfig` (epsilon, delta, clip_norm, adaptive_clip, target_quantile, bits,
        secret_sampling, secagg)."""
        return cls(epsilon=privacy.epsilon, delta=privacy.delta, clip_norm=privacy.clip_norm, d=d, n=n,
                   rounds=rounds, min_survivors=min_survivors, bits=privacy.bits,
                   adaptive_clip=privacy.adaptive_clip, target_quantile=privacy.target_quantile,
                   secret_sampling=privacy.secret_sampling, secagg=privacy.secagg,
                   compress=parse_compress(getattr(privacy, "compress", "none")), **kwargs)

    def rotation(self, round_index: int, round_seed: bytes = b"") -> Rotation | SketchMap:
        """The round's public map: the rotation, or the SRHT compression (seeded also by the round's seed)."""
        return round_map(self.plan, self.public_seed, round_index, round_seed)

    def aggregate(
        self,
        deltas: torch.Tensor,
        round_index: int,
        survivors: np.ndarray | None = None,
        *,
        entropy: Entropy | None = None,
        attempt: int = 0,
        member_ids: list[int] | None = None,
        binding: InputBinding | None = None,
        session: SessionContext | None = None,
        round_seed: bytes = b"",
    ) -> AggregateResult:
        """Privatise and sum one attempt of a round. `survivors[i]` False: member i drops before sending its
        masked input. Every secret (stochastic rounding, noise shares, SecAgg+ randomness and, without
        `identities`, the members' keys) comes from `entropy` (default: the OS CSPRNG), in streams keyed by
        (purpose, member, round, attempt): a reopened attempt draws fresh noise, and a keyed source (a `child`
        of the run's entropy) with the same attempt redraws the same inputs (a sum redone without blamed
        members); `SystemEntropy()` itself never repeats. `binding` (needs SecAgg+):
        each member also sends a field coordinate, and members the binding screens out after masking are
        treated as dropouts (`excluded`). `session`: the SecAgg+ session this sum runs in (default: a
        simulated context for (task, round, attempt)); a re-sum of the same attempt must pass a new
        `sub_session`, which also gives every member fresh SecAgg+ keys even when `entropy` redraws."""
        if binding is not None and not self.secagg:
            raise ConfigError("binding proofs to masked inputs needs secure aggregation")
        entropy = SystemEntropy() if entropy is None else entropy
        plan = self.plan
        n = deltas.shape[0]
        if n != plan.n:
            raise ValueError(f"expected {plan.n} members, got {n}")
        if self.rounds_done >= plan.rounds:
            raise accounting.PrivacyBudgetExceeded(
                f"all {plan.rounds} planned releases are spent (epsilon {plan.epsilon_after(plan.rounds):.3g})")
        sv = np.ones(n, dtype=bool) if survivors is None else np.asarray(survivors, dtype=bool)
        if int(sv.sum()) < plan.min_survivors:
            raise InsufficientSurvivors(
                f"only {int(sv.sum())} members survived; the noise is sized for at least {plan.min_survivors}")
        rng = entropy.stream(Purpose.DP_NOISE, round=round_index, attempt=attempt)
        rot = self.rotation(round_index, round_seed)
        clip = self.clip_norm
        enc = encode_members(plan, deltas, clip, rot, rng)
        ids = list(range(n)) if member_ids is None else [int(m) for m in member_ids]
        masked: Mapping[int, bytes] = {}
        bound_total: np.ndarray | None = None
        blinding_sum: int | None = None
        excluded: tuple[int, ...] = ()
        secagg_seconds = 0.0
        if self.secagg:
            identities: Mapping[int, Identity]
            pki: Mapping[int, PublicIdentity]
            if self.identities is None or self.pki is None:
                # keys from the entropy source: the OS CSPRNG unless the run is deterministic
                identities = {m: Identity(entropy.key(Purpose.IDENTITY, member=m)) for m in ids}
                pki = {m: PublicIdentity.from_registered(i.public_bytes) for m, i in identities.items()}
            else:
                identities, pki = self.identities, self.pki
            rand = entropy.stream(Purpose.SECAGG, round=round_index, attempt=attempt).bytes
            drops = {ids[i]: Kind.MASKED_INPUT for i in range(n) if not sv[i]}
            assert self.secagg_params is not None
            blindings = None if binding is None else binding.blindings(enc, sv.copy(), list(ids))
            started = time.perf_counter()
            out = run_round(enc.wrapped, ids, identities, pki, self.secagg_params, self.task_id, round_index,
                            drops, rand, blindings=blindings, screen=None if binding is None else binding.screen,
                            session=session or SessionContext.simulated(self.task_id, round_index, attempt))
            secagg_seconds = time.perf_counter() - started
            if out.excluded:
                sv = sv & ~np.isin(np.asarray(ids), np.asarray(out.excluded))
            if set(out.survivors) != {ids[i] for i in range(n) if sv[i]}:
                raise FedLedgerError("secure aggregation survivors differ from the expected survivors")
            if int(sv.sum()) < plan.min_survivors:
                raise InsufficientSurvivors(
                    f"only {int(sv.sum())} members kept after screening; the noise is sized for {plan.min_survivors}")
            bound_total, blinding_sum, excluded = out.total, out.blinding_sum, tuple(out.excluded)
            total = out.total
            up = float(np.mean([out.bytes_up[ids[i]] for i in range(n) if sv[i]]))
            down = float(np.mean([out.bytes_down[ids[i]] for i in range(n) if sv[i]]))
            masked = out.masked_inputs
        else:
            total = (enc.wrapped[sv].astype(np.uint64).sum(axis=0) % (1 << plan.bits)).astype(np.uint32)
            up = float(packed_size(plan.length, plan.bits))
            down = 0.0
        dec = decode_sum(plan, total, clip, rot)
        k = int(sv.sum())
        frac = None
        nxt = clip
        if plan.adaptive and dec.unclipped_count is not None:
            frac = dec.unclipped_count / k
            nxt = adaptive_clip_update(clip, frac, self.target_quantile)
            self.clip_norm = nxt
        self.rounds_done += 1
        return AggregateResult(
            mean=dec.total / k, sum=dec.total, survivors=sv, bytes_up_per_member=up, bytes_down_per_member=down,
            epsilon_so_far=plan.epsilon_after(self.rounds_done), clip_norm_used=clip, clip_norm_next=nxt,
            unclipped_fraction=frac, masked_inputs=masked, encoding=enc if self.keep_encoding else None,
            total=bound_total if binding is not None else None, blinding_sum=blinding_sum, excluded=excluded,
            secagg_seconds=secagg_seconds,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"clip_norm": self.clip_norm, "rounds_done": self.rounds_done}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.clip_norm = float(state["clip_norm"])
        self.rounds_done = int(state["rounds_done"])


def limbs_encode(value: int, limbs: int, limb_bits: int) -> np.ndarray:
    """Split a non-negative integer (e.g. a field element) into `limbs` limbs of `limb_bits` bits.

    Summed through secure aggregation with limb_bits + ceil(log2 n) <= bits, no limb wraps, so
    `limbs_decode` of the summed limbs returns the exact integer sum of the values.
    """
    if value < 0 or value >> (limbs * limb_bits):
        raise ValueError("value does not fit in the limbs")
    mask = (1 << limb_bits) - 1
    return np.array([(value >> (i * limb_bits)) & mask for i in range(limbs)], dtype=np.uint32)


def limbs_decode(summed: np.ndarray, limb_bits: int) -> int:
    return sum(int(v) << (i * limb_bits) for i, v in enumerate(np.asarray(summed).tolist()))
