"""Score commit-reveal on the real `Scores` contract (anvil), and the settlement every party derives from the
revealed vectors, paid and claimed through the real `Rewards` contract.

Attacks performed: a validator copies another's commitment (its reveal cannot match: the commitment binds the
committer's address); a validator that did not compute scores waits for another's reveal to copy it (no reveal
exists before commits close, and one who did not commit cannot reveal); a reveal of another vector than the one
committed. Each ends without a vector for the attacker: agreement 0, no scoring share.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from ledger_fed import TASK, TEST_PARAMS, Fed, h, needs_anvil

from fedledger.core.blobstore import BlobStore
from fedledger.ledger import RoundInfo
from fedledger.ledger.claims import reward_tree
from fedledger.ledger.errors import DeadlineError, InvalidProof, NotAuthorized, NotCommitteeMember, WrongState
from fedledger.protocol.incentives import DEFAULT_SCORE
from fedledger.protocol.scoring import (
    ScoreVector,
    revealed_vectors,
    score_reputation,
    score_settlement,
    scores_commitment,
)

pytestmark = needs_anvil

POOL = TASK.reward_per_round - TASK.reward_per_round * TEST_PARAMS.validator_share_bps // 10_000
ROOT = h("evidence without settlement")


def _publish(fed: Fed) -> RoundInfo:
    info = fed.open()
    fed.at(info.aggregator).publish_scoring(fed.task_id, info.round_id, ROOT)
    return info


def _vector(fed: Fed, info: RoundInfo, validator: str, scores: list[float]) -> ScoreVector:
    return ScoreVector(fed.task_id, info.round_id, info.attempt, ROOT, validator.lower(),
                       tuple(t.address.lower() for t in fed.trainers), tuple(scores))


def _commit(fed: Fed, info: RoundInfo, validator: str, vec: ScoreVector, blobs: BlobStore) -> bytes:
    salt = os.urandom(32)
    fed.at(validator).commit_scores(fed.task_id, info.round_id, scores_commitment(
        vec.store(blobs), salt, validator, fed.task_id, info.round_id, info.attempt))
    return salt


def test_only_the_aggregator_publishes_and_only_the_committee_commits(fed: Fed) -> None:
    info = fed.open()
    outsider = next(v for v in fed.validators if v.address not in info.committee)
    with pytest.raises(NotAuthorized):
        outsider.publish_scoring(fed.task_id, info.round_id, ROOT)
    with pytest.raises(WrongState):  # nothing published yet
        fed.at(info.committee[0]).commit_scores(fed.task_id, info.round_id, h("c"))
    fed.at(info.aggregator).publish_scoring(fed.task_id, info.round_id, ROOT)
    with pytest.raises(NotCommitteeMember):
        outsider.commit_scores(fed.task_id, info.round_id, h("c"))
    rec = fed.ledger.scoring(fed.task_id, info.round_id, info.attempt)
    assert rec.evidence_root == ROOT and rec.committee_size == len(info.committee) and rec.commits == 0
    assert info.submit_deadline > rec.reveal_deadline > rec.commit_deadline


def test_a_copied_score_is_caught_by_commit_reveal(fed: Fed, tmp_path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    info = _publish(fed)
    honest, copier, lazy = info.committee
    vec = _vector(fed, info, honest, [0.4, 0.3, 0.2, 0.0])
    salt = _commit(fed, info, honest, vec, blobs)
    # the copier posts the honest member's commitment as its own
    fed.at(copier).commit_scores(fed.task_id, info.round_id,
                                 fed.ledger.scores_commitment_of(fed.task_id, info.round_id, info.attempt, honest))
    # nobody reveals while a committee member has not committed (the lazy one waits to copy a reveal)
    with pytest.raises(WrongState, match="commits still open"):
        fed.at(honest).reveal_scores(fed.task_id, info.round_id, vec.hash, salt)
    # the contract's commitment rule is the client's
    assert fed.ledger._fn("scores").commitment_for(vec.hash, salt, honest, fed.task_id, info.round_id,
                                                   info.attempt).call() == \
        scores_commitment(vec.hash, salt, honest, fed.task_id, info.round_id, info.attempt)
    # the commit deadline passes without the lazy member: reveals open
    rec = fed.ledger.scoring(fed.task_id, info.round_id, info.attempt)
    fed.ledger.advance_time(rec.commit_deadline - fed.ledger.timestamp + 1)
    with pytest.raises(DeadlineError):
        fed.at(lazy).commit_scores(fed.task_id, info.round_id, h("too late"))
    fed.at(honest).reveal_scores(fed.task_id, info.round_id, vec.hash, salt)
    # the copier knows the honest vector and salt now, yet its copied commitment binds the honest address
    with pytest.raises(InvalidProof):
        fed.at(copier).reveal_scores(fed.task_id, info.round_id, vec.hash, salt)
    # the lazy member copies the revealed vector: it never committed, so it cannot reveal
    with pytest.raises(WrongState, match="no commitment"):
        fed.at(lazy).reveal_scores(fed.task_id, info.round_id, vec.hash, salt)
    with pytest.raises(WrongState, match="already revealed"):
        fed.at(honest).reveal_scores(fed.task_id, info.round_id, vec.hash, salt)
    got = revealed_vectors(fed.ledger, blobs, fed.task_id, info.round_id, info.attempt, info.committee, ROOT,
                           [t.address for t in fed.trainers])
    assert set(got) == {honest}
    weights = {v: 1 for v in info.committee}
    out = score_settlement(POOL, [t.address for t in fed.trainers], got, weights, info.committee,
                           info.aggregator, ())
    assert out.agreement[honest] == 1.0 and out.agreement[copier] == out.agreement[lazy] == 0.0
    assert honest in out.rewards and copier not in out.rewards and lazy not in out.rewards


def test_a_reveal_after_its_deadline_or_of_another_vector_is_refused(fed: Fed, tmp_path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    info = _publish(fed)
    salts = {v: _commit(fed, info, v, _vector(fed, info, v, [1.0, 1.0, 1.0, 1.0]), blobs) for v in info.committee}
    v0, v1, _ = info.committee
    other = _vector(fed, info, v0, [9.0, 0.0, 0.0, 0.0])
    with pytest.raises(InvalidProof):
        fed.at(v0).reveal_scores(fed.task_id, info.round_id, other.store(blobs), salts[v0])
    rec = fed.ledger.scoring(fed.task_id, info.round_id, info.attempt)
    fed.ledger.advance_time(rec.reveal_deadline - fed.ledger.timestamp + 1)
    with pytest.raises(DeadlineError):
        fed.at(v1).reveal_scores(fed.task_id, info.round_id, _vector(fed, info, v1, [1.0] * 4).hash, salts[v1])


def test_consensus_rewards_are_claimed_in_full_and_a_dissenter_earns_less(fed: Fed, tmp_path) -> None:
    """Three validators reveal; one disagrees with the other two. The consensus root is posted with the result,
    finalized, and every share claimed: the claims sum to exactly the round's pool; the free rider (score 0)
    gets nothing; the dissenter gets less than the agreeing validators (here: nothing, below min agreement)."""
    blobs = BlobStore(tmp_path / "blobs")
    info = _publish(fed)
    members = [t.address for t in fed.trainers]
    weights = {v: fed.ledger._fn("task_manager").committee_weight_of(fed.task_id, info.round_id, v).call()
               for v in info.committee}
    # the dissenter is the lightest member and the heavier agreeing one reveals 0.5: a committee draw may weigh one
    # member above the other two together, and the consensus is the stake-weighted median
    dissenter = min(info.committee, key=lambda v: weights[v])
    agreeing = sorted((v for v in info.committee if v != dissenter), key=lambda v: -weights[v])
    assert 2 * weights[dissenter] < sum(weights.values())  # so the heavier agreeing member holds the median
    honest = [0.5, 0.3, 0.2, 0.0]  # the fourth trainer sent a zero update
    plan = {agreeing[0]: honest, agreeing[1]: [0.52, 0.29, 0.19, 0.0],
            dissenter: [0.0, 0.0, 0.1, 0.9]}  # the dissenter favours the free rider
    salts = {v: _commit(fed, info, v, _vector(fed, info, v, s), blobs) for v, s in plan.items()}
    for v, s in plan.items():
        fed.at(v).reveal_scores(fed.task_id, info.round_id, _vector(fed, info, v, s).hash, salts[v])
    vecs = revealed_vectors(fed.ledger, blobs, fed.task_id, info.round_id, info.attempt, info.committee, ROOT,
                            members)
    out = score_settlement(POOL, members, vecs, weights, info.committee, info.aggregator, ())
    assert sum(out.rewards.values()) == POOL
    assert members[3] not in out.rewards  # zero consensus score: zero share
    assert out.rewards.get(dissenter, 0) < min(out.rewards[agreeing[0]], out.rewards[agreeing[1]])
    assert out.agreement[dissenter] < out.agreement[agreeing[0]]
    tree = reward_tree(fed.task_id, info.round_id, out.rewards)
    fed.submit(info, tree=tree)
    fed.vote_all(info)
    fed.owner.finalize(fed.task_id, info.round_id)
    _, pool, _ = fed.ledger.reward_pool(fed.task_id, info.round_id)
    assert pool == POOL
    before = {a: fed.ledger.reward_balance(a) for a in out.rewards}
    for account, amount in out.rewards.items():
        fed.ledger.claim_reward(fed.task_id, info.round_id, amount, tree.proof(account), account=account)
    assert fed.ledger.reward_pool(fed.task_id, info.round_id)[2] == POOL  # claims sum to the round's pool
    assert all(fed.ledger.reward_balance(a) - before[a] == amt for a, amt in out.rewards.items())
    # reputation moves in the documented direction for every role
    rep = score_reputation({}, members, members, (), out, info.aggregator)
    assert rep[members[0]] > DEFAULT_SCORE > rep[members[3]]
    assert rep[info.aggregator] > DEFAULT_SCORE
    assert rep[agreeing[0]] > rep[dissenter]
    assert np.isclose(out.consensus[members[0]], 0.5)
