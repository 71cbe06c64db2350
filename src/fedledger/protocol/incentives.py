"""What a round pays and how it moves reputation: pure functions every validator recomputes.

The aggregator posts a reward root and a reputation root with the round's result; the per-member
values behind them travel in the round's evidence. Validators recompute both from the cohort (drawn
from the round seed), the survivor list and the members named as faulty, and vote against a round whose
values differ, so the aggregator cannot pay itself or favour anyone.

Rewards (`reward_shares`): the contributors' pool split equally among the members whose update is in the
aggregate, members named as faulty getting nothing. No role posts it any more: real rounds settle by the
committee's scores (`fedledger.protocol.score_flow`, docs/incentives.md "In the rounds").

Reputation: a score in [0, MAX_SCORE] per trainer, DEFAULT_SCORE for a member never scored. Each round,
for the members of its cohort only: a contributor moves a fraction GAIN of the way toward MAX_SCORE; a
member that was drawn but did not contribute (dropped out) loses a fraction DROP_LOSS of its score; a
member named as faulty loses a fraction FAULT_LOSS. Scores weight selection on chain (stake x
(5000 + score) / 10000), so reliable members are drawn as aggregators and validators more often.

Below those two, called by the rounds through `scoring` and `score_flow`: `reward_shares_by_score` (largest-remainder
split by contribution score, conserving tokens exactly; scores <= 0 get nothing) and `split_pool` (the round's
pool among roles); `reputation_after` / `apply_events` (bounded reputation for trainers, aggregators and
validators by event, each event's direction fixed); `score_consensus` (Yuma-style stake-weighted median,
clipping and per-validator agreement).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from fedledger.core.errors import ConfigError

MAX_SCORE = 10_000
DEFAULT_SCORE = 5_000
GAIN = 0.1
DROP_LOSS = 0.05
FAULT_LOSS = 0.5


def reward_shares(pool: int, contributors: Iterable[str], faulty: Collection[str] = ()) -> dict[str, int]:
    """Equal shares of `pool` (integer token units) for the contributors not named as faulty."""
    paid = sorted(set(contributors) - set(faulty))
    if not paid:
        return {}
    return dict.fromkeys(paid, pool // len(paid))


def next_reputation(previous: Mapping[str, int], cohort: Iterable[str], contributors: Collection[str],
                    faulty: Collection[str] = ()) -> dict[str, int]:
    """Every member's score after the round: `previous` carried forward, the cohort's members updated."""
    scores = dict(previous)
    contributed, named = set(contributors), set(faulty)
    for member in cohort:
        score = scores.get(member, DEFAULT_SCORE)
        if member in named:
            score = round(score * (1 - FAULT_LOSS))
        elif member in contributed:
            score = score + round((MAX_SCORE - score) * GAIN)
        else:
            score = round(score * (1 - DROP_LOSS))
        scores[member] = max(0, min(MAX_SCORE, score))
    return scores


# ---- score-weighted rewards, reputation for every role, validator consensus (issue 14) ------------
# Pure math beside the functions above; the roles settle with these through `scoring.score_settlement` and
# `scoring.score_reputation` (`score_flow`; docs/incentives.md says what is wired and what is not).


#: fraction of its score a slashed party loses (a slash needs evidence of its own fault)
SLASH_LOSS = 0.9


def reward_shares_by_score(pool: int, scores: Mapping[str, float], faulty: Collection[str] = ()) -> dict[str, int]:
    """Split `pool` integer token units in proportion to `scores`, by largest remainder (Hamilton).

    Paid: members with a finite score > 0 not named in `faulty` (a free rider or poisoner whose score is
    <= 0 gets nothing, not even a remainder unit). Each paid member gets floor(pool * s_i / S) (S: the sum of
    paid scores, computed exactly with rationals, so every validator gets the same integers from the same
    floats); the pool - sum of floors < (number paid) leftover units go one each to the largest fractional
    parts, ties broken by member id. The shares sum to exactly `pool` when anyone is paid; otherwise the
    result is empty and the whole pool stays in the task's budget (sum <= pool always).
    """
    if isinstance(pool, bool) or not isinstance(pool, int) or pool < 0:
        raise ConfigError(f"the pool must be a non-negative integer number of token units, not {pool!r}")
    named = set(faulty)
    exact = {m: Fraction(float(s)) for m, s in scores.items()
             if m not in named and np.isfinite(s) and s > 0}
    if not exact or pool == 0:
        return {}
    total = sum(exact.values())
    quota = {m: pool * s / total for m, s in exact.items()}
    shares = {m: int(q) for m, q in quota.items()}  # floor: quotas are positive
    left = pool - sum(shares.values())
    for m in sorted(quota, key=lambda m: (-(quota[m] - shares[m]), m))[:left]:
        shares[m] += 1
    return dict(sorted(shares.items()))


def split_pool(pool: int, parts: Mapping[str, int]) -> dict[str, int]:
    """Split `pool` among roles by integer weights (e.g. {"trainers": 80, "aggregator": 10, "validators": 10}),
    largest remainder, ties by name: the parts sum to exactly `pool`."""
    if any(w < 0 for w in parts.values()) or not any(w > 0 for w in parts.values()):
        raise ConfigError("role weights must be non-negative with at least one positive")
    out = reward_shares_by_score(pool, {k: float(w) for k, w in parts.items()})
    return {k: out.get(k, 0) for k in parts}


class Role(enum.IntEnum):
    TRAINER = 1
    AGGREGATOR = 2
    VALIDATOR = 3


class Event(enum.IntEnum):
    """What a party did in a round, as reputation sees it; the direction each moves a score is fixed:

    USEFUL_WORK (quality q in [0, 1]): s -> s + GAIN * (q * MAX_SCORE - s), toward q * MAX_SCORE: up for work
        better than the reputation says, down for useless work (q = 0: a free rider's zero update).
    CONSENSUS_VOTE (agreement a in [0, 1]): s -> s + GAIN * (a * MAX_SCORE - s), the same rule: a validator
        in full agreement rises toward MAX_SCORE, one that scores at random or copies settles near its
        (low) agreement.
    DROPOUT: s -> s * (1 - DROP_LOSS). INVALID_PROOF, VOTE_AGAINST_EVIDENCE: s -> s * (1 - FAULT_LOSS).
    SLASH: s -> s * (1 - SLASH_LOSS). Every result is rounded and clamped to [0, MAX_SCORE].
    """

    USEFUL_WORK = 1
    CONSENSUS_VOTE = 2
    DROPOUT = 3
    INVALID_PROOF = 4
    VOTE_AGAINST_EVIDENCE = 5
    SLASH = 6


#: events that only move a score down
PENALTIES = frozenset({Event.DROPOUT, Event.INVALID_PROOF, Event.VOTE_AGAINST_EVIDENCE, Event.SLASH})

#: which events a role can have (a trainer does not vote; a validator does no training)
ROLE_EVENTS: dict[Role, frozenset[Event]] = {
    Role.TRAINER: frozenset({Event.USEFUL_WORK, Event.DROPOUT, Event.INVALID_PROOF, Event.SLASH}),
    Role.AGGREGATOR: frozenset({Event.USEFUL_WORK, Event.DROPOUT, Event.INVALID_PROOF, Event.SLASH}),
    Role.VALIDATOR: frozenset({Event.CONSENSUS_VOTE, Event.DROPOUT, Event.VOTE_AGAINST_EVIDENCE, Event.SLASH}),
}


def reputation_after(score: int, role: Role, event: Event, strength: float = 1.0) -> int:
    """One party's score after one event (the rules in `Event`); `strength` is q or a, in [0, 1]."""
    if event not in ROLE_EVENTS[role]:
        raise ConfigError(f"a {role.name.lower()} has no {event.name.lower()} event")
    if not 0.0 <= strength <= 1.0:
        raise ConfigError(f"event strength must be in [0, 1], not {strength}")
    s = max(0, min(MAX_SCORE, int(score)))
    if event in (Event.USEFUL_WORK, Event.CONSENSUS_VOTE):
        new = s + round(GAIN * (strength * MAX_SCORE - s))
    elif event is Event.DROPOUT:
        new = round(s * (1 - DROP_LOSS))
    elif event is Event.SLASH:
        new = round(s * (1 - SLASH_LOSS))
    else:
        new = round(s * (1 - FAULT_LOSS))
    return max(0, min(MAX_SCORE, new))


def apply_events(previous: Mapping[str, int], role: Role,
                 events: Iterable[tuple[str, Event, float]]) -> dict[str, int]:
    """Every party's score after a round's events (member, event, strength), in the given order; a party
    never scored starts at DEFAULT_SCORE; parties without events keep their score."""
    scores = dict(previous)
    for member, event, strength in events:
        scores[member] = reputation_after(scores.get(member, DEFAULT_SCORE), role, event, strength)
    return scores


@dataclass(frozen=True)
class Consensus:
    """The committee's consensus on a score vector and how much each validator agreed with it."""

    consensus: np.ndarray  # float64 [M]: stake-weighted kappa-quantile of each column
    clipped: np.ndarray  # float64 [V, M]: each validator's scores cut to the consensus where above it
    agreement: np.ndarray  # float64 [V] in [0, 1]


def stake_weighted_quantile(values: np.ndarray, stake: np.ndarray, kappa: float = 0.5) -> np.ndarray:
    """Per column of `values` [V, M]: the smallest value x such that validators scoring <= x hold at least
    a fraction `kappa` of the stake (kappa = 0.5: the lower stake-weighted median). A coalition with less
    than min(kappa, 1 - kappa) of the stake cannot move it outside the range of the others' values."""
    x = np.asarray(values, dtype=np.float64)
    w = np.asarray(stake, dtype=np.float64)
    if x.ndim != 2 or w.shape != (x.shape[0],) or (w < 0).any() or not w.sum() > 0:
        raise ConfigError("values must be [V, M] with a non-negative stake per validator, some positive")
    if not 0 < kappa < 1:
        raise ConfigError(f"kappa must be in (0, 1), not {kappa}")
    order = np.argsort(x, axis=0, kind="stable")
    cum = np.cumsum(w[order], axis=0)  # [V, M]
    pick = np.argmax(cum >= kappa * w.sum() * (1 - 1e-12), axis=0)
    return np.take_along_axis(x, order, axis=0)[pick, np.arange(x.shape[1])]


def score_consensus(scores: np.ndarray, stake: np.ndarray, *, kappa: float = 0.5) -> Consensus:
    """Yuma-style consensus of validators' score vectors (Bittensor's Yuma consensus, as described in the
    Bittensor paper and subtensor's epoch: stake-weighted median and clipping).

    scores [V, M]: validator v's score for each of M items (groups of a round, members); stake [V].
    - consensus C_j = the stake-weighted kappa-quantile of column j (`stake_weighted_quantile`);
    - clipping: W~_vj = min(W_vj, C_j): a score above the consensus is cut to it, so inflating an item
      buys nothing;
    - agreement A_v = max(0, 1 - ||W_v - C||_1 / (||W_v||_1 + ||C||_1)), 1 for a validator that scored
      exactly the consensus, 0 for an all-zero vector or one that disagrees completely. For non-negative
      rows summing to 1 and a consensus summing to 1 this is Yuma's validator trust sum_j min(W_vj, C_j)
      (= 1 - total variation distance). Scores may be signed (values of groups can be negative).
    Under commit-reveal a validator cannot copy this round's scores; a copied stale vector (another round's,
    whose groups were different) or a random one lands far from the consensus and gets a low agreement.
    """
    w = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(w).all():
        raise ConfigError("scores must be finite")
    c = stake_weighted_quantile(w, stake, kappa)
    clipped = np.minimum(w, c[None, :])
    dist = np.abs(w - c[None, :]).sum(axis=1)
    scale = np.abs(w).sum(axis=1) + np.abs(c).sum()
    agreement = np.where(scale > 0, np.clip(1 - dist / np.where(scale > 0, scale, 1.0), 0.0, 1.0), 1.0)
    agreement = np.where(np.abs(w).sum(axis=1) > 0, agreement, 0.0)
    return Consensus(consensus=c, clipped=clipped, agreement=agreement)
