"""The committee's score commit-reveal inside a real round: what the roles call (`roles.Aggregator`,
`roles.Validator`, `roles.RoundChecker`) to run the flow of `fedledger.protocol.scoring` (docs/incentives.md).

1. The aggregator stores the round's evidence *bare* (its settlement holds only the contributors and the
   faulty list: `bare`) and publishes its root (`Ledger.publish_scoring`) instead of submitting the result.
2. Each committee member recomputes the round from that bare evidence (`RoundChecker.verify(..., posted=False)`),
   scores every cohort member itself (`validator_scores`), stores its `ScoreVector` blob and commits to it with a
   fresh 32-byte salt from the OS CSPRNG (`secrets.token_bytes`); once every member committed (or the commit
   deadline passed) it reveals (`CommitteeScoring`).
3. Once every committer revealed (or the reveal deadline passed: `settle_ready`) the aggregator reads the reveals
   and submits the result, its settlement `scored_settlement`: the stake-weighted median with clipping of the
   revealed vectors, the contributors' pool split by it, and the reputation of every role.
4. Each validator (and every auditor) checks that the posted evidence is the published bare evidence plus a
   settlement, and that the settlement is exactly `scored_settlement` of the chain's reveals; it votes against a
   round whose settlement differs.

Why a party was or was not paid is in the settlement itself (`Settlement.scores["why"]`): the aggregator's part,
each validator's agreement with the consensus against the threshold (or that it revealed no valid vector). The
validators' flat share paid on chain for accepting votes (`settlement.vy`, `validator_share_bps`) is apart from this.

The salt comes from the OS CSPRNG and stays with the validator until it reveals: in its process, and with a
`BallotBox` (a `fedledger node` keeps one in its state directory, owner-only files) on its disk, so a node restarted
between its commit and its reveal still reveals. Without one, such a validator cannot reveal (no scoring share).
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from fedledger.core.blobstore import BlobStore
from fedledger.core.errors import IntegrityError
from fedledger.core.vectors import from_bytes
from fedledger.ledger import Ledger, RoundStatus
from fedledger.ledger.types import ZERO32, ScoringRecord
from fedledger.protocol.evidence import CheckedRound, Evidence, RoundManifest, Settlement
from fedledger.protocol.messages import UpdateMessage
from fedledger.protocol.scoring import (
    ScoreRules,
    ScoreVector,
    alignment_scores,
    hidden_scores,
    member_scores,
    revealed_vectors,
    score_reputation,
    score_settlement,
    scores_commitment,
    visible_scores,
)
from fedledger.protocol.signing import Signed

#: the rules every party of a real round uses (the pool split among roles, the agreement threshold)
ROUND_RULES = ScoreRules()

Key = tuple[int, int]


def bare(evidence: Evidence) -> Evidence:
    """The evidence the committee scores: the same, with a settlement of only the contributors and faulty list."""
    s = evidence.settlement
    return replace(evidence, settlement=Settlement(s.contributors, s.faulty))


def scoring_root(model: bytes, evidence: Evidence, blobs: BlobStore | None = None) -> bytes:
    """The evidence root of `bare(evidence)` with `model`; stored (manifest filed under its root) when `blobs`."""
    data = bare(evidence).to_bytes()
    if blobs is None:
        return RoundManifest(model, BlobStore.address(data)).root
    return RoundManifest(model, blobs.put(data)).store(blobs)


def settle_ready(rec: ScoringRecord, now: int) -> bool:
    """The aggregator may settle: every committer revealed once commits closed, or the reveal deadline passed."""
    return rec.published and ((rec.reveals_open(now) and rec.reveals == rec.commits) or now > rec.reveal_deadline)


def next_scoring_deadline(rec: ScoringRecord, now: int) -> int | None:
    """Seconds to move a simulated clock to pass the next scoring deadline still ahead (None: none ahead)."""
    if not rec.published:
        return None
    for deadline in (rec.commit_deadline, rec.reveal_deadline):
        if now <= deadline:
            return deadline - now + 1
    return None


def scored_settlement(ledger: Ledger, blobs: BlobStore, task_id: int, round_id: int, attempt: int,
                      cohort: Sequence[str], committee: Sequence[str], aggregator: str, root: bytes,
                      contributors: Sequence[str], faulty: Sequence[str], pool: int, previous: Mapping[str, int],
                      rules: ScoreRules = ROUND_RULES) -> Settlement:
    """The round's settlement from the chain's reveals of (task, round, attempt) over the bare evidence `root`:
    the contributors' `pool` split by the committee's consensus (`scoring.score_settlement`, stake: each member's
    committee weight on chain) and every role's reputation after `previous` (`scoring.score_reputation`)."""
    weights = {v: ledger.committee_weight(task_id, round_id, v) for v in committee}
    vectors = revealed_vectors(ledger, blobs, task_id, round_id, attempt, committee, root, cohort)
    outcome = score_settlement(pool, cohort, vectors, weights, committee, aggregator, faulty, rules)
    reputation = score_reputation(previous, cohort, contributors, faulty, outcome, aggregator)
    return Settlement(tuple(contributors), tuple(faulty), outcome.rewards, reputation, outcome.to_json())


def check_scored(ledger: Ledger, blobs: BlobStore, task_id: int, round_id: int, attempt: int, cohort: Sequence[str],
                 committee: Sequence[str], aggregator: str, model: bytes, evidence: Evidence, pool: int,
                 previous: Mapping[str, int], rules: ScoreRules = ROUND_RULES) -> Settlement:
    """What a validator or auditor checks of a posted settlement (raises `IntegrityError`): the posted evidence is
    the bare evidence the committee scored (its root published on chain for this attempt) plus a settlement, and
    that settlement is `scored_settlement` of the chain's reveals. Returns the expected settlement."""
    rec = ledger.scoring(task_id, round_id, attempt)
    if not rec.published:
        raise IntegrityError("the round's evidence was never published for the committee's scores")
    root = scoring_root(model, evidence)
    if root != rec.evidence_root:
        raise IntegrityError("the posted evidence is not the one published for the committee's scores")
    s = evidence.settlement
    expected = scored_settlement(ledger, blobs, task_id, round_id, attempt, cohort, committee, aggregator, root,
                                 s.contributors, s.faulty, pool, previous, rules)
    if expected.rewards != s.rewards:
        raise IntegrityError("the rewards are not the split of the committee's revealed scores")
    if expected.reputation != s.reputation or expected.scores != s.scores:
        raise IntegrityError("the reputation or the score consensus is not the one the committee's reveals give")
    return expected


# ---- what a committee member scores --------------------------------------------------------------


@dataclass
class History:
    """A validator's memory of finalized rounds for across-round attribution: accuracy per model blob and
    (contributors, measured improvement) per evidence root; rebuilt from the chain and the blobs when empty."""

    accuracy: dict[bytes, float] = field(default_factory=dict)
    rounds: dict[bytes, tuple[tuple[str, ...], float]] = field(default_factory=dict)

    def accuracy_of(self, blobs: BlobStore, model: bytes, evaluate: Callable[[torch.Tensor], float]) -> float:
        if model not in self.accuracy:
            self.accuracy[model] = float(evaluate(from_bytes(blobs.get(model))))
        return self.accuracy[model]

    def finalized(self, ledger: Ledger, blobs: BlobStore, task_id: int, before: int,
                  evaluate: Callable[[torch.Tensor], float]) -> list[tuple[tuple[str, ...], float]]:
        """(contributors, held-out improvement) of every finalized round before `before`, by this validator's
        own evaluation of each round's model against the model it started from."""
        out = []
        for round_id in range(1, before):
            record = ledger.round(task_id, round_id)
            if record.status is not RoundStatus.FINALIZED:
                continue
            if record.evidence_root not in self.rounds:
                ev = Evidence.from_bytes(blobs.get(RoundManifest.find(blobs, record.evidence_root).evidence))
                gain = self.accuracy_of(blobs, record.model_hash, evaluate) - \
                    self.accuracy_of(blobs, ev.previous_model, evaluate)
                self.rounds[record.evidence_root] = (tuple(ev.settlement.contributors), gain)
            out.append(self.rounds[record.evidence_root])
        return out


def visible_rows(checked: CheckedRound) -> tuple[np.ndarray, np.ndarray]:
    """The contributors' update rows and the weights that combine them: the evidence's (a linear strategy), else
    the signed updates of the transcript weighted by their example counts."""
    ev = checked.evidence
    assert ev is not None
    if ev.deltas is not None and ev.weights is not None:
        return np.asarray(ev.deltas, np.float64), np.asarray(ev.weights, np.float64)
    updates = [UpdateMessage.from_bytes(Signed.from_bytes(raw).payload) for raw in ev.transcript]
    if not updates:
        return np.zeros((0, 0)), np.zeros(0)
    counts = np.array([u.num_examples for u in updates], dtype=np.float64)
    return np.stack([u.update for u in updates]).astype(np.float64), counts / counts.sum()


def validator_scores(ledger: Ledger, blobs: BlobStore, task_id: int, round_id: int, seed: bytes,
                     cohort: Sequence[str], global_model: bytes, checked: CheckedRound, secure: bool,
                     committed: Mapping[str, int], evaluate: Callable[[torch.Tensor], float], history: History,
                     rules: ScoreRules = ROUND_RULES) -> np.ndarray:
    """The vector a committee member commits to, from the round it recomputed itself: visible updates ->
    per-member Shapley values of its own held-out accuracy (`scoring.visible_scores`, GTG-Shapley's permutations
    drawn from the public round seed); hidden updates -> the across-round regression of its own measured
    improvements on the cohorts (`scoring.hidden_scores`), this round included; `scoring.member_scores` over the
    cohort (validity, committed size). A validator without held-out data (its `evaluate` gives NaN, as in the
    Flower adapter by default) scores visible updates by `scoring.alignment_scores` and hidden ones alike."""
    s = checked.settlement
    contributors = tuple(s.contributors)
    phi: dict[str, float] = {}
    held_out = contributors and not math.isnan(history.accuracy_of(blobs, global_model, evaluate))
    if contributors and not secure and checked.evidence is not None:
        rows, weights = visible_rows(checked)
        previous = from_bytes(blobs.get(global_model))
        rng = np.random.default_rng(int.from_bytes(seed, "big"))
        values = (visible_scores(previous, rows, weights, evaluate, rng) if held_out
                  else alignment_scores(rows, weights))
        phi = {a: float(v) for a, v in zip(contributors, values, strict=True)}
    elif contributors and not held_out:
        phi = dict.fromkeys(contributors, 1.0)  # nothing to measure a hidden round with: contributors alike
    elif contributors:
        past = history.finalized(ledger, blobs, task_id, round_id, evaluate)
        gain = float(evaluate(checked.model)) - history.accuracy_of(blobs, global_model, evaluate)
        members = sorted({m for c, _ in past for m in c} | set(contributors))
        values = hidden_scores([*past, (contributors, gain)], members, rules)
        phi = dict(zip(members, (float(v) for v in values), strict=True))
    return member_scores(cohort, contributors, s.faulty, phi, committed, rules)


@dataclass
class Ballot:
    vector: ScoreVector
    salt: bytes
    revealed: bool = False


@dataclass(frozen=True)
class BallotBox:
    """A committee member's uncommitted-to-revealed ballots on its own disk (`directory`, files readable by the
    owner only), so that a validator restarted between its commit and its reveal still reveals. A ballot is
    written before its commitment is sent; the salt is secret until the reveal and never goes to the blob store."""

    directory: Path

    def _path(self, task_id: int, key: Key) -> Path:
        return self.directory / f"{task_id}-{key[0]}-{key[1]}.json"

    def put(self, task_id: int, key: Key, ballot: Ballot) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = json.dumps({"vector": ballot.vector.to_bytes().hex(), "salt": ballot.salt.hex()}).encode()
        tmp = self._path(task_id, key).with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path(task_id, key))

    def get(self, task_id: int, key: Key) -> Ballot | None:
        path = self._path(task_id, key)
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return Ballot(ScoreVector.from_bytes(bytes.fromhex(data["vector"])), bytes.fromhex(data["salt"]))


@dataclass
class CommitteeScoring:
    """A committee member's side of the commit-reveal, attempt by attempt: it scores what it recomputed, commits,
    then reveals. `score(view, root)` recomputes and scores the published evidence (None: the evidence does not
    check; the member then commits nothing and votes against the result). With a `box` its ballots survive a
    restart: one committed before the restart is revealed after it."""

    ledger: Ledger
    task_id: int
    blobs: BlobStore
    salt: Callable[[], bytes] = lambda: secrets.token_bytes(32)  # the OS CSPRNG: a commitment must not be guessable
    box: BallotBox | None = None
    ballots: dict[Key, Ballot] = field(default_factory=dict)
    skipped: set[Key] = field(default_factory=set)

    def _recovered(self, key: Key) -> Ballot | None:
        """The ballot this member committed to before a restart (None: none kept, or not the one on chain)."""
        ballot = self.box.get(self.task_id, key) if self.box is not None else None
        if ballot is None:
            return None
        mine = self.ledger.scores_commitment_of(self.task_id, key[0], key[1], self.ledger.address)
        expected = scores_commitment(ballot.vector.hash, ballot.salt, self.ledger.address, self.task_id, *key)
        if mine != expected:
            return None
        ballot.revealed = self.ledger.revealed_scores(self.task_id, key[0], key[1], self.ledger.address) != ZERO32
        return ballot

    def step(self, key: Key, now: int, score: Callable[[bytes], np.ndarray | None],
             members: Sequence[str]) -> bool:
        rec = self.ledger.scoring(self.task_id, key[0], key[1])
        if not rec.published or key in self.skipped:
            return False
        ballot = self.ballots.get(key)
        if ballot is None and (ballot := self._recovered(key)) is not None:
            self.ballots[key] = ballot
        if ballot is None:
            if now > rec.commit_deadline or \
                    self.ledger.scores_commitment_of(self.task_id, key[0], key[1], self.ledger.address) != ZERO32:
                self.skipped.add(key)  # too late, or committed before a restart (its salt is gone: no reveal)
                return False
            scores = score(rec.evidence_root)
            if scores is None:
                self.skipped.add(key)
                return True
            vector = ScoreVector(self.task_id, key[0], key[1], rec.evidence_root, self.ledger.address,
                                 tuple(members), tuple(float(x) for x in scores))
            ballot = self.ballots[key] = Ballot(vector, self.salt())
            if self.box is not None:
                self.box.put(self.task_id, key, ballot)  # before the commitment: a crash after it can still reveal
            self.ledger.commit_scores(self.task_id, key[0], scores_commitment(
                vector.store(self.blobs), ballot.salt, self.ledger.address, self.task_id, key[0], key[1]))
            return True
        if not ballot.revealed and rec.reveals_open(now) and now <= rec.reveal_deadline:
            ballot.revealed = True
            self.ledger.reveal_scores(self.task_id, key[0], ballot.vector.hash, ballot.salt)
            return True
        return False


__all__ = [
    "ROUND_RULES",
    "BallotBox",
    "CommitteeScoring",
    "History",
    "bare",
    "check_scored",
    "next_scoring_deadline",
    "scored_settlement",
    "scoring_root",
    "settle_ready",
    "validator_scores",
    "visible_rows",
]
