# pragma version ~=0.4.3
"""
@title settlement
@notice Settling a submitted round once its committee has voted. A quorum of accepting weight
        finalizes it: the reward is paid out of the task's escrow (never more than the owner
        funded; the accepting validators share validator_share_bps of it, the contributors'
        pool goes to `Rewards` under the round's reward root), the reputation root is posted,
        the aggregator and the accepting validators gain score, the privacy spent becomes the
        task's, and the trainers the result names as faulty are slashed (FAULTY_UPDATE, once
        per round). A quorum of rejecting weight rejects it and slashes the aggregator
        (REJECTED_RESULT); a full vote without a quorum either way rejects without a slash.
"""

from . import peers
from . import round_book
from . import slashing
from . import task_book
from . import votes

uses: peers
uses: round_book
uses: slashing
uses: task_book
uses: votes

BPS: constant(uint256) = 10000

validator_share_bps: public(immutable(uint256))


event RoundFinalized:
    task_id: indexed(uint256)
    round_id: indexed(uint256)
    attempt: uint256
    model_hash: bytes32
    accept_weight: uint256
    committee_weight: uint256
    privacy_spent: uint256
    contributor_pool: uint256
    validator_reward: uint256

event RoundRejected:
    task_id: indexed(uint256)
    round_id: indexed(uint256)
    attempt: uint256
    reject_weight: uint256
    committee_weight: uint256
    slashed: address
    slashed_amount: uint256


@deploy
def __init__(validator_share_bps_: uint256):
    assert validator_share_bps_ <= BPS, "settlement: basis points above 10000"
    validator_share_bps = validator_share_bps_


@external
def finalize(task_id: uint256, round_id: uint256) -> uint256:
    """
    @notice Anyone: settle a submitted round. Finalizes once accepting weight reaches quorum
            (pays the round's reward from the escrow, posts the reward and reputation roots,
            records the privacy spent, slashes the trainers the result names as faulty). Rejects
            once rejecting weight reaches the same quorum, and slashes the aggregator
            (REJECTED_RESULT); rejects without a slash when every member has voted and neither
            side reached quorum, or when the quorum accepts an abort report (an empty model hash,
            `round_machine.submit_result`). Reverts otherwise: wait for votes, or `reopen` after the vote
            deadline (which slashes the members that did not vote).
    @return The new status (3 finalized, 4 rejected).
    """
    r: round_book.Round = round_book.rounds[task_id][round_id]
    assert r.status == round_book.SUBMITTED, "settlement: round is not awaiting votes"
    quorum_bps: uint256 = task_book.tasks[task_id].quorum_bps
    accepted: bool = votes._quorum(r.accept_weight, r.committee_weight, quorum_bps)
    if accepted and r.model_hash != empty(bytes32):
        self._settle(task_id, round_id, r)
        return round_book.FINALIZED
    slashed: address = empty(address)
    amount: uint256 = 0
    round_book.rounds[task_id][round_id].status = round_book.REJECTED
    if accepted:
        # an accepted abort report (empty model hash): nobody is slashed or paid; `reopen` redraws
        pass
    elif votes._quorum(r.reject_weight, r.committee_weight, quorum_bps):
        # the committee's quorum attests a fault in the result: the aggregator pays for it
        slashed = r.aggregator
        evidence: bytes32 = keccak256(abi_encode(task_id, round_id, r.attempt, r.model_hash, r.evidence_root))
        slashing._penalize(task_id, slashed)
        amount = slashing._slash(slashed, slashing.SLASH_REJECTED_RESULT, evidence, task_id, round_id, r.attempt)
    else:
        assert r.accept_weight + r.reject_weight == r.committee_weight, "settlement: quorum not reached"
    log RoundRejected(
        task_id=task_id,
        round_id=round_id,
        attempt=r.attempt,
        reject_weight=r.reject_weight,
        committee_weight=r.committee_weight,
        slashed=slashed,
        slashed_amount=amount,
    )
    return round_book.REJECTED


@internal
def _settle(task_id: uint256, round_id: uint256, r: round_book.Round):
    round_book.rounds[task_id][round_id].status = round_book.FINALIZED
    task: task_book.Task = task_book.tasks[task_id]
    task_book.tasks[task_id].finalized_rounds = task.finalized_rounds + 1
    task_book.tasks[task_id].privacy_spent = r.privacy_spent
    # the reward is paid out of the escrow: never more than what the owner funded
    reward: uint256 = min(task.reward_per_round, task.escrow)
    task_book.tasks[task_id].escrow = task.escrow - reward

    # validators who accepted share validator_share_bps of the reward, paid here (<= 32 mints)
    committee: DynArray[address, round_book.MAX_COMMITTEE] = round_book._committee[task_id][round_id]
    accepted: DynArray[address, 33] = []
    for v: address in committee:
        if votes._vote_in(task_id, round_id, r.attempt, v) == votes.ACCEPT:
            accepted.append(v)
    # the contributors' pool is the reward less the validators' part whoever accepted, so the
    # off-chain split (the reward root) divides a known amount exactly; what does not divide
    # among the accepting validators goes back to the escrow
    part: uint256 = reward * validator_share_bps // BPS
    share: uint256 = part // len(accepted)
    if share > 0:
        for v: address in accepted:
            extcall peers.reward_token.mint(v, share)
    task_book.tasks[task_id].escrow += part - share * len(accepted)
    pool: uint256 = reward - part
    # what the reward root pays nobody, or the whole pool without a root, stays in the escrow
    # (returned at close)
    unpaid: uint256 = pool
    if r.reward_root != empty(bytes32):
        unpaid = min(round_book.reward_unpaid[task_id][round_id], pool)
    task_book.tasks[task_id].escrow += unpaid
    pool -= unpaid
    if pool > 0:
        extcall peers.reward_token.mint(peers.rewards.address, pool)
        extcall peers.rewards.post_root(task_id, round_id, r.reward_root, pool)
    if r.reputation_root != empty(bytes32):
        extcall peers.reputation.post_root(task_id, round_id, r.reputation_root)
    # the aggregator and the accepting validators gain reputation in this task
    accepted.append(r.aggregator)
    extcall peers.reputation.adjust(task_id, accepted, True)
    # the accepted result named these trainers as faulty: each is slashed once per round
    for t: address in round_book._faulty[task_id][round_id]:
        if slashing._mark_update_punished(task_id, round_id, t):
            slashing._slash(t, slashing.SLASH_FAULTY_UPDATE, r.evidence_root, task_id, round_id, r.attempt)
    log RoundFinalized(
        task_id=task_id,
        round_id=round_id,
        attempt=r.attempt,
        model_hash=r.model_hash,
        accept_weight=r.accept_weight,
        committee_weight=r.committee_weight,
        privacy_spent=r.privacy_spent,
        contributor_pool=pool,
        validator_reward=share,
    )
