# pragma version ~=0.4.3
"""
@title round_machine
@notice The round state machine: Sealing -> Open -> Submitted -> (votes, `settlement`)
        Finalized | Rejected, with deadlines and reopening. The task owner opens a round: it
        commits to a future block (nothing of the draw exists yet, so a caller that opens and
        reverts learns nothing); `seal` (anyone) takes the randomness source's value for that
        block once it exists (committing again only if it lapsed) and draws the aggregator and
        the full validator committee from the task's pools as they stood at the commitment
        (frozen by the registry then); a round cannot
        open or seal unless a full committee can be drawn. The aggregator submits the result
        before its deadline. `reopen` restarts a stalled or rejected round, slashing the missed
        deadline or the missing votes (`slashing`, liveness rules). Each round's privacy bound
        derives from the task's plan (spent so far plus the per-round spend, within the budget);
        no round opens once the budget is spent.
"""

from . import dispute_hook
from . import peers
from . import round_book
from . import slashing
from . import task_book
from . import votes
from . import IRegistry

uses: dispute_hook
uses: peers
uses: round_book
uses: slashing
uses: task_book
uses: votes

# roles
TRAINER: constant(uint256) = 1
AGGREGATOR: constant(uint256) = 2
VALIDATOR: constant(uint256) = 3

# reopen reasons (RoundReopened.reason)
MISSED_DEADLINE: constant(uint256) = 1
VOTE_TIMEOUT: constant(uint256) = 2
REJECTED_RESULT: constant(uint256) = 3

SEAL_DELAY: constant(uint256) = 1  # a round commits to block.number + SEAL_DELAY
SEED_TAG: constant(bytes32) = keccak256("fedledger/v1/seed")


event RoundCommitted:
    task_id: indexed(uint256)
    round_id: indexed(uint256)
    attempt: uint256
    commit_block: uint256

event RoundOpened:
    task_id: indexed(uint256)
    round_id: indexed(uint256)
    attempt: uint256
    seed: bytes32
    aggregator: indexed(address)
    committee: DynArray[address, round_book.MAX_COMMITTEE]
    committee_weight: uint256
    submit_deadline: uint256
    privacy_bound: uint256

event ResultSubmitted:
    task_id: indexed(uint256)
    round_id: indexed(uint256)
    attempt: uint256
    aggregator: indexed(address)
    model_hash: bytes32
    evidence_root: bytes32
    survivor_root: bytes32
    survivor_count: uint256
    privacy_spent: uint256
    reputation_root: bytes32
    reward_root: bytes32
    vote_deadline: uint256
    faulty: DynArray[address, round_book.MAX_FAULTY]
    proofs_root: bytes32
    challenge: uint256

event RoundReopened:
    task_id: indexed(uint256)
    round_id: indexed(uint256)
    attempt: uint256
    reason: uint256
    slashed: address
    slashed_amount: uint256
    excluded: address


@internal
@view
def _require_full_draw(task_id: uint256, committee_size: uint256):
    assert staticcall peers.registry.eligible_in(task_id, AGGREGATOR) >= 1, "round_machine: no eligible aggregator joined"
    assert staticcall peers.registry.eligible_in(task_id, VALIDATOR) >= committee_size, "round_machine: too few validators joined for a full committee"


@external
def open_round(task_id: uint256) -> uint256:
    """
    @notice The task owner: open the task's next round. It commits to a future block; `seal`
            draws the round's roles once that block exists. The round's privacy bound (the
            task's cumulative privacy spent once it is finalized, 18 decimals) derives from the
            plan the task fixed at creation: what is spent so far plus the per-round spend,
            within the budget. The owner picks nothing: no bound below an honest round's spend.
            No round opens once the budget is spent.
    @return The round id (from 1).
    """
    task: task_book.Task = task_book.tasks[task_id]
    assert task.owner != empty(address), "round_machine: unknown task"
    assert msg.sender == task.owner, "round_machine: only the task owner opens rounds"
    assert not task.closed, "round_machine: task is closed"
    assert task.finalized_rounds < task.rounds, "round_machine: all rounds are finalized"
    if task.current_round != 0:
        assert round_book.rounds[task_id][task.current_round].status == round_book.FINALIZED, "round_machine: current round not finalized"
    assert task.privacy_spent < task.privacy_budget, "round_machine: round would exceed the privacy budget"
    self._require_full_draw(task_id, task.committee_size)
    round_id: uint256 = task.current_round + 1
    task_book.tasks[task_id].current_round = round_id
    round_book.rounds[task_id][round_id].privacy_bound = min(task.privacy_spent + task.privacy_per_round, task.privacy_budget)
    self._commit(task_id, round_id, 0)
    return round_id


@internal
def _commit(task_id: uint256, round_id: uint256, attempt: uint256):
    commit_block: uint256 = block.number + SEAL_DELAY
    round_book.rounds[task_id][round_id].status = round_book.SEALING
    round_book.rounds[task_id][round_id].attempt = attempt
    # nothing of the next draw exists until the seal: no stale aggregator or committee to read
    round_book.rounds[task_id][round_id].aggregator = empty(address)
    round_book._committee[task_id][round_id] = []
    round_book.rounds[task_id][round_id].commit_block = commit_block
    # the draw reads the aggregator and validator pools as they stand now (stake changes after this
    # take effect from the next commitment on): fixed before the committed block's value exists
    extcall peers.registry.freeze_pools(task_id)
    log RoundCommitted(task_id=task_id, round_id=round_id, attempt=attempt, commit_block=commit_block)


@external
def seal(task_id: uint256, round_id: uint256) -> bool:
    """
    @notice Anyone: once the committed block exists, fix the round's seed from the randomness
            source and draw the aggregator and the full committee from the task's pools as they
            stood at the commitment (the registry froze them then, with their weights: a stake,
            unbond, join, slash or score change since takes effect from the next commitment on).
            If the source's value lapsed (more than 256 blocks for block hashes), commit to a new
            future block instead. The draw is a function of pools and randomness both fixed
            before anyone could know the randomness, and nothing done after can redo it.
    @return True if the round is now open, False if it was committed again.
    """
    r: round_book.Round = round_book.rounds[task_id][round_id]
    assert r.status == round_book.SEALING, "round_machine: round is not sealing"
    assert not task_book.tasks[task_id].closed, "round_machine: task is closed"
    assert block.number > r.commit_block, "round_machine: seal block not mined yet"
    value: bytes32 = staticcall peers.randomness.random_at(r.commit_block)
    if value == empty(bytes32):
        # lapsed: commit to a new future block (and freeze the pools again, before it exists)
        self._commit(task_id, round_id, r.attempt)
        return False
    seed: bytes32 = keccak256(abi_encode(SEED_TAG, value, task_id, round_id, r.attempt, r.seed))
    d: IRegistry.Draw = extcall peers.registry.draw_roles(task_id, seed, r.excluded, task_book.tasks[task_id].committee_size)
    total: uint256 = 0
    for i: uint256 in range(round_book.MAX_COMMITTEE):
        if i >= len(d.committee):
            break
        total += d.weights[i]
        round_book._member_weight[round_book._key(task_id, round_id, r.attempt, d.committee[i])] = d.weights[i]
    aggregator: address = d.aggregator
    committee: DynArray[address, round_book.MAX_COMMITTEE] = d.committee

    submit_deadline: uint256 = block.timestamp + task_book.tasks[task_id].submit_window
    r.status = round_book.OPEN
    r.seed = seed
    r.opened_block = block.number
    r.aggregator = aggregator
    r.submit_deadline = submit_deadline
    r.vote_deadline = 0
    r.model_hash = empty(bytes32)
    r.evidence_root = empty(bytes32)
    r.survivor_root = empty(bytes32)
    r.survivor_count = 0
    r.privacy_spent = 0
    r.reputation_root = empty(bytes32)
    r.reward_root = empty(bytes32)
    r.committee_weight = total
    r.accept_weight = 0
    r.reject_weight = 0
    round_book.rounds[task_id][round_id] = r
    round_book._committee[task_id][round_id] = committee
    log RoundOpened(
        task_id=task_id,
        round_id=round_id,
        attempt=r.attempt,
        seed=seed,
        aggregator=aggregator,
        committee=committee,
        committee_weight=total,
        submit_deadline=submit_deadline,
        privacy_bound=r.privacy_bound,
    )
    return True


@external
def submit_result(
    task_id: uint256,
    round_id: uint256,
    model_hash: bytes32,
    evidence_root: bytes32,
    survivor_root: bytes32,
    survivor_count: uint256,
    privacy_spent: uint256,
    reputation_root: bytes32,
    reward_root: bytes32,
    reward_unpaid: uint256,
    faulty: DynArray[address, round_book.MAX_FAULTY],
    proofs_root: bytes32,
    challenge: uint256,
):
    """
    @notice The round's aggregator posts the result: one transaction, whatever the cohort size.
            An empty `model_hash` reports an aborted attempt instead (too few members answered for
            secure aggregation to finish: silence cannot be proven, so the aggregator shows the
            signed messages it did receive under `evidence_root`). The committee checks and votes
            on it like a result (`settlement`): accepted, the round is rejected without a slash
            and nobody is paid (`reopen` redraws without this aggregator); rejected, the aggregator
            is slashed as for any rejected result.
    @param privacy_spent The task's cumulative privacy spent with this round (18 decimals).
    @param reward_unpaid The part of the contributors' pool the reward root pays nobody (no member
           earned it): returned to the task's escrow if the result is finalized. The committee
           checks it with the rest of the result.
    @param faulty Trainers the aggregator names as faulty (blamed by secure aggregation, or with
           a failed update proof in the evidence). The committee checks the list with the rest
           of the result; if the round is finalized, each is slashed once (FAULTY_UPDATE).
           Only trainers who joined the task can be named; cohort membership is checked off chain.
    @param proofs_root Merkle root (keccak, sorted pairs) of the trainers' signed update proof
           submissions of this attempt (`UpdateDispute` leaves); empty when proofs are not used.
    @param challenge The attempt's linear-check challenge the proofs answer. The committee
           checks both with the rest of the result; a dispute may use them only once the result
           is finalized, so neither the aggregator nor anyone else picks what an honest proof
           is checked against.
    """
    r: round_book.Round = round_book.rounds[task_id][round_id]
    assert r.status == round_book.OPEN, "round_machine: round is not open"
    assert msg.sender == r.aggregator, "round_machine: only the round's aggregator submits"
    assert block.timestamp <= r.submit_deadline, "round_machine: submission deadline passed"
    assert privacy_spent <= r.privacy_bound, "round_machine: privacy spent above the round's bound"
    assert privacy_spent >= task_book.tasks[task_id].privacy_spent, "round_machine: privacy spent below the task's"
    for t: address in faulty:
        assert staticcall peers.registry.role_of(t) == TRAINER, "round_machine: faulty member is not a trainer"
        assert staticcall peers.registry.joined(task_id, t), "round_machine: faulty trainer did not join the task"
    round_book._faulty[task_id][round_id] = faulty
    round_book.reward_unpaid[task_id][round_id] = reward_unpaid
    dispute_hook._bind(task_id, round_id, r.attempt, proofs_root, challenge)
    vote_deadline: uint256 = block.timestamp + task_book.tasks[task_id].vote_window
    r.status = round_book.SUBMITTED
    r.vote_deadline = vote_deadline
    r.model_hash = model_hash
    r.evidence_root = evidence_root
    r.survivor_root = survivor_root
    r.survivor_count = survivor_count
    r.privacy_spent = privacy_spent
    r.reputation_root = reputation_root
    r.reward_root = reward_root
    round_book.rounds[task_id][round_id] = r
    log ResultSubmitted(
        task_id=task_id,
        round_id=round_id,
        attempt=r.attempt,
        aggregator=msg.sender,
        model_hash=model_hash,
        evidence_root=evidence_root,
        survivor_root=survivor_root,
        survivor_count=survivor_count,
        privacy_spent=privacy_spent,
        reputation_root=reputation_root,
        reward_root=reward_root,
        vote_deadline=vote_deadline,
        faulty=faulty,
        proofs_root=proofs_root,
        challenge=challenge,
    )


@external
def reopen(task_id: uint256, round_id: uint256):
    """
    @notice Restart a stalled or rejected round: it commits to a future block and `seal` draws
            a new aggregator and committee. The task owner may reopen as soon as the rules allow;
            anyone else only once the deadline has passed by one more window (so an owner that
            disappears cannot freeze its members' round, and nobody else can hurry it).
            - After a missed submission deadline the aggregator is slashed (MISSED_DEADLINE)
              and is not drawn first.
            - After the vote deadline without a quorum either way, every committee member
              that did not vote is slashed (MISSED_VOTE); the aggregator is not.
            - After a rejection the aggregator (slashed by `finalize` if the quorum rejected
              it) is not drawn first.
            A member is slashed for a missed deadline or vote at most once per round.
    """
    r: round_book.Round = round_book.rounds[task_id][round_id]
    task: task_book.Task = task_book.tasks[task_id]
    is_owner: bool = msg.sender == task.owner
    reason: uint256 = 0
    slashed: address = empty(address)
    amount: uint256 = 0
    excluded: address = empty(address)
    if r.status == round_book.OPEN:
        assert block.timestamp > r.submit_deadline, "round_machine: submission deadline not passed"
        assert is_owner or block.timestamp > r.submit_deadline + task.submit_window, "round_machine: only the task owner reopens before the grace period"
        reason = MISSED_DEADLINE
        excluded = r.aggregator
        slashed = r.aggregator
        evidence: bytes32 = keccak256(abi_encode(task_id, round_id, r.attempt, r.aggregator, r.submit_deadline))
        amount = slashing._liveness_slash(r.aggregator, slashing.SLASH_MISSED_DEADLINE, evidence, task_id, round_id, r.attempt, task.submit_window)
    elif r.status == round_book.SUBMITTED:
        assert block.timestamp > r.vote_deadline, "round_machine: voting deadline not passed"
        assert is_owner or block.timestamp > r.vote_deadline + task.vote_window, "round_machine: only the task owner reopens before the grace period"
        assert not votes._quorum(r.accept_weight, r.committee_weight, task.quorum_bps), "round_machine: round can be finalized"
        assert not votes._quorum(r.reject_weight, r.committee_weight, task.quorum_bps), "round_machine: round can be finalized"
        reason = VOTE_TIMEOUT
        # a missing vote is on chain: the member's vote slot of this attempt is still empty
        for v: address in round_book._committee[task_id][round_id]:
            if votes._vote_in(task_id, round_id, r.attempt, v) == votes.NO_VOTE:
                evidence: bytes32 = keccak256(abi_encode(task_id, round_id, r.attempt, v, r.vote_deadline))
                amount += slashing._liveness_slash(v, slashing.SLASH_MISSED_VOTE, evidence, task_id, round_id, r.attempt, task.vote_window)
    else:
        assert r.status == round_book.REJECTED, "round_machine: round cannot be reopened"
        assert is_owner or block.timestamp > r.vote_deadline + task.vote_window, "round_machine: only the task owner reopens before the grace period"
        reason = REJECTED_RESULT
        excluded = r.aggregator
    assert not task.closed, "round_machine: task is closed"
    attempt: uint256 = r.attempt + 1
    round_book.rounds[task_id][round_id].excluded = excluded
    log RoundReopened(
        task_id=task_id,
        round_id=round_id,
        attempt=attempt,
        reason=reason,
        slashed=slashed,
        slashed_amount=amount,
        excluded=excluded,
    )
    self._commit(task_id, round_id, attempt)
