"""Contribution scores: how much each member's work improved the model, also when updates are hidden.

Pure, vectorized functions; every random choice comes from a `numpy.random.Generator` passed in, so a
validator that recomputes a score from the same public inputs gets the same bits. The roles do not call
these yet (docs/incentives.md says what is wired and what is not).

Under secure aggregation nobody sees one member's update, so per-member Shapley values cannot be computed
directly. Two sources of value that secure aggregation does release:

(a) **Across rounds** (`attribute_rounds`). Round r has a public cohort x_r (a 0/1 row over members, from the
    round seed) and a released aggregate whose improvement y_r on held-out data the committee measures. With
    cohorts that differ from round to round, the member values phi solve a regularized regression

        minimize  sum_r w_r (y_r - x_r . phi)^2  +  lam * sum_i (phi_i - mu_i)^2     [optionally phi >= 0]

    with a documented prior mu (`size_prior`: value per committed example times the member's committed
    size) and shrinkage lam: with few rounds the estimate stays near the prior, and each new round moves it
    toward what the data say. This is post-processing of values that were already released under DP: it
    costs no privacy.

(b) **Within a round** (`random_groups`, `group_shapley`, `group_release_cost`). The cohort is split at
    random into groups of at least the SecAgg+ threshold, each group's sum is securely aggregated and
    released, the committee values every union of groups (the model stepped by the mean of those groups'
    updates, on its held-out data) and the round's value is split among groups by Shapley over groups:
    exact for at most 8 groups (2^k coalitions), permutation-sampled otherwise with a Hoeffding bound. A
    group's value then becomes one row of the regression (a) (its members' indicator, its Shapley value),
    so the groups of many rounds identify single members. Releasing group sums costs privacy: under
    member-level DP with distributed noise, a group sum carries only its members' noise shares.

(c) **Visible updates** (`gtg_shapley`): per-member GTG-Shapley, Liu, Yu, Yu, Cong, Zhang, "GTG-Shapley:
    Efficient and Accurate Participant Contribution Evaluation in Federated Learning", ACM TIST 13(4), 2022:
    utilities of coalitions by re-aggregating the round's updates (no retraining), between-round truncation
    (a round that barely moved the model is worth nothing to split), within-round truncation (once a
    permutation's prefix is within eps of the full cohort's utility, the rest of it adds 0) and guided
    sampling (permutation t puts member t mod n first, so every member is seen early as often as late).

(d) **Combined** (`combined_score`): the contribution estimate, gated by the validity of the member's proofs
    and messages, optionally mixed with its committed data size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dp_accounting as dpa
import numpy as np
from scipy.optimize import nnls

from fedledger.core.errors import ConfigError
from fedledger.privacy import accounting
from fedledger.privacy.distributed import DdpPlan

#: the value of coalitions: masks bool [B, k] (True = player in the coalition) -> values float64 [B]
ValueFn = Callable[[np.ndarray], np.ndarray]

#: largest number of groups valued exactly (2^8 = 256 coalitions); above it, permutation sampling
EXACT_MAX_GROUPS = 8


# ---- (a) attribution by regression over rounds ----------------------------------------------------


@dataclass(frozen=True)
class Attribution:
    """Member values estimated from (membership row, outcome) pairs."""

    values: np.ndarray  # float64 [N]: the regularized estimate phi
    prior: np.ndarray  # float64 [N]: mu
    shrinkage: float  # lam
    rows: int  # observations used
    residual_rms: float  # sqrt(mean weighted squared residual) of the fit
    # float64 [N]: sqrt(s2 [(X'WX + lam I)^-1]_ii), s2 = weighted RSS / dof (inf when dof is 0: no rows)
    stderr: np.ndarray
    # residual degrees of freedom K - tr(H), H = X (X'WX + lam I)^-1 X'W the ridge hat matrix (Hastie, Tibshirani,
    # Friedman, ESL 2nd ed., 3.4.1 and 7.6: tr(H) is the fit's effective number of parameters); in [0, K]
    dof: float = math.inf
    weights: np.ndarray | None = None  # float64 [K]: the row weights the fit used


def value_bounds(fit: Attribution, level: float) -> tuple[np.ndarray, np.ndarray]:
    """One-sided `level` bounds (lower, upper) on each member's value: phi_i -/+ t_{level, dof} se_i, Student's
    t with the fit's residual degrees of freedom (the residual variance is estimated, not known: with few rows
    the bounds widen; with no residual degrees of freedom they are infinite). Under the ridge's Gaussian prior
    (posterior variance s2 [(X'WX + lam I)^-1]_ii) these are credible bounds: lower_i > 0 says the rounds show
    member i contributed, with probability about `level`."""
    if not 0.5 <= level < 1:
        raise ConfigError(f"the bound's level must be in [0.5, 1), not {level}")
    from scipy.stats import t as student_t

    q = float(student_t.ppf(level, fit.dof)) if fit.dof > 0 else math.inf
    half = np.where(fit.stderr > 0, q * fit.stderr, 0.0) if math.isfinite(q) else np.full_like(fit.values, math.inf)
    return fit.values - half, fit.values + half


def shown_to_contribute(fit: Attribution, candidates: np.ndarray, alpha: float) -> np.ndarray:
    """Which candidates the rounds show to have contributed (value > 0), by one-sided t tests of H0: phi_i <= 0
    (p_i = P(T_dof >= phi_i / se_i)) with Holm's step-down correction (Holm, "A Simple Sequentially Rejective
    Multiple Test Procedure", Scand. J. Statist. 6, 1979): sort the candidates' p-values, show the k-th
    smallest while p_(k) <= alpha / (m - k + 1), m the number of candidates. The probability that any member
    whose value is <= 0 is shown (and paid) is at most `alpha` for the whole cohort, however many free riders
    it holds; a single test per member at level alpha would pay one of many free riders far more often.
    `candidates` bool [N]; returns bool [N] (False outside the candidates)."""
    cand = np.asarray(candidates, dtype=bool)
    if cand.shape != fit.values.shape or not 0 < alpha < 1:
        raise ConfigError("candidates must be a bool [N] vector and 0 < alpha < 1")
    from scipy.stats import t as student_t

    shown = np.zeros(cand.shape, dtype=bool)
    idx = np.flatnonzero(cand & np.isfinite(fit.stderr) & (fit.stderr > 0))
    if fit.dof <= 0 or not idx.size:
        return shown
    p = student_t.sf(fit.values[idx] / fit.stderr[idx], fit.dof)
    m = int(cand.sum())  # members without a finite standard error count as tests that were not rejected
    order = np.argsort(p, kind="stable")
    passed = p[order] <= alpha / (m - np.arange(len(order)))
    k = len(order) if passed.all() else int(np.argmin(passed))
    shown[idx[order[:k]]] = True
    return shown


def low_value_per_example(fit: Attribution, committed_size: np.ndarray, valid: np.ndarray, *, level: float,
                          ratio: float) -> np.ndarray:
    """Flag low-quality contributors: member i is flagged when the upper `level` bound of its value per
    committed example, hi_i / n_i (`value_bounds`), is below `ratio` x the median value per committed example
    of the valid members, or when it is not valid (an invalid proof or message).

    A member's FedAvg weight is the size it commits, so its value is judged per committed example: a free
    rider commits its real data and adds nothing, and a member with a little clean data is not mistaken for
    one with much useless data. The median is over valid members (robust while fewer than half are
    adversarial). Testing the upper bound flags a member only when the rounds show its per-example value is
    low: a member the rounds say little about is not flagged on noise. Returns bool [N]."""
    n = np.asarray(committed_size, dtype=np.float64)
    ok = np.asarray(valid, dtype=bool)
    if n.shape != fit.values.shape or ok.shape != n.shape or (n <= 0).any() or not ratio > 0:
        raise ConfigError("committed sizes must be positive, valid a bool [N] vector and ratio > 0")
    _, upper = value_bounds(fit, level)
    per_example = fit.values / n
    typical = float(np.median(per_example[ok])) if ok.any() else 0.0
    return ~ok | (upper / n < ratio * typical)


def size_prior(membership: np.ndarray, outcomes: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """mu_i = n_i * (sum_r y_r) / (sum_r sum_j x_rj n_j): every committed example is worth the same.

    The prior a member gets before the rounds say otherwise: its committed data size times the average
    value per example in the observed rounds (zero when nothing was observed). Committed sizes can be
    inflated by a member that does not train on its data, which is why the prior only holds while the
    evidence is thin (shrinkage) and never outweighs many rounds of outcomes.
    """
    x = np.asarray(membership, dtype=np.float64)
    n = np.asarray(sizes, dtype=np.float64)
    y = np.asarray(outcomes, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != n.shape[0] or x.shape[0] != y.shape[0]:
        raise ConfigError(f"membership {x.shape}, outcomes {y.shape} and sizes {n.shape} do not match")
    mass = float((x @ n).sum())
    return n * (float(y.sum()) / mass) if mass > 0 else np.zeros_like(n)


def attribute_rounds(
    membership: np.ndarray,
    outcomes: np.ndarray,
    *,
    prior: np.ndarray | float = 0.0,
    shrinkage: float = 1.0,
    weights: np.ndarray | None = None,
    nonnegative: bool = False,
) -> Attribution:
    """Member values phi from rows `membership` [K, N] (coefficient of member i in observation r: 1 if it was
    in the round's cohort or group, 0 if not, or a fractional weight) and `outcomes` [K] (the measured
    improvement of the round or group), by weighted ridge regression toward `prior` (module docstring, (a)).

    `shrinkage` lam > 0 makes the problem well posed whatever the cohorts (a member never drawn keeps its
    prior). `weights` [K] >= 0 weigh observations (e.g. 1 / the round's scale, so late rounds with small
    improvements count as much as early ones). `nonnegative` solves the same objective under phi >= 0 (exact,
    by NNLS on the stacked system [sqrt(w) X; sqrt(lam) I] phi ~ [sqrt(w) y; sqrt(lam) mu]).
    """
    x = np.asarray(membership, dtype=np.float64)
    y = np.asarray(outcomes, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ConfigError(f"membership must be [K, N] and outcomes [K], got {x.shape} and {y.shape}")
    if not shrinkage > 0:
        raise ConfigError(f"shrinkage must be > 0, got {shrinkage}")
    n = x.shape[1]
    mu = np.broadcast_to(np.asarray(prior, dtype=np.float64), (n,)).copy()
    w = np.ones(x.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != y.shape or (w < 0).any():
        raise ConfigError("weights must be [K] and non-negative")
    if not (np.isfinite(x).all() and np.isfinite(y).all() and np.isfinite(w).all() and np.isfinite(mu).all()):
        raise ConfigError("membership, outcomes, weights and prior must be finite")
    sw = np.sqrt(w)
    if nonnegative:
        a = np.vstack([x * sw[:, None], math.sqrt(shrinkage) * np.eye(n)])
        b = np.concatenate([y * sw, math.sqrt(shrinkage) * mu])
        phi, _ = nnls(a, b, maxiter=50 * max(n, 1))
    else:
        xw = x * w[:, None]
        phi = np.linalg.solve(x.T @ xw + shrinkage * np.eye(n), xw.T @ y + shrinkage * mu)
    resid = (y - x @ phi) * sw
    rms = float(np.sqrt(np.mean(resid**2))) if len(resid) else 0.0
    # the ridge posterior's spread (Gaussian noise of variance s2 per unit weight, prior precision lam / s2):
    # how far the data leave each value uncertain; used to pay by a lower confidence bound
    # residual variance over the effective residual degrees of freedom K - tr(H) (ridge: tr(H) < N)
    gram = x.T @ (x * w[:, None])
    cov = np.linalg.inv(gram + shrinkage * np.eye(n))
    dof = max(0.0, float(x.shape[0] - np.trace(cov @ gram)))
    s2 = float((resid**2).sum()) / dof if dof > 1e-9 else math.inf
    stderr = np.sqrt(s2 * np.clip(np.diag(cov), 0, None)) if math.isfinite(s2) else np.full(n, math.inf)
    return Attribution(values=phi, prior=mu, shrinkage=float(shrinkage), rows=int(x.shape[0]), residual_rms=rms,
                       stderr=stderr, dof=dof, weights=w)


# ---- (b) random groups, Shapley over groups, the privacy cost of group sums -----------------------


def random_groups(members: int, min_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A uniformly random partition of members 0..members-1 into floor(members / min_size) groups whose
    sizes differ by at most one, so every group has at least `min_size` members (pass the SecAgg+
    threshold of the cohort: a group smaller than that would let its sum reveal too little noise and too
    few members). Fewer than `min_size` members: one group of everyone."""
    if min_size < 1:
        raise ConfigError(f"groups need at least one member, not {min_size}")
    k = max(1, members // min_size)
    order = rng.permutation(members)
    return [np.sort(part) for part in np.array_split(order, k)]


def subset_means(deltas: np.ndarray, weights: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """For each coalition (row of `masks` [B, k]), the weighted mean of its players' vectors `deltas` [k, d]
    with `weights` [k] (FedAvg's sample counts): float64 [B, d]; the empty coalition gives zeros.

    With k groups and `deltas` the group sums divided by the groups' total weights, this is the update the
    union of those groups would have released."""
    m = np.asarray(masks, dtype=np.float64) * np.asarray(weights, dtype=np.float64)[None, :]
    total = m.sum(axis=1, keepdims=True)
    return (m @ np.asarray(deltas, dtype=np.float64)) / np.where(total > 0, total, 1.0)


def _all_masks(k: int) -> np.ndarray:
    return ((np.arange(1 << k)[:, None] >> np.arange(k)[None, :]) & 1).astype(bool)


def exact_shapley(value: ValueFn, k: int) -> np.ndarray:
    """Shapley values of the k-player game `value` from all 2^k coalitions (one batched call):
    phi_i = sum_{S not containing i} |S|! (k - |S| - 1)! / k! * (v(S + i) - v(S))."""
    if not 1 <= k <= 16:
        raise ConfigError(f"exact Shapley is for 1..16 players, not {k}")
    masks = _all_masks(k)
    v = np.asarray(value(masks), dtype=np.float64)
    if v.shape != (1 << k,):
        raise ConfigError(f"the value function returned shape {v.shape} for {1 << k} coalitions")
    sizes = masks.sum(axis=1)
    weight = np.array([math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k) if s < k else 0.0
                       for s in range(k + 1)])
    idx = np.arange(1 << k)
    without = ~masks  # [2^k, k]: S does not contain i
    partner = idx[:, None] | (1 << np.arange(k))[None, :]  # S + i
    marginal = v[partner] - v[idx][:, None]
    return (weight[sizes][:, None] * marginal * without).sum(axis=0)


@dataclass(frozen=True)
class ShapleyEstimate:
    """Shapley values (sum: v(all) - v(empty), exactly, for every method here) and how they were found.

    error_bound: 0 when exact; otherwise a half-width such that, with probability at least `confidence`,
    every |estimate_i - phi_i| <= error_bound (Hoeffding over the permutations, union bound over players),
    valid when marginal contributions lie in an interval of width `marginal_range`; `empirical_range`
    says that this width is the observed one (a heuristic) rather than one implied by a stated value range.
    """

    values: np.ndarray
    exact: bool
    permutations: int
    evaluations: int
    error_bound: float
    confidence: float
    marginal_range: float
    empirical_range: bool


def _pack(masks: np.ndarray) -> np.ndarray:
    """Rows of a bool matrix as hashable void scalars, for deduplicating coalitions."""
    packed = np.packbits(masks, axis=1)
    return np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()


def _evaluate_unique(value: ValueFn, masks: np.ndarray) -> tuple[np.ndarray, int]:
    keys = _pack(masks)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    v = np.asarray(value(masks[first]), dtype=np.float64)
    if v.shape != (len(first),):
        raise ConfigError(f"the value function returned shape {v.shape} for {len(first)} coalitions")
    return v[inverse.ravel()], len(first)


def sampled_shapley(
    value: ValueFn,
    k: int,
    rng: np.random.Generator,
    *,
    permutations: int = 200,
    value_range: tuple[float, float] | None = None,
    confidence: float = 0.95,
) -> ShapleyEstimate:
    """Permutation-sampling Shapley (Castro, Gomez, Tejada 2009): the mean over `permutations` random orders
    of each player's marginal contribution when it joins the players before it. Each permutation's
    marginals sum to v(all) - v(empty), so the estimate is exactly efficient. Coalitions are evaluated once
    each (deduplicated), in one batched call.

    Error bound: a marginal contribution lies in [-(hi - lo), hi - lo] when values lie in `value_range`
    = (lo, hi), an interval of width r = 2 (hi - lo); Hoeffding and a union bound over the k players give
    |estimate_i - phi_i| <= r sqrt(ln(2k / (1 - confidence)) / (2 P)) for all i, with probability >=
    `confidence`. Without `value_range`, r is the observed range of marginals (flagged as empirical).
    """
    if k < 1 or permutations < 1 or not 0 < confidence < 1:
        raise ConfigError("need k >= 1 players, permutations >= 1 and 0 < confidence < 1")
    perms = rng.permuted(np.tile(np.arange(k), (permutations, 1)), axis=1)  # [P, k]: player at each position
    rank = np.argsort(perms, axis=1)  # [P, k]: position of each player
    steps = np.arange(k + 1)
    masks = rank[:, None, :] < steps[None, :, None]  # [P, k+1, k]: the first t players of each order
    v, evaluations = _evaluate_unique(value, masks.reshape(-1, k))
    v = v.reshape(permutations, k + 1)
    marginal = np.diff(v, axis=1)  # [P, k]: marginal of the player at position t
    per_player = np.take_along_axis(marginal, rank, axis=1)  # [P, k]: marginal of player i
    est = per_player.mean(axis=0)
    if value_range is not None:
        width, empirical = 2.0 * float(value_range[1] - value_range[0]), False
    else:
        width, empirical = float(per_player.max() - per_player.min()), True
    bound = width * math.sqrt(math.log(2 * k / (1 - confidence)) / (2 * permutations))
    return ShapleyEstimate(values=est, exact=False, permutations=permutations, evaluations=evaluations,
                           error_bound=bound, confidence=confidence, marginal_range=width,
                           empirical_range=empirical)


def group_shapley(
    value: ValueFn,
    k: int,
    rng: np.random.Generator | None = None,
    *,
    permutations: int = 200,
    value_range: tuple[float, float] | None = None,
    confidence: float = 0.95,
) -> ShapleyEstimate:
    """Shapley over the k groups of a round: exact for k <= EXACT_MAX_GROUPS, permutation-sampled otherwise
    (`rng` required then). `value(masks)` is the committee's value of each union of groups."""
    if k <= EXACT_MAX_GROUPS:
        vals = exact_shapley(value, k)
        return ShapleyEstimate(values=vals, exact=True, permutations=0, evaluations=1 << k, error_bound=0.0,
                               confidence=1.0, marginal_range=0.0, empirical_range=False)
    if rng is None:
        raise ConfigError(f"{k} groups are valued by sampling: pass a numpy Generator")
    return sampled_shapley(value, k, rng, permutations=permutations, value_range=value_range,
                           confidence=confidence)


@dataclass(frozen=True)
class GroupReleaseCost:
    """What releasing group sums costs under member-level distributed DP (see `group_release_cost`)."""

    rho_cohort: float  # zCDP per round when only the cohort's sum is released (the plan's)
    rho_groups: float  # zCDP per round when every group's sum is released (the smallest group's)
    smallest_group: int
    rounds: int
    rounds_with_groups: int
    epsilon_without_groups: float  # over `rounds`, at the plan's delta
    epsilon_with_groups: float
    extra_epsilon: float


def group_release_cost(plan: DdpPlan, group_sizes: Sequence[int], *, rounds_with_groups: int | None = None,
                       rounds: int | None = None) -> GroupReleaseCost:
    """The privacy cost of releasing, in `rounds_with_groups` of `rounds` rounds, the sums of groups of
    sizes `group_sizes` instead of only the cohort's sum, for a member-level distributed discrete Gaussian
    plan (privacy/distributed.py).

    Each member adds a discrete Gaussian share of variance s2 = plan.member_variance, sized so that the sum
    of at least m = plan.min_survivors shares meets the target. A group of g members releases its sum with
    only g shares: by KLS21 Thm. 2 (`accounting.ddg_rho`) it is rho(g)-zCDP for one member's change. Groups
    are disjoint, so a member's change touches one group's sum (parallel composition): the round costs
    max_g rho(g) = rho(smallest group); the cohort's sum is the sum of the group sums (post-processing, no
    further cost). Rounds compose additively in zCDP; epsilon comes from the project's RDP accountant at the
    plan's delta. Group membership is public, so no amplification by subsampling is claimed: a plan that
    relies on secret sampling is refused.
    """
    if plan.secret_sampling:
        raise ConfigError("group sums publish who is in each group: no amplification by secret sampling is "
                          "available; plan without secret sampling to price group releases")
    sizes = [int(g) for g in group_sizes]
    if not sizes or min(sizes) < 1:
        raise ConfigError("group sizes must be positive")
    total_rounds = plan.rounds if rounds is None else int(rounds)
    grouped = total_rounds if rounds_with_groups is None else int(rounds_with_groups)
    if not 0 <= grouped <= total_rounds:
        raise ConfigError(f"rounds with groups must be in 0..{total_rounds}")
    smallest = min(sizes)
    rho_g, _ = accounting.ddg_rho(plan.l2_sensitivity, plan.l1_sensitivity, plan.member_variance, smallest)
    rho_g = max(rho_g, plan.rho_per_round)  # a group never costs less than the cohort's own release
    without = _zcdp_epsilon([(plan.rho_per_round, total_rounds)], plan.delta)
    with_groups = _zcdp_epsilon([(rho_g, grouped), (plan.rho_per_round, total_rounds - grouped)], plan.delta)
    return GroupReleaseCost(rho_cohort=plan.rho_per_round, rho_groups=rho_g, smallest_group=smallest,
                            rounds=total_rounds, rounds_with_groups=grouped, epsilon_without_groups=without,
                            epsilon_with_groups=with_groups, extra_epsilon=max(0.0, with_groups - without))


def _zcdp_epsilon(parts: list[tuple[float, int]], delta: float) -> float:
    events = [dpa.SelfComposedDpEvent(dpa.ZCDpEvent(rho), count) for rho, count in parts if count > 0]
    if not events:
        return 0.0
    return accounting.epsilon_of(dpa.ComposedDpEvent(events), delta)


# ---- (c) visible updates: GTG-Shapley -------------------------------------------------------------


def gtg_shapley(
    value: ValueFn,
    n: int,
    rng: np.random.Generator,
    *,
    eps_between: float = 1e-4,
    eps_within: float = 1e-4,
    max_permutations: int | None = None,
    convergence: float = 0.05,
    window: int | None = None,
) -> ShapleyEstimate:
    """Per-member Shapley values of one round by GTG-Shapley (Liu et al. 2022, Alg. 1; module docstring (c)).

    `value(masks)` is the utility (e.g. minus the held-out loss) of the model the round would release from
    the members in each mask (re-aggregated from their visible updates: `subset_means`); masks [B, n].
    - between-round truncation: |v(all) - v(empty)| <= eps_between -> every value is 0;
    - guided permutations, processed n at a time (one cycle: member j first in the j-th), every position of
      a cycle evaluated in one batched call over the permutations not yet truncated;
    - within-round truncation: once |v(all) - v(prefix)| <= eps_within the rest of that permutation adds 0,
      so the values sum to v(all) - v(empty) within eps_within (exactly when eps_within = 0);
    - stop after `max_permutations` (default 10 n) or when the mean relative change of the estimate over
      the last cycle is below `convergence` (checked after `window`, default 2 cycles).
    """
    if n < 1:
        raise ConfigError("GTG-Shapley needs at least one member")
    limit = 10 * n if max_permutations is None else max(1, int(max_permutations))
    window = 2 * n if window is None else window
    ends = np.asarray(value(np.stack([np.zeros(n, dtype=bool), np.ones(n, dtype=bool)])), dtype=np.float64)
    v0, vn = float(ends[0]), float(ends[1])
    evaluations = 2
    if abs(vn - v0) <= eps_between:
        return ShapleyEstimate(values=np.zeros(n), exact=False, permutations=0, evaluations=evaluations,
                               error_bound=0.0, confidence=1.0, marginal_range=0.0, empirical_range=True)
    total = np.zeros(n)
    done = 0
    previous: np.ndarray | None = None
    lo, hi = math.inf, -math.inf
    while done < limit:
        batch = min(n, limit - done)
        first = (done + np.arange(batch)) % n
        rest = rng.permuted(np.tile(np.arange(n), (batch, 1)), axis=1)
        # move the guided member to the front, keep the random order of the others
        rest = rest[rest != first[:, None]].reshape(batch, n - 1)
        perms = np.concatenate([first[:, None], rest], axis=1)
        prefix = np.zeros((batch, n), dtype=bool)
        current = np.full(batch, v0)
        marginal = np.zeros((batch, n))
        live = np.ones(batch, dtype=bool)
        for t in range(n):
            live &= np.abs(vn - current) > eps_within
            rows = np.flatnonzero(live)
            prefix[np.arange(batch), perms[:, t]] = True
            if rows.size == 0:
                break
            if t == n - 1:
                new = np.full(rows.size, vn)  # the whole cohort: already known
            else:
                new, count = _evaluate_unique(value, prefix[rows])
                evaluations += count
            marginal[rows, perms[rows, t]] = new - current[rows]
            current[rows] = new
        lo, hi = min(lo, float(marginal.min())), max(hi, float(marginal.max()))
        total += marginal.sum(axis=0)
        done += batch
        estimate = total / done
        if previous is not None and done >= window:
            change = np.abs(estimate - previous).sum() / max(np.abs(estimate).sum(), 1e-300)
            if change < convergence:
                break
        previous = estimate
    return ShapleyEstimate(values=total / done, exact=False, permutations=done, evaluations=evaluations,
                           error_bound=math.nan, confidence=math.nan, marginal_range=hi - lo,
                           empirical_range=True)


# ---- (d) the combined score ------------------------------------------------------------------------


def combined_score(
    contribution: np.ndarray,
    committed_size: np.ndarray,
    validity: np.ndarray,
    *,
    size_weight: float = 0.0,
    min_validity: float = 1.0,
) -> np.ndarray:
    """s_i = g_i * validity_i * max(0, (1 - beta) phi_i + beta * mean(phi+) * n_i / mean(n)).

    phi: the contribution estimate ((a), (b) or (c)); n: committed data sizes; validity in [0, 1]: the share
    of the member's proofs and messages in the scoring window that verified; g_i = 1 if validity_i >=
    `min_validity` else 0 (default 1: a single invalid proof or message forfeits the window's score);
    beta = `size_weight` in [0, 1] mixes in a size-proportional baseline (0 by default: a committed size says
    what a member holds, not that it trained on it). Scores are >= 0 and a member with phi_i <= 0 and
    beta = 0 scores 0 (a free rider is paid nothing).
    """
    phi = np.asarray(contribution, dtype=np.float64)
    n = np.asarray(committed_size, dtype=np.float64)
    ok = np.asarray(validity, dtype=np.float64)
    if not (phi.shape == n.shape == ok.shape) or phi.ndim != 1:
        raise ConfigError("contribution, committed sizes and validity must be vectors of one length")
    if not 0 <= size_weight <= 1 or ((ok < 0) | (ok > 1)).any() or (n < 0).any():
        raise ConfigError("need 0 <= size_weight <= 1, validity in [0, 1] and sizes >= 0")
    base = np.zeros_like(n)
    if size_weight > 0 and n.sum() > 0:
        base = float(np.maximum(phi, 0).mean()) * n / float(n.mean())
    mixed = np.maximum(0.0, (1 - size_weight) * phi + size_weight * base)
    return np.where(ok >= min_validity, ok * mixed, 0.0)


__all__ = [
    "EXACT_MAX_GROUPS",
    "Attribution",
    "GroupReleaseCost",
    "ShapleyEstimate",
    "ValueFn",
    "attribute_rounds",
    "combined_score",
    "exact_shapley",
    "group_release_cost",
    "group_shapley",
    "gtg_shapley",
    "low_value_per_example",
    "random_groups",
    "sampled_shapley",
    "shown_to_contribute",
    "size_prior",
    "subset_means",
    "value_bounds",
]
