"""What a DP run should expect before it trains: the privacy unit and the noise-to-signal per round.

The ratio is ‖noise on one round's aggregate update‖ / ‖the largest signal it can carry‖, both in units of
the clip norm (and, for DP-SGD, of the learning rate), so it needs no data and no model output:

* member level (DP-FedAvg, McMahan et al. 2018; distributed noise, Kairouz, Liu, Steinke 2021): the mean of
  m clipped updates carries at most C of signal and Gaussian noise of std z·C/m on each of d coordinates,
  so the ratio is z·√d / m (z: the plan's noise multiplier, m: the survivors the noise is sized for).
* record level (DP-SGD, Abadi et al. 2016): member i takes T_i steps of a Poisson batch of b_i = q_i·n_i
  expected records with noise std σ_i·C on each coordinate of the batch's gradient sum; over the round its
  signal is at most T_i·C/b_i·b_i = T_i·C and its noise has norm σ_i·C·√(d·T_i)/b_i. FedAvg weights the
  members by records (w_i), so the ratio is √(Σ w_i² T_i σ_i² / b_i²)·√d / Σ w_i T_i.
* record level through SecAgg+ (`privacy.record_secagg`): every secure sum is *one* DP-SGD step on the union of
  the members' Poisson batches, and the noise is not each member's own but the sum of the m survivors' shares,
  std σ_sum = √(m s²) / scale per coordinate (model units) on the batch's gradient sum. A round of T such steps
  over an expected batch B = q·N·m/n (N the cohort's records) carries at most T·C of signal and noise of norm
  √T·σ_sum·√d / B, so the ratio is σ_sum·√d / (B·C·√T). Estimating it as if each member added the full
  noise (the formula above) overstates it by about √m: the members' noises are not independent draws that
  average out, they are shares of one noise.

Thresholds are measured, not derived (docs/privacy.md, "Before training"): on digits the runs that learn
stay below `SWAMP` (record level, 5 members at ε = 3: 0.25 with the logistic regression, 1.0 with the MLP;
member level, 20 members at ε = 8: 2.6), while member-level DP with 2 or 4 members (ratios 28 and 14) ended at
0.017 and 0.06 accuracy with the loss rising.
Past `HOPELESS` nothing is learned: the run still goes (it may be a protocol test), but says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedledger.privacy.accounting import (
    calibrate_noise,
    calibrate_rounds,
    dpsgd_event,
    epsilon_of,
    gaussian_rounds_epsilon,
)
from fedledger.privacy.dpsgd import dpsgd_schedule

#: above this noise-to-signal per round, the noise swamps what a round can learn
SWAMP = 3.0
#: above this, no number of rounds at this budget learns anything
HOPELESS = 8.0


class PrivacyWarning(UserWarning):
    """A DP run whose noise will swamp learning (shown as one `fedledger: warning:` line)."""


@dataclass(frozen=True)
class Outlook:
    unit: str  # "record" | "member"
    noise_to_signal: float  # per round, see the module docstring
    summary: str  # one line: the unit, the noise and the ratio
    warning: str | None  # one line, with what to change, when the ratio passes SWAMP
    #: record level through SecAgg+: the std per coordinate (model units) of the noise on one step's sum of
    #: clipped gradients, √(m s²) / scale; None for the other outlooks
    step_noise_std: float | None = None

    @property
    def hopeless(self) -> bool:
        return self.noise_to_signal > HOPELESS


def secagg_alone_note(min_survivors: int) -> str:
    """What SecAgg+ without DP protects, said before training: each input hidden inside one sum, nothing about what
    two sums give together (the member-level pipeline bounds that by accounting every release)."""
    return (f"privacy: SecAgg+ without DP: the aggregator sees only sums of at least {min_survivors} members' "
            "updates, but nothing bounds what two sums reveal together (two whose survivors differ by one member "
            "give that member's update: exactly but for rounding in a redone attempt, roughly across rounds); "
            "--dp member --epsilon E adds noise that bounds it")


def _verdict(ratio: float) -> str:
    return "nothing will be learned" if ratio > HOPELESS else "the noise will swamp learning"


def member_outlook(*, noise_multiplier: float, min_survivors: int, d: int, rounds: int, epsilon: float,
                   delta: float) -> Outlook:
    """The outlook of member-level DP: z·√d / m per round (module docstring)."""
    ratio = noise_multiplier * math.sqrt(d) / min_survivors
    summary = (f"privacy: member level (add or remove one member's whole update), epsilon {epsilon:g} at delta "
               f"{delta:g} over {rounds} releases; noise multiplier {noise_multiplier:.3g} on the sum of at least "
               f"{min_survivors} members, noise-to-signal per round {ratio:.2f} (d = {d})")
    if ratio <= SWAMP:
        return Outlook("member", ratio, summary, None)
    members = math.ceil(min_survivors * ratio / SWAMP)
    fixes = [f"at least {members} members per round"]
    z_needed = noise_multiplier * SWAMP / ratio
    eps_needed = gaussian_rounds_epsilon(z_needed, rounds, delta)
    fixes.append(f"epsilon {eps_needed:.3g}")
    fewer = _fewest_rounds_fix(lambda r: calibrate_rounds(epsilon, delta, r) * math.sqrt(d) / min_survivors,
                               rounds)
    if fewer is not None:
        fixes.append(f"{fewer} rounds")
    warning = (f"member-level DP with {min_survivors} members: noise-to-signal {ratio:.1f} per round, "
               f"{_verdict(ratio)} (it should be below {SWAMP:g}); to get there use {', or '.join(fixes)}"
               + ("" if fewer is not None else " (fewer rounds would not be enough)"))
    return Outlook("member", ratio, summary, warning)


def _fewest_rounds_fix(ratio_at: Callable[[int], float], rounds: int) -> int | None:
    """The most rounds (fewer than now) at which the ratio falls below SWAMP, or None if even one does not."""
    lo = 1
    if rounds <= 1 or ratio_at(lo) > SWAMP:
        return None
    hi = rounds  # ratio_at(hi) > SWAMP
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ratio_at(mid) <= SWAMP:
            lo = mid
        else:
            hi = mid
    return lo


def record_ratio(counts: Sequence[int], sigmas: Sequence[float], *, batch_size: int, epochs: float,
                 d: int) -> float:
    """Record-level noise-to-signal per round of FedAvg over members with `counts` records and DP-SGD noise
    multipliers `sigmas` (module docstring)."""
    n = np.asarray(counts, dtype=np.float64)
    w = n / n.sum()
    sched = [dpsgd_schedule(int(c), batch_size, epochs) for c in counts]
    q = np.array([s[0] for s in sched])
    t = np.array([s[1] for s in sched], dtype=np.float64)
    b = q * n
    noise = math.sqrt(float((w**2 * t * np.asarray(sigmas) ** 2 / b**2).sum()) * d)
    return noise / float((w * t).sum())


def record_outlook(*, counts: Sequence[int], batch_size: int, epochs: float, rounds: int, epsilon: float,
                   delta: float, d: int, clip_norm: float) -> Outlook:
    """The outlook of record-level DP-SGD in every member (each taking part in every round)."""
    def sigma(c: int, r: int) -> float:
        q, steps = dpsgd_schedule(int(c), batch_size, epochs)
        return calibrate_noise(epsilon, delta, q, steps * r)

    sigmas = [sigma(int(c), rounds) for c in counts]
    ratio = record_ratio(counts, sigmas, batch_size=batch_size, epochs=epochs, d=d)
    summary = (f"privacy: record level (add or remove one training record of one member), epsilon {epsilon:g} at "
               f"delta {delta:g} per member over {rounds} rounds; DP-SGD noise multiplier "
               f"{min(sigmas):.3g}-{max(sigmas):.3g}, clip {clip_norm:g}, noise-to-signal per round {ratio:.2f} "
               f"(d = {d})")
    if ratio <= SWAMP:
        return Outlook("record", ratio, summary, None)
    fixes = [f"more records per member (the smallest has {min(counts)})", "a larger --batch-size",
             "a larger epsilon"]
    fewer = _fewest_rounds_fix(lambda r: record_ratio(counts, [sigma(int(c), r) for c in counts],
                                                      batch_size=batch_size, epochs=epochs, d=d), rounds)
    if fewer is not None:
        fixes.insert(0, f"{fewer} rounds")
    warning = (f"record-level DP: noise-to-signal {ratio:.1f} per round, {_verdict(ratio)} (it should be below "
               f"{SWAMP:g}); use {', or '.join(fixes)}")
    return Outlook("record", ratio, summary, warning)


def record_secagg_step_noise_std(plan: Any) -> float:
    """The std per coordinate, in model units, of the noise on one secure sum of a `RecordPlan`: the m shares of
    variance s² summed, unscaled (the plan's guaranteed noise; more survivors only add to it)."""
    return math.sqrt(plan.min_survivors * plan.member_variance) / plan.scale


def record_secagg_ratio(*, step_noise_std: float, clip_norm: float, batch: float, steps: int, d: int) -> float:
    """Noise-to-signal per round of `steps` DP-SGD steps through SecAgg+ (module docstring)."""
    return step_noise_std * math.sqrt(d) / (batch * clip_norm * math.sqrt(steps))


def record_secagg_outlook(*, plan: Any, counts: Sequence[int], rounds: int, epsilon: float, delta: float,
                          d: int) -> Outlook:
    """The outlook of record-level DP-SGD through SecAgg+ (`privacy.record_secagg.RecordPlan`): one noise, the
    sum of the survivors' shares, on each step's sum of the members' clipped per-example gradients."""
    std = record_secagg_step_noise_std(plan)
    clip = plan.record_clip
    # the expected batch of m members of average size: the records behind the m shares that make the noise
    batch = plan.sample_rate * float(sum(counts)) * plan.min_survivors / plan.n
    steps = plan.steps_per_round
    ratio = record_secagg_ratio(step_noise_std=std, clip_norm=clip, batch=batch, steps=steps, d=d)
    summary = (f"privacy: record level (add or remove one training record of one member), epsilon {epsilon:g} at "
               f"delta {delta:g} over {rounds} rounds of {steps} DP-SGD steps through SecAgg+; noise std "
               f"{std / clip:.3g} clip norms on each step's sum of about {batch:.0f} clipped gradients (the sum of "
               f"at least {plan.min_survivors} members' shares), noise-to-signal per round {ratio:.2f} (d = {d})")
    if ratio <= SWAMP:
        return Outlook("record", ratio, summary, None, std)
    per_z = ratio / plan.noise_multiplier  # the ratio is proportional to the central noise multiplier z

    def ratio_at(r: int) -> float:
        return per_z * calibrate_noise(epsilon, delta, plan.sample_rate, steps * r)

    z_needed = plan.noise_multiplier * SWAMP / ratio
    eps_needed = epsilon_of(dpsgd_event(z_needed, plan.sample_rate, steps * rounds), delta)
    fixes = [f"at least {math.ceil(plan.n * ratio / SWAMP)} members of this size", f"epsilon {eps_needed:.3g}"]
    fewer = _fewest_rounds_fix(ratio_at, rounds)
    if fewer is not None:
        fixes.insert(0, f"{fewer} rounds")
    warning = (f"record-level DP through SecAgg+: noise-to-signal {ratio:.1f} per round, {_verdict(ratio)} (it "
               f"should be below {SWAMP:g}); use {', or '.join(fixes)}")
    return Outlook("record", ratio, summary, warning, std)
