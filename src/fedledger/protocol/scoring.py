"""Contribution scores in a real round: what each validator computes, commits and reveals, and the settlement
every party derives from the revealed vectors (docs/incentives.md, "Scores in the rounds").

Flow of one attempt (contract `Scores`, client `Ledger.publish_scoring` / `commit_scores` / `reveal_scores`):

1. the aggregator stores the round's evidence *without* its settlement and publishes its root;
2. each committee member recomputes the round from that evidence (`roles.RoundChecker`), scores every cohort
   member (`member_scores`), stores its `ScoreVector` blob and commits to keccak256 of it with a fresh salt;
3. once every member committed (or the commit deadline passed) each reveals (hash, salt);
4. the aggregator reads the reveals, computes `score_settlement` and submits the result with the settlement's
   reward and reputation roots; each validator recomputes the same settlement from the chain's reveals and
   the blobs and votes against a round whose settlement differs (the on-chain check of the root is the
   committee's 2/3 vote).

Scores (`member_scores`), from evidence a validator checks itself:
- visible updates: per-member Shapley values of the round, utility = the validator's held-out accuracy of the
  model the round would release from a coalition's signed updates (re-aggregated with the round's weights,
  `contribution.subset_means`); exact for <= `EXACT_MAX_GROUPS` members, GTG-Shapley above. An all-zero update
  (a free rider) scores 0 whatever the estimate says;
- visible updates, validator without held-out data (its accuracy is NaN): `alignment_scores`;
- hidden updates (secure aggregation): the across-round regression of the measured held-out improvement of
  every finalized round on its contributors (`contribution.attribute_rounds`; post-processing of released
  aggregates, no privacy cost), this round included;
- in both: validity (a member named faulty scores 0) and the committed data size (`combined_score`).
Group-wise secure sub-aggregates (Shapley over SecAgg+ groups) are not run in real rounds (the secure session
aggregates the cohort once).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from eth_abi import encode as abi_encode
from eth_utils import keccak

from fedledger.core.blobstore import BlobStore
from fedledger.core.errors import IntegrityError
from fedledger.protocol.contribution import (
    EXACT_MAX_GROUPS,
    attribute_rounds,
    combined_score,
    exact_shapley,
    gtg_shapley,
    subset_means,
)
from fedledger.protocol.incentives import (
    DEFAULT_SCORE,
    Event,
    Role,
    apply_events,
    reward_shares_by_score,
    score_consensus,
    split_pool,
)

SCORES_VERSION = 1
ZERO32 = b"\x00" * 32


@dataclass(frozen=True)
class ScoreRules:
    """How a round's pool is split among roles and who of the committee is paid."""

    role_parts: tuple[tuple[str, int], ...] = (("trainers", 80), ("aggregator", 10), ("validators", 10))
    min_agreement: float = 0.7  # a validator agreeing less with the consensus gets no scoring share
    kappa: float = 0.5  # the consensus quantile (stake-weighted median)
    shrinkage: float = 1.0  # regression over rounds (hidden updates)
    size_weight: float = 0.0  # beta of `combined_score`


@dataclass(frozen=True)
class ScoreVector:
    """A validator's scores for one attempt, stored as a blob; its keccak256 is what is committed."""

    task_id: int
    round_id: int
    attempt: int
    evidence_root: bytes
    validator: str
    members: tuple[str, ...]
    scores: tuple[float, ...]

    def to_bytes(self) -> bytes:
        return json.dumps({"version": SCORES_VERSION, "task": self.task_id, "round": self.round_id,
                           "attempt": self.attempt, "evidence": self.evidence_root.hex(),
                           "validator": self.validator.lower(), "members": [m.lower() for m in self.members],
                           "scores": [float(s) for s in self.scores]}, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ScoreVector:
        try:
            d = json.loads(data)
            if d["version"] != SCORES_VERSION:
                raise ValueError("version")
            v = cls(int(d["task"]), int(d["round"]), int(d["attempt"]), bytes.fromhex(d["evidence"]),
                    str(d["validator"]), tuple(str(m) for m in d["members"]), tuple(float(s) for s in d["scores"]))
        except (ValueError, KeyError, TypeError) as e:
            raise IntegrityError(f"score vector blob is malformed: {e}") from None
        if len(v.members) != len(v.scores) or not all(math.isfinite(s) for s in v.scores):
            raise IntegrityError("score vector blob is malformed: lengths or non-finite scores")
        if v.to_bytes() != data:
            raise IntegrityError("score vector blob is not canonical")
        return v

    @property
    def hash(self) -> bytes:
        return keccak(self.to_bytes())

    def store(self, blobs: BlobStore) -> bytes:
        """Put the blob and file it under its keccak256 (what the chain records); returns that hash."""
        blobs.name(self.hash, blobs.put(self.to_bytes()))
        return self.hash


def scores_commitment(scores_hash: bytes, salt: bytes, validator: str, task_id: int, round_id: int,
                      attempt: int) -> bytes:
    """keccak256(abi_encode(scores_hash, salt, validator, task, round, attempt)): `Scores.commitment_for`."""
    return keccak(abi_encode(["bytes32", "bytes32", "address", "uint256", "uint256", "uint256"],
                             [scores_hash, salt, validator, task_id, round_id, attempt]))


def revealed_vectors(ledger: Any, blobs: BlobStore, task_id: int, round_id: int, attempt: int,
                     committee: Sequence[str], evidence_root: bytes,
                     members: Sequence[str]) -> dict[str, np.ndarray]:
    """The committee's revealed score vectors of the attempt, from the chain's hashes and the blobs. A vector
    whose blob is missing, does not hash to the revealed hash or does not score exactly this attempt's
    evidence and members for its own validator counts as not revealed."""
    want = tuple(m.lower() for m in members)
    out: dict[str, np.ndarray] = {}
    for v in committee:
        h = ledger.revealed_scores(task_id, round_id, attempt, v)
        if h == ZERO32:
            continue
        try:
            data = blobs.get(blobs.resolve(h))
            if keccak(data) != h:
                continue
            vec = ScoreVector.from_bytes(data)
        except (IntegrityError, KeyError, FileNotFoundError, OSError):
            continue
        if (vec.task_id, vec.round_id, vec.attempt, vec.evidence_root, vec.validator, vec.members) != \
                (task_id, round_id, attempt, evidence_root, v.lower(), want):
            continue
        out[v] = np.asarray(vec.scores, dtype=np.float64)
    return out


@dataclass(frozen=True)
class ScoreOutcome:
    """The settlement's score part: consensus per member, agreement per validator, the reward split and why."""

    consensus: dict[str, float]
    agreement: dict[str, float]  # every committee member (0: no valid reveal)
    rewards: dict[str, int]
    why: dict[str, str] = field(default_factory=dict)  # aggregator and validators: why (not) paid

    def to_json(self) -> dict[str, Any]:
        return {"consensus": self.consensus, "agreement": self.agreement, "why": self.why}


def score_settlement(pool: int, members: Sequence[str], vectors: Mapping[str, np.ndarray],
                     weights: Mapping[str, int], committee: Sequence[str], aggregator: str,
                     faulty: Sequence[str], rules: ScoreRules = ScoreRules()) -> ScoreOutcome:
    """Split a finalized round's contributors' pool (integer units) by the committee's consensus.

    consensus = the stake-weighted median with clipping (`score_consensus`) of the revealed vectors (stake:
    each validator's committee weight); trainers are paid by their consensus score (`reward_shares_by_score`:
    faulty members and scores <= 0 get nothing); validators by weight x agreement, only with agreement >=
    `min_agreement` (no valid reveal: agreement 0); the aggregator its part (its round is finalized when this
    settlement pays). A role with nobody to pay leaves its part unpaid: it goes back to the task's escrow
    (`Settlement.unpaid`, posted with the result), never to another role. The shares sum to at most `pool`."""
    voters = [v for v in committee if v in vectors]
    consensus = np.zeros(len(members))
    agreement = dict.fromkeys(committee, 0.0)
    why: dict[str, str] = {}
    if voters:
        stake = np.array([float(weights[v]) for v in voters])
        cons = score_consensus(np.stack([vectors[v] for v in voters]), stake, kappa=rules.kappa)
        consensus = cons.consensus
        for v, a in zip(voters, cons.agreement, strict=True):
            agreement[v] = float(a)
    trainer_scores = {m: float(c) for m, c in zip(members, consensus, strict=True)}
    validator_scores = {v: weights[v] * agreement[v] for v in committee if agreement[v] >= rules.min_agreement}
    for v in committee:
        why[v] = ("no valid reveal: not paid" if v not in vectors else
                  f"agreement {agreement[v]:.3f} >= {rules.min_agreement}: paid by weight x agreement"
                  if agreement[v] >= rules.min_agreement else
                  f"agreement {agreement[v]:.3f} < {rules.min_agreement}: not paid")
    parts = split_pool(pool, dict(rules.role_parts)) if pool else {}
    rewards: dict[str, int] = {}
    for m, amount in reward_shares_by_score(parts.get("trainers", 0), trainer_scores, faulty).items():
        rewards[m] = rewards.get(m, 0) + amount
    for v, amount in reward_shares_by_score(parts.get("validators", 0), validator_scores).items():
        rewards[v] = rewards.get(v, 0) + amount
    if parts.get("aggregator", 0):
        rewards[aggregator] = rewards.get(aggregator, 0) + parts["aggregator"]
    why[aggregator] = f"round finalized: paid its part ({parts.get('aggregator', 0)} units)"
    return ScoreOutcome({m: trainer_scores[m] for m in members}, agreement, dict(sorted(rewards.items())), why)


def score_reputation(previous: Mapping[str, int], cohort: Sequence[str], contributors: Sequence[str],
                     faulty: Sequence[str], outcome: ScoreOutcome, aggregator: str) -> dict[str, int]:
    """Every party's reputation after the round, by the documented events (`incentives.Event`): a contributor
    USEFUL_WORK with quality q = its consensus score over the 90th percentile of the positive scores (capped
    at 1; a free rider's 0 pulls it down), a cohort member that did not contribute DROPOUT, a faulty one
    INVALID_PROOF; the aggregator USEFUL_WORK q = 1 (its round is finalized); each committee member
    CONSENSUS_VOTE with its agreement (0 without a valid reveal)."""
    positive = [s for s in outcome.consensus.values() if s > 0]
    top = float(np.percentile(positive, 90)) if positive else 0.0
    named, contributed = set(faulty), set(contributors)
    events: list[tuple[str, Event, float]] = []
    for m in cohort:
        if m in named:
            events.append((m, Event.INVALID_PROOF, 1.0))
        elif m in contributed:
            s = outcome.consensus.get(m, 0.0)
            events.append((m, Event.USEFUL_WORK, min(1.0, max(0.0, s / top)) if top > 0 else 0.0))
        else:
            events.append((m, Event.DROPOUT, 1.0))
    scores = apply_events(previous, Role.TRAINER, events)
    scores = apply_events(scores, Role.AGGREGATOR, [(aggregator, Event.USEFUL_WORK, 1.0)])
    return apply_events(scores, Role.VALIDATOR, [(v, Event.CONSENSUS_VOTE, a) for v, a in outcome.agreement.items()])


# ---- what a validator scores ----------------------------------------------------------------------


def visible_scores(previous: torch.Tensor, deltas: np.ndarray, weights: np.ndarray,
                   utility: Callable[[torch.Tensor], float], rng: np.random.Generator) -> np.ndarray:
    """Per-member Shapley values of a visible round: v(S) = utility(previous + sum_{i in S} w_i delta_i /
    sum_{i in S} w_i) (the step S's updates alone would release, `subset_means`); exact for up
    to `EXACT_MAX_GROUPS` members, GTG-Shapley above. A member whose update is all zeros scores 0."""
    n = deltas.shape[0]
    if n == 0:
        return np.zeros(0)
    d = deltas.astype(np.float64)
    w = np.asarray(weights, dtype=np.float64)

    def value(masks: np.ndarray) -> np.ndarray:
        steps = subset_means(d, w, masks)
        return np.array([utility(previous + torch.from_numpy(s.astype(np.float32))) if m.any()
                         else utility(previous) for s, m in zip(steps, masks, strict=True)])

    phi = exact_shapley(value, n) if n <= EXACT_MAX_GROUPS else gtg_shapley(value, n, rng).values
    return np.where(np.abs(d).sum(axis=1) > 0, phi, 0.0)


def alignment_scores(deltas: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Data-free values of a visible round, for a validator with no held-out data: each member's aggregation
    weight times the cosine of its update with the round's aggregate step, floored at 0 (the cosine-gradient
    approximation of Shapley values: Xu et al., "Gradient-Driven Rewards to Guarantee Fairness in Collaborative
    Machine Learning", NeurIPS 2021). An all-zero update (a free rider) or one against the step scores 0."""
    d = np.asarray(deltas, dtype=np.float64)
    if d.shape[0] == 0:
        return np.zeros(0)
    w = np.asarray(weights, dtype=np.float64)
    step = (w[:, None] * d).sum(axis=0)
    norms = np.linalg.norm(d, axis=1) * np.linalg.norm(step)
    cosine = np.divide(d @ step, norms, out=np.zeros(len(d)), where=norms > 0)
    return w * np.maximum(cosine, 0.0)


def hidden_scores(history: Sequence[tuple[Sequence[str], float]], members: Sequence[str],
                  rules: ScoreRules = ScoreRules()) -> np.ndarray:
    """Values of `members` from (contributors, measured improvement) of every finalized round so far and this
    one, by the weighted ridge regression of `contribution.attribute_rounds` (rows weighted by |improvement|,
    so that rounds near convergence count little), zero prior."""
    index = {m: i for i, m in enumerate(members)}
    rows = [(c, y) for c, y in history if any(m in index for m in c)]
    if not rows:
        return np.zeros(len(members))
    x = np.zeros((len(rows), len(members)))
    for r, (contributors, _) in enumerate(rows):
        for m in contributors:
            if m in index:
                x[r, index[m]] = 1.0
    y = np.array([v for _, v in rows])
    return attribute_rounds(x, y, shrinkage=rules.shrinkage, weights=np.abs(y) + 1e-12).values


def member_scores(members: Sequence[str], contributors: Sequence[str], faulty: Sequence[str],
                  contribution: Mapping[str, float], committed: Mapping[str, int],
                  rules: ScoreRules = ScoreRules()) -> np.ndarray:
    """The vector a validator commits to: `combined_score` over the cohort (a member whose update is not in the
    aggregate has phi 0; a faulty one validity 0)."""
    phi = np.array([contribution.get(m, 0.0) if m in set(contributors) else 0.0 for m in members])
    sizes = np.array([float(committed.get(m, 0)) for m in members])
    validity = np.array([0.0 if m in set(faulty) else 1.0 for m in members])
    return combined_score(phi, sizes, validity, size_weight=rules.size_weight)


__all__ = [
    "DEFAULT_SCORE",
    "ScoreOutcome",
    "ScoreRules",
    "ScoreVector",
    "alignment_scores",
    "hidden_scores",
    "member_scores",
    "revealed_vectors",
    "score_reputation",
    "score_settlement",
    "scores_commitment",
    "visible_scores",
]
