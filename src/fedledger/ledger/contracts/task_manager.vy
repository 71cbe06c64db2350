# pragma version ~=0.4.3
"""
@title TaskManager
@notice The tasks and the round state machine of fedledger, composed of modules with one
        concern each: `task_params` (governed parameters and task bounds), `task_book` (tasks,
        their escrow and governance's per-task setters); the rounds (commit, seal, submit, vote,
        finalize, reopen), settlement and slashing live here. Members, task joins and the
        selection pools are the `Registry` contract's; randomness comes through
        `IRandomnessSource`.

        Tasks cost their owner something and bind only those who join them. `create_task`
        takes the owner's deposit and the whole reward budget (reward_per_round * rounds) in
        utility tokens into escrow; windows, committee size and quorum must sit within the
        governance bounds, and the two windows together stay below the staking unbonding delay
        (nobody can unbond out of a round's slash). Trainers, aggregators and validators opt in
        with `join_task`: each task has its own selection pool per role (`pools`, a Fenwick tree,
        O(log n) per draw), weight = stake * (5000 + the member's score in that task) / 10000,
        zero below the role's minimum stake. Only joined members are drawn, named or slashed.

        Rounds: Sealing -> Open -> Submitted -> Finalized | Rejected, with deadlines. Opening
        (and reopening) commits to a future block; `seal` (anyone) takes the randomness source's
        value for that block once it exists (committing again if it lapsed) and draws the
        aggregator and the full validator committee from the task's pools; a round cannot open
        or seal unless a full committee can be drawn. A caller that opens and reverts learns
        nothing: the draw does not exist yet. Votes come from committee members only, once
        each; finalization needs at least 2/3 of the committee's weight (and the task's quorum).
        A round whose declared privacy bound would pass the task's budget cannot open, and the
        budget cannot change once a round has opened.

        Slashing takes slash_bps of the bonded stake, only for faults the chain can see or that
        a quorum of the committee attested, and only from members who joined the task: a missed
        submission deadline (the aggregator, MISSED_DEADLINE, at reopen), a missing vote when
        the vote deadline passed without a quorum (each silent committee member, MISSED_VOTE,
        at reopen) - both at most once per member and round, and only if the task's window is at
        least the governance minimum - a result the committee's quorum rejected (the aggregator,
        REJECTED_RESULT, at finalize), joined trainers an accepted result names as faulty
        (FAULTY_UPDATE, at finalize), and a trainer's signed update proof shown bad by the
        task's dispute contract (BAD_PROOF, through slash_for_proof, only against the proofs root
        and challenge the round's accepted result posted, see `round_binding`).

        Rewards are paid from the escrow: a finalized round mints at most reward_per_round of
        the reward token against the escrowed budget, so the reward token's supply never passes
        what owners funded. `close_task` returns the unspent budget; the deposit comes back too,
        unless the owner abandons a task after opening rounds and before finishing them (then it
        goes to the treasury).

        Per round the chain sees open + seal + submit + one vote per committee member + finalize,
        whatever the number of trainers.
@custom:security Draws use the randomness source's value of a block committed before it
                 existed (default: its block hash). The proposer of that block can withhold it
                 (forfeiting its reward) to force a re-commit: one bit of bias per block it
                 proposes. Production deployments plug a beacon or a VRF (IRandomnessSource).
"""

from ethereum.ercs import IERC20
from . import IRandomnessSource
from . import task_params
from . import task_book

initializes: task_params
initializes: task_book[task_params := task_params]
exports: (
    task_params.governance,
    task_params.max_reward_per_round,
    task_params.slash_bps,
    task_params.task_deposit,
    task_params.min_window,
    task_params.max_window,
    task_params.min_committee,
    task_params.max_committee,
    task_params.set_max_reward_per_round,
    task_params.set_slash_bps,
    task_params.set_param,
    task_book.task_count,
    task_book.tasks,
    task_book.total_funded,
    task_book.task_dispute,
    task_book.dispute_task,
    task_book.set_task_reward,
    task_book.set_task_quorum,
    task_book.set_task_committee_size,
    task_book.set_task_privacy_budget,
    task_book.set_task_dispute,
)


interface IStaking:
    def stake_of(member: address) -> uint256: view
    def bonded_of(member: address) -> uint256: view
    def min_stake(role: uint256) -> uint256: view
    def unbonding_delay() -> uint256: view
    def treasury() -> address: view
    def slash(
        member: address, amount: uint256, reason: uint256, evidence: bytes32, task_id: uint256, round_id: uint256, attempt: uint256
    ) -> uint256: nonpayable


struct Draw:
    aggregator: address
    committee: DynArray[address, 32]
    weights: DynArray[uint256, 32]


interface IRegistry:
    def role_of(member: address) -> uint256: view
    def joined(task_id: uint256, member: address) -> bool: view
    def eligible_in(task_id: uint256, role: uint256) -> uint256: view
    def draw_roles(task_id: uint256, seed: bytes32, excluded: address, committee_size: uint256) -> Draw: view
    def pools_version(task_id: uint256) -> uint256: view


interface IReputation:
    def score_of(task_id: uint256, member: address) -> uint256: view
    def post_root(task_id: uint256, round_id: uint256, root: bytes32) -> uint256: nonpayable
    def adjust(task_id: uint256, members: DynArray[address, 33], up: bool): nonpayable


interface IRewards:
    def post_root(task_id: uint256, round_id: uint256, root: bytes32, amount: uint256): nonpayable


interface IRewardToken:
    def mint(receiver: address, amount: uint256): nonpayable


# roles
TRAINER: constant(uint256) = 1
AGGREGATOR: constant(uint256) = 2
VALIDATOR: constant(uint256) = 3
TASK_OWNER: constant(uint256) = 4

# round status
NO_ROUND: constant(uint256) = 0
OPEN: constant(uint256) = 1
SUBMITTED: constant(uint256) = 2
FINALIZED: constant(uint256) = 3
REJECTED: constant(uint256) = 4
SEALING: constant(uint256) = 5  # committed to a future block; `seal` draws the roles

# reopen reasons
MISSED_DEADLINE: constant(uint256) = 1
VOTE_TIMEOUT: constant(uint256) = 2
REJECTED_RESULT: constant(uint256) = 3

# slash reasons (Staking.Slashed.reason); the first three line up with the reopen reasons
SLASH_MISSED_DEADLINE: constant(uint256) = 1  # the aggregator did not submit in time
SLASH_MISSED_VOTE: constant(uint256) = 2  # a committee member did not vote in time (no quorum)
SLASH_REJECTED_RESULT: constant(uint256) = 3  # the committee's quorum rejected the aggregator's result
SLASH_FAULTY_UPDATE: constant(uint256) = 4  # a trainer the finalized result names as faulty
SLASH_BAD_PROOF: constant(uint256) = 5  # a trainer's signed update proof disputed on chain

MAX_COMMITTEE: constant(uint256) = 32
MAX_FAULTY: constant(uint256) = 32
SEAL_DELAY: constant(uint256) = 1  # a round commits to block.number + SEAL_DELAY
MIN_QUORUM_BPS: constant(uint256) = 6666
BPS: constant(uint256) = 10000
SEED_TAG: constant(bytes32) = keccak256("fedledger/v1/seed")


struct Round:
    status: uint256
    attempt: uint256
    seed: bytes32
    opened_block: uint256
    aggregator: address
    submit_deadline: uint256
    vote_deadline: uint256
    privacy_bound: uint256
    model_hash: bytes32
    evidence_root: bytes32
    survivor_root: bytes32
    survivor_count: uint256
    privacy_spent: uint256
    reputation_root: bytes32
    reward_root: bytes32
    committee_weight: uint256
    accept_weight: uint256
    reject_weight: uint256
    commit_block: uint256
    excluded: address
    pools_version: uint256


staking: public(immutable(IStaking))
reputation: public(immutable(IReputation))
rewards: public(immutable(IRewards))
reward_token: public(immutable(IRewardToken))
utility_token: public(immutable(IERC20))
randomness: public(immutable(IRandomnessSource))
registry: public(immutable(IRegistry))
validator_share_bps: public(immutable(uint256))
_deployer: immutable(address)

rounds: public(HashMap[uint256, HashMap[uint256, Round]])
_committee: HashMap[uint256, HashMap[uint256, DynArray[address, MAX_COMMITTEE]]]
# keyed by keccak256(task_id, round_id, attempt, member)
_member_weight: HashMap[bytes32, uint256]
_vote: HashMap[bytes32, uint256]  # 0 none, 1 accept, 2 reject
# the trainers the current attempt's result names as faulty (slashed if it is finalized)
_faulty: HashMap[uint256, HashMap[uint256, DynArray[address, MAX_FAULTY]]]
# keccak256(task_id, round_id, trainer): slashed for its update in that round (once, whatever the path)
_punished: HashMap[bytes32, bool]
# keccak256(task_id, round_id, member, "liveness"): slashed for a missed deadline or vote in that round
_liveness_slashed: HashMap[bytes32, bool]
# keyed by keccak256(task_id, round_id, attempt): the Merkle root of the trainers' signed update
# proof submissions and the linear-check challenge the attempt's result posted (what a dispute checks)
_proofs_root: HashMap[bytes32, bytes32]
_challenge: HashMap[bytes32, uint256]
event TaskCreated:
    task_id: indexed(uint256)
    owner: indexed(address)
    spec_hash: bytes32
    reward_per_round: uint256
    rounds: uint256
    privacy_budget: uint256
    committee_size: uint256
    quorum_bps: uint256
    submit_window: uint256
    vote_window: uint256
    escrow: uint256
    deposit: uint256

event TaskClosed:
    task_id: indexed(uint256)
    refund: uint256
    deposit_returned: uint256
    deposit_forfeited: uint256

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
    committee: DynArray[address, MAX_COMMITTEE]
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
    faulty: DynArray[address, MAX_FAULTY]
    proofs_root: bytes32
    challenge: uint256

event Voted:
    task_id: indexed(uint256)
    round_id: indexed(uint256)
    voter: indexed(address)
    attempt: uint256
    accept: bool
    weight: uint256

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

event RoundReopened:
    task_id: indexed(uint256)
    round_id: indexed(uint256)
    attempt: uint256
    reason: uint256
    slashed: address
    slashed_amount: uint256
    excluded: address

@deploy
def __init__(
    staking_: IStaking,
    reputation_: IReputation,
    rewards_: IRewards,
    reward_token_: IRewardToken,
    utility_token_: IERC20,
    randomness_: IRandomnessSource,
    registry_: IRegistry,
    max_reward_per_round_: uint256,
    slash_bps_: uint256,
    validator_share_bps_: uint256,
    bounds: uint256[5],
):
    """
    @param bounds task deposit, min window, max window, min committee, max committee.
    """
    assert validator_share_bps_ <= BPS, "tasks: basis points above 10000"
    staking = staking_
    reputation = reputation_
    rewards = rewards_
    reward_token = reward_token_
    utility_token = utility_token_
    randomness = randomness_
    registry = registry_
    validator_share_bps = validator_share_bps_
    _deployer = msg.sender
    task_params.__init__(max_reward_per_round_, slash_bps_, bounds, staticcall staking_.unbonding_delay())


@external
def wire(governance: address):
    """@notice One-time wiring by the deployer."""
    assert msg.sender == _deployer, "tasks: only the deployer wires"
    assert task_params.governance == empty(address), "tasks: already wired"
    assert governance != empty(address), "tasks: zero address"
    task_params.governance = governance


@external
@view
def joinable(task_id: uint256) -> bool:
    """@notice Whether members may join the task (it exists and is not closed)."""
    return task_book.tasks[task_id].owner != empty(address) and not task_book.tasks[task_id].closed


@external
@view
def leavable(task_id: uint256) -> bool:
    """@notice Whether members may leave the task: it is closed, or no round of it is under way."""
    task: task_book.Task = task_book.tasks[task_id]
    return task.closed or task.current_round == 0 or self.rounds[task_id][task.current_round].status == FINALIZED


# ---------------------------------------------------------------- tasks


@external
def create_task(
    spec_hash: bytes32,
    reward_per_round: uint256,
    rounds: uint256,
    privacy_budget: uint256,
    committee_size: uint256,
    quorum_bps: uint256,
    submit_window: uint256,
    vote_window: uint256,
) -> uint256:
    """
    @notice Create a task: the caller (a registered task owner) pays the deposit and the whole
            reward budget, reward_per_round * rounds, in utility tokens into escrow (approve
            this contract first). The privacy budget and spend are fixed point with 18 decimals.
    @return The new task id (from 1).
    """
    assert staticcall registry.role_of(msg.sender) == TASK_OWNER, "tasks: only a registered task owner creates tasks"
    assert spec_hash != empty(bytes32), "tasks: empty spec hash"
    assert rounds > 0, "tasks: zero rounds"
    assert quorum_bps >= MIN_QUORUM_BPS and quorum_bps <= BPS, "tasks: quorum out of range"
    task_params._check_task(reward_per_round, committee_size, submit_window, vote_window)
    budget: uint256 = reward_per_round * rounds
    deposit: uint256 = task_params.task_deposit
    if budget + deposit > 0:
        assert extcall utility_token.transferFrom(msg.sender, self, budget + deposit, default_return_value=True), "tasks: transfer failed"
    task_id: uint256 = task_book._add(task_book.Task(
        owner=msg.sender,
        spec_hash=spec_hash,
        reward_per_round=reward_per_round,
        rounds=rounds,
        privacy_budget=privacy_budget,
        privacy_spent=0,
        committee_size=committee_size,
        quorum_bps=quorum_bps,
        submit_window=submit_window,
        vote_window=vote_window,
        finalized_rounds=0,
        current_round=0,
        escrow=budget,
        deposit=deposit,
        closed=False,
    ))
    log TaskCreated(
        task_id=task_id,
        owner=msg.sender,
        spec_hash=spec_hash,
        reward_per_round=reward_per_round,
        rounds=rounds,
        privacy_budget=privacy_budget,
        committee_size=committee_size,
        quorum_bps=quorum_bps,
        submit_window=submit_window,
        vote_window=vote_window,
        escrow=budget,
        deposit=deposit,
    )
    return task_id


@external
def close_task(task_id: uint256):
    """
    @notice task_book.Task owner: close the task when no result is pending (no round, the current one
            finalized, or one still sealing or rejected). The unspent reward budget goes back to
            the owner, and so does the deposit unless the owner abandons the task after opening
            a round and before all rounds are finalized: then the deposit goes to the treasury.
    """
    task: task_book.Task = task_book.tasks[task_id]
    assert task.owner != empty(address), "tasks: unknown task"
    assert msg.sender == task.owner, "tasks: only the task owner closes the task"
    assert not task.closed, "tasks: task is closed"
    status: uint256 = self.rounds[task_id][task.current_round].status
    assert status == NO_ROUND or status == FINALIZED or status == SEALING or status == REJECTED, "tasks: a result is pending"
    task_book.tasks[task_id].closed = True
    task_book.tasks[task_id].escrow = 0
    returned: uint256 = task.deposit
    forfeited: uint256 = 0
    if task.current_round != 0 and task.finalized_rounds < task.rounds:
        forfeited = task.deposit
        returned = 0
    if task.escrow + returned > 0:
        assert extcall utility_token.transfer(task.owner, task.escrow + returned, default_return_value=True), "tasks: transfer failed"
    if forfeited > 0:
        assert extcall utility_token.transfer(staticcall staking.treasury(), forfeited, default_return_value=True), "tasks: transfer failed"
    log TaskClosed(task_id=task_id, refund=task.escrow, deposit_returned=returned, deposit_forfeited=forfeited)


# ---------------------------------------------------------------- rounds


@internal
@view
def _require_full_draw(task_id: uint256, committee_size: uint256):
    assert staticcall registry.eligible_in(task_id, AGGREGATOR) >= 1, "tasks: no eligible aggregator joined"
    assert staticcall registry.eligible_in(task_id, VALIDATOR) >= committee_size, "tasks: too few validators joined for a full committee"


@external
def open_round(task_id: uint256, privacy_bound: uint256) -> uint256:
    """
    @notice task_book.Task owner: open the task's next round. It commits to a future block; `seal` draws
            the round's roles once that block exists.
    @param privacy_bound The task's cumulative privacy spent once this round is finalized, as
           the owner's accountant computes it before the round; it may not pass the budget.
    @return The round id (from 1).
    """
    task: task_book.Task = task_book.tasks[task_id]
    assert task.owner != empty(address), "tasks: unknown task"
    assert msg.sender == task.owner, "tasks: only the task owner opens rounds"
    assert not task.closed, "tasks: task is closed"
    assert task.finalized_rounds < task.rounds, "tasks: all rounds are finalized"
    if task.current_round != 0:
        assert self.rounds[task_id][task.current_round].status == FINALIZED, "tasks: current round not finalized"
    assert privacy_bound <= task.privacy_budget, "tasks: round would exceed the privacy budget"
    assert privacy_bound >= task.privacy_spent, "tasks: privacy bound below what is already spent"
    self._require_full_draw(task_id, task.committee_size)
    round_id: uint256 = task.current_round + 1
    task_book.tasks[task_id].current_round = round_id
    self.rounds[task_id][round_id].privacy_bound = privacy_bound
    self._commit(task_id, round_id, 0)
    return round_id


@internal
def _commit(task_id: uint256, round_id: uint256, attempt: uint256):
    commit_block: uint256 = block.number + SEAL_DELAY
    self.rounds[task_id][round_id].status = SEALING
    self.rounds[task_id][round_id].attempt = attempt
    # nothing of the next draw exists until the seal: no stale aggregator or committee to read
    self.rounds[task_id][round_id].aggregator = empty(address)
    self._committee[task_id][round_id] = []
    self.rounds[task_id][round_id].commit_block = commit_block
    self.rounds[task_id][round_id].pools_version = staticcall registry.pools_version(task_id)
    log RoundCommitted(task_id=task_id, round_id=round_id, attempt=attempt, commit_block=commit_block)


@external
def seal(task_id: uint256, round_id: uint256) -> bool:
    """
    @notice Anyone: once the committed block exists, fix the round's seed from the randomness
            source and draw the aggregator and the full committee from the task's pools. If the
            source's value lapsed (more than 256 blocks for block hashes), or if any of the
            task's pools changed since the commitment (a stake, unbond, join or score change made
            after the committed block's value could be known), commit to a new future block
            instead: the draw is a function of pools and randomness both fixed before anyone
            could know the randomness.
    @return True if the round is now open, False if it was committed again.
    """
    r: Round = self.rounds[task_id][round_id]
    assert r.status == SEALING, "tasks: round is not sealing"
    assert not task_book.tasks[task_id].closed, "tasks: task is closed"
    assert block.number > r.commit_block, "tasks: seal block not mined yet"
    value: bytes32 = staticcall randomness.random_at(r.commit_block)
    if value == empty(bytes32) or staticcall registry.pools_version(task_id) != r.pools_version:
        # lapsed, or a pool changed after the commitment (a stake or join made once the block's
        # value could be known would steer the draw): commit to a new future block
        self._commit(task_id, round_id, r.attempt)
        return False
    seed: bytes32 = keccak256(abi_encode(SEED_TAG, value, task_id, round_id, r.attempt, r.seed))
    d: Draw = staticcall registry.draw_roles(task_id, seed, r.excluded, task_book.tasks[task_id].committee_size)
    total: uint256 = 0
    for i: uint256 in range(MAX_COMMITTEE):
        if i >= len(d.committee):
            break
        total += d.weights[i]
        self._member_weight[self._key(task_id, round_id, r.attempt, d.committee[i])] = d.weights[i]
    aggregator: address = d.aggregator
    committee: DynArray[address, MAX_COMMITTEE] = d.committee

    submit_deadline: uint256 = block.timestamp + task_book.tasks[task_id].submit_window
    r.status = OPEN
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
    self.rounds[task_id][round_id] = r
    self._committee[task_id][round_id] = committee
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
    faulty: DynArray[address, MAX_FAULTY],
    proofs_root: bytes32,
    challenge: uint256,
):
    """
    @notice The round's aggregator posts the result: one transaction, whatever the cohort size.
    @param privacy_spent The task's cumulative privacy spent with this round (18 decimals).
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
    r: Round = self.rounds[task_id][round_id]
    assert r.status == OPEN, "tasks: round is not open"
    assert msg.sender == r.aggregator, "tasks: only the round's aggregator submits"
    assert block.timestamp <= r.submit_deadline, "tasks: submission deadline passed"
    assert model_hash != empty(bytes32), "tasks: empty model hash"
    assert privacy_spent <= r.privacy_bound, "tasks: privacy spent above the round's bound"
    assert privacy_spent >= task_book.tasks[task_id].privacy_spent, "tasks: privacy spent below the task's"
    for t: address in faulty:
        assert staticcall registry.role_of(t) == TRAINER, "tasks: faulty member is not a trainer"
        assert staticcall registry.joined(task_id, t), "tasks: faulty trainer did not join the task"
    self._faulty[task_id][round_id] = faulty
    binding: bytes32 = self._key(task_id, round_id, r.attempt, empty(address))
    self._proofs_root[binding] = proofs_root
    self._challenge[binding] = challenge
    vote_deadline: uint256 = block.timestamp + task_book.tasks[task_id].vote_window
    r.status = SUBMITTED
    r.vote_deadline = vote_deadline
    r.model_hash = model_hash
    r.evidence_root = evidence_root
    r.survivor_root = survivor_root
    r.survivor_count = survivor_count
    r.privacy_spent = privacy_spent
    r.reputation_root = reputation_root
    r.reward_root = reward_root
    self.rounds[task_id][round_id] = r
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
def vote(task_id: uint256, round_id: uint256, accept: bool):
    """@notice A committee member accepts or rejects the submitted result, once."""
    r: Round = self.rounds[task_id][round_id]
    assert r.status == SUBMITTED, "tasks: round is not awaiting votes"
    assert block.timestamp <= r.vote_deadline, "tasks: voting deadline passed"
    key: bytes32 = self._key(task_id, round_id, r.attempt, msg.sender)
    weight: uint256 = self._member_weight[key]
    assert weight > 0, "tasks: not a committee member"
    assert self._vote[key] == 0, "tasks: already voted"
    if accept:
        self._vote[key] = 1
        self.rounds[task_id][round_id].accept_weight = r.accept_weight + weight
    else:
        self._vote[key] = 2
        self.rounds[task_id][round_id].reject_weight = r.reject_weight + weight
    log Voted(task_id=task_id, round_id=round_id, voter=msg.sender, attempt=r.attempt, accept=accept, weight=weight)


@internal
@view
def _quorum(weight: uint256, total: uint256, quorum_bps: uint256) -> bool:
    return weight * 3 >= total * 2 and weight * BPS >= total * quorum_bps


@external
def finalize(task_id: uint256, round_id: uint256) -> uint256:
    """
    @notice Anyone: settle a submitted round. Finalizes once accepting weight reaches quorum
            (pays the round's reward from the escrow, posts the reward and reputation roots,
            records the privacy spent, slashes the trainers the result names as faulty). Rejects
            once rejecting weight reaches the same quorum, and slashes the aggregator
            (REJECTED_RESULT); rejects without a slash when every member has voted and neither
            side reached quorum. Reverts otherwise: wait for votes, or `reopen` after the vote
            deadline (which slashes the members that did not vote).
    @return The new status (3 finalized, 4 rejected).
    """
    r: Round = self.rounds[task_id][round_id]
    assert r.status == SUBMITTED, "tasks: round is not awaiting votes"
    quorum_bps: uint256 = task_book.tasks[task_id].quorum_bps
    if self._quorum(r.accept_weight, r.committee_weight, quorum_bps):
        self._settle(task_id, round_id, r)
        return FINALIZED
    slashed: address = empty(address)
    amount: uint256 = 0
    self.rounds[task_id][round_id].status = REJECTED
    if self._quorum(r.reject_weight, r.committee_weight, quorum_bps):
        # the committee's quorum attests a fault in the result: the aggregator pays for it
        slashed = r.aggregator
        evidence: bytes32 = keccak256(abi_encode(task_id, round_id, r.attempt, r.model_hash, r.evidence_root))
        self._penalize(task_id, slashed)
        amount = self._slash(slashed, SLASH_REJECTED_RESULT, evidence, task_id, round_id, r.attempt)
    else:
        assert r.accept_weight + r.reject_weight == r.committee_weight, "tasks: quorum not reached"
    log RoundRejected(
        task_id=task_id,
        round_id=round_id,
        attempt=r.attempt,
        reject_weight=r.reject_weight,
        committee_weight=r.committee_weight,
        slashed=slashed,
        slashed_amount=amount,
    )
    return REJECTED


@internal
def _slash(member: address, reason: uint256, evidence: bytes32, task_id: uint256, round_id: uint256, attempt: uint256) -> uint256:
    """Take slash_bps of `member`'s bonded stake (active and unbonding); staking has the registry refresh its weights."""
    amount: uint256 = (staticcall staking.bonded_of(member)) * task_params.slash_bps // BPS
    return extcall staking.slash(member, amount, reason, evidence, task_id, round_id, attempt)


@internal
def _penalize(task_id: uint256, member: address):
    """Lower a member's score in the task (its weights are refreshed by the slash that follows)."""
    one: DynArray[address, 33] = [member]
    extcall reputation.adjust(task_id, one, False)


@internal
def _settle(task_id: uint256, round_id: uint256, r: Round):
    self.rounds[task_id][round_id].status = FINALIZED
    task: task_book.Task = task_book.tasks[task_id]
    task_book.tasks[task_id].finalized_rounds = task.finalized_rounds + 1
    task_book.tasks[task_id].privacy_spent = r.privacy_spent
    # the reward is paid out of the escrow: never more than what the owner funded
    reward: uint256 = min(task.reward_per_round, task.escrow)
    task_book.tasks[task_id].escrow = task.escrow - reward

    # validators who accepted share validator_share_bps of the reward, paid here (<= 32 mints)
    committee: DynArray[address, MAX_COMMITTEE] = self._committee[task_id][round_id]
    accepted: DynArray[address, 33] = []
    for v: address in committee:
        if self._vote[self._key(task_id, round_id, r.attempt, v)] == 1:
            accepted.append(v)
    share: uint256 = reward * validator_share_bps // BPS // len(accepted)
    if share > 0:
        for v: address in accepted:
            extcall reward_token.mint(v, share)
    pool: uint256 = reward - share * len(accepted)
    if pool > 0 and r.reward_root != empty(bytes32):
        extcall reward_token.mint(rewards.address, pool)
        extcall rewards.post_root(task_id, round_id, r.reward_root, pool)
    else:
        # no reward root: the contributors' part stays in the escrow (returned at close)
        task_book.tasks[task_id].escrow += pool
        pool = 0
    if r.reputation_root != empty(bytes32):
        extcall reputation.post_root(task_id, round_id, r.reputation_root)
    # the aggregator and the accepting validators gain reputation in this task
    accepted.append(r.aggregator)
    extcall reputation.adjust(task_id, accepted, True)
    # the accepted result named these trainers as faulty: each is slashed once per round
    for t: address in self._faulty[task_id][round_id]:
        key: bytes32 = keccak256(abi_encode(task_id, round_id, t))
        if self._punished[key]:
            continue
        self._punished[key] = True
        self._slash(t, SLASH_FAULTY_UPDATE, r.evidence_root, task_id, round_id, r.attempt)
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


@internal
def _liveness_slash(member: address, reason: uint256, evidence: bytes32, task_id: uint256, round_id: uint256, attempt: uint256, window: uint256) -> uint256:
    """A missed deadline or vote: slashed once per member and round, and only if the window given was at least the minimum."""
    if window < task_params.min_window:
        return 0
    key: bytes32 = keccak256(abi_encode(task_id, round_id, member, "liveness"))
    if self._liveness_slashed[key]:
        return 0
    self._liveness_slashed[key] = True
    self._penalize(task_id, member)
    return self._slash(member, reason, evidence, task_id, round_id, attempt)


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
    r: Round = self.rounds[task_id][round_id]
    task: task_book.Task = task_book.tasks[task_id]
    is_owner: bool = msg.sender == task.owner
    reason: uint256 = 0
    slashed: address = empty(address)
    amount: uint256 = 0
    excluded: address = empty(address)
    if r.status == OPEN:
        assert block.timestamp > r.submit_deadline, "tasks: submission deadline not passed"
        assert is_owner or block.timestamp > r.submit_deadline + task.submit_window, "tasks: only the task owner reopens before the grace period"
        reason = MISSED_DEADLINE
        excluded = r.aggregator
        slashed = r.aggregator
        evidence: bytes32 = keccak256(abi_encode(task_id, round_id, r.attempt, r.aggregator, r.submit_deadline))
        amount = self._liveness_slash(r.aggregator, SLASH_MISSED_DEADLINE, evidence, task_id, round_id, r.attempt, task.submit_window)
    elif r.status == SUBMITTED:
        assert block.timestamp > r.vote_deadline, "tasks: voting deadline not passed"
        assert is_owner or block.timestamp > r.vote_deadline + task.vote_window, "tasks: only the task owner reopens before the grace period"
        assert not self._quorum(r.accept_weight, r.committee_weight, task.quorum_bps), "tasks: round can be finalized"
        assert not self._quorum(r.reject_weight, r.committee_weight, task.quorum_bps), "tasks: round can be finalized"
        reason = VOTE_TIMEOUT
        # a missing vote is on chain: the member's vote slot of this attempt is still empty
        for v: address in self._committee[task_id][round_id]:
            if self._vote[self._key(task_id, round_id, r.attempt, v)] == 0:
                evidence: bytes32 = keccak256(abi_encode(task_id, round_id, r.attempt, v, r.vote_deadline))
                amount += self._liveness_slash(v, SLASH_MISSED_VOTE, evidence, task_id, round_id, r.attempt, task.vote_window)
    else:
        assert r.status == REJECTED, "tasks: round cannot be reopened"
        assert is_owner or block.timestamp > r.vote_deadline + task.vote_window, "tasks: only the task owner reopens before the grace period"
        reason = REJECTED_RESULT
        excluded = r.aggregator
    assert not task.closed, "tasks: task is closed"
    attempt: uint256 = r.attempt + 1
    self.rounds[task_id][round_id].excluded = excluded
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


@external
def slash_for_proof(task_id: uint256, round_id: uint256, attempt: uint256, offender: address, evidence: bytes32) -> uint256:
    """
    @notice The dispute contract governance registered for `task_id`: slash a trainer whose
            signed update proof, included in the proofs root that attempt `attempt` of the
            round posted, it found to be an offence (BAD_PROOF). Only for a finalized round and
            its final attempt: the committee's quorum accepted that root and challenge, so a
            minority (or the aggregator alone) cannot frame an honest proof by posting another
            challenge. The amount is slash_bps of the trainer's bonded stake, as for every
            slash, and a trainer is slashed at most once per round for its update (here or as
            FAULTY_UPDATE).
    @dev The dispute contract checks the leaf's inclusion in `round_binding`'s root and the
         offender's signature over (chain, dispute contract, task, round, attempt, proof).
    @return The amount taken.
    """
    assert msg.sender != empty(address) and task_book.task_dispute[task_id] == msg.sender, "tasks: only a registered dispute contract slashes for proofs"
    r: Round = self.rounds[task_id][round_id]
    assert r.status == FINALIZED, "tasks: round not finalized"
    assert attempt == r.attempt, "tasks: not the round's final attempt"
    assert self._proofs_root[self._key(task_id, round_id, attempt, empty(address))] != empty(bytes32), "tasks: no proofs root posted"
    assert staticcall registry.role_of(offender) == TRAINER, "tasks: offender is not a trainer"
    assert staticcall registry.joined(task_id, offender), "tasks: offender did not join the task"
    key: bytes32 = keccak256(abi_encode(task_id, round_id, offender))
    assert not self._punished[key], "tasks: update already slashed this round"
    self._punished[key] = True
    return self._slash(offender, SLASH_BAD_PROOF, evidence, task_id, round_id, attempt)


@internal
@pure
def _key(task_id: uint256, round_id: uint256, attempt: uint256, member: address) -> bytes32:
    return keccak256(abi_encode(task_id, round_id, attempt, member))


@external
@view
def round_binding(task_id: uint256, round_id: uint256) -> (bytes32, uint256, uint256):
    """
    @notice (proofs root, challenge, attempt) the round's current attempt posted with its result
            (empty before a result). Disputes check proofs against these, and only once the
            round is finalized.
    """
    attempt: uint256 = self.rounds[task_id][round_id].attempt
    binding: bytes32 = self._key(task_id, round_id, attempt, empty(address))
    return self._proofs_root[binding], self._challenge[binding], attempt


@external
@view
def committee(task_id: uint256, round_id: uint256) -> DynArray[address, MAX_COMMITTEE]:
    """@notice The current attempt's validator committee."""
    return self._committee[task_id][round_id]


@external
@view
def committee_weight_of(task_id: uint256, round_id: uint256, member: address) -> uint256:
    """@notice `member`'s voting weight in the current attempt (zero: not a committee member)."""
    return self._member_weight[self._key(task_id, round_id, self.rounds[task_id][round_id].attempt, member)]


@external
@view
def faulty(task_id: uint256, round_id: uint256) -> DynArray[address, MAX_FAULTY]:
    """@notice The trainers the current attempt's result names as faulty."""
    return self._faulty[task_id][round_id]


@external
@view
def is_punished(task_id: uint256, round_id: uint256, trainer: address) -> bool:
    """@notice Whether `trainer` was slashed for its update in this round (FAULTY_UPDATE or BAD_PROOF)."""
    return self._punished[keccak256(abi_encode(task_id, round_id, trainer))]


@external
@view
def vote_of(task_id: uint256, round_id: uint256, member: address) -> uint256:
    """@notice 0 no vote, 1 accept, 2 reject (current attempt)."""
    return self._vote[self._key(task_id, round_id, self.rounds[task_id][round_id].attempt, member)]
