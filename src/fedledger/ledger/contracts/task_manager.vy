# pragma version ~=0.4.3
"""
@title TaskManager
@notice The member registry, the tasks and the round state machine of fedledger.

        Registry: one role per address (trainer, aggregator, validator, task owner), an X25519
        key-agreement public key (the chain is the PKI of secure aggregation) and a metadata
        hash. Trainers, aggregators and validators sit in one selection pool per role: a Fenwick
        tree of weights, weight = stake * (5000 + reputation score) / 10000 (zero below the
        role's minimum stake), so a stake-weighted draw costs O(log n) storage reads.

        Rounds: Open -> Submitted -> Finalized | Rejected, with deadlines. Opening draws a seed
        from chain randomness and, from it, the aggregator (one draw) and the validator
        committee (draws without replacement), and stores them with their weights, so checking
        a claimed membership is one storage read and everyone can recompute the draw off chain
        from the pool weights in the event log. Votes come from committee members only, once
        each; finalization needs at least 2/3 of the committee's weight (and the task's quorum).
        A round whose declared privacy bound would pass the task's budget cannot open.

        Slashing takes slash_bps of the bonded stake, only for faults the chain can see or that
        a quorum of the committee attested: a missed submission deadline (the aggregator,
        MISSED_DEADLINE, at reopen), a missing vote when the vote deadline passed without a
        quorum (each silent committee member, MISSED_VOTE, at reopen), a result the committee's
        quorum rejected (the aggregator, REJECTED_RESULT, at finalize), trainers an accepted
        result names as faulty (FAULTY_UPDATE, at finalize), and a trainer's signed update
        proof shown bad by the dispute contract governance registered for the task (BAD_PROOF,
        through slash_for_proof, only against the proofs root and challenge the round's accepted
        result posted, see `round_binding`). A reopened round gets a new seed and committee; an aggregator
        that missed its deadline or whose result was rejected is not drawn first.

        Per round the chain sees open + submit + one vote per committee member + finalize,
        whatever the number of trainers: the cohort is computed off chain from the seed, and
        everything per trainer sits behind the survivor, reward and reputation roots.
@custom:security The seed mixes block.prevrandao and the previous block hash. A block producer
                 can bias it (withhold a block); production needs a VRF or a randomness beacon.
"""


interface IStaking:
    def stake_of(member: address) -> uint256: view
    def bonded_of(member: address) -> uint256: view
    def min_stake(role: uint256) -> uint256: view
    def slash(
        member: address, amount: uint256, reason: uint256, evidence: bytes32, task_id: uint256, round_id: uint256, attempt: uint256
    ) -> uint256: nonpayable


interface IReputation:
    def score_of(member: address) -> uint256: view
    def post_root(task_id: uint256, round_id: uint256, root: bytes32) -> uint256: nonpayable


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

# governance parameter codes (ParameterSet.param)
P_MAX_REWARD: constant(uint256) = 1
P_TASK_REWARD: constant(uint256) = 2
P_SLASH_BPS: constant(uint256) = 4
P_TASK_QUORUM: constant(uint256) = 5
P_TASK_COMMITTEE: constant(uint256) = 6
P_TASK_PRIVACY_BUDGET: constant(uint256) = 7
P_TASK_DISPUTE: constant(uint256) = 9

MAX_COMMITTEE: constant(uint256) = 32
MAX_FAULTY: constant(uint256) = 32
MAX_DRAWS: constant(uint256) = 128
AGGREGATOR_TRIES: constant(uint256) = 8
POOL_LOG: constant(uint256) = 16
POOL_CAP: constant(uint256) = 65535  # members per pool: indices fit POOL_LOG bits
MIN_QUORUM_BPS: constant(uint256) = 6666
BPS: constant(uint256) = 10000
AGGREGATOR_TAG: constant(bytes32) = keccak256("fedledger/v1/aggregator")
COMMITTEE_TAG: constant(bytes32) = keccak256("fedledger/v1/committee")


struct Member:
    role: uint256
    pubkey: bytes32
    metadata: bytes32
    pool_index: uint256


struct Task:
    owner: address
    spec_hash: bytes32
    reward_per_round: uint256
    rounds: uint256
    privacy_budget: uint256
    privacy_spent: uint256
    committee_size: uint256
    quorum_bps: uint256
    submit_window: uint256
    vote_window: uint256
    finalized_rounds: uint256
    current_round: uint256


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


staking: public(immutable(IStaking))
reputation: public(immutable(IReputation))
rewards: public(immutable(IRewards))
reward_token: public(immutable(IRewardToken))
validator_share_bps: public(immutable(uint256))
_deployer: immutable(address)

governance: public(address)
max_reward_per_round: public(uint256)
slash_bps: public(uint256)

members: public(HashMap[address, Member])
pool_size: public(HashMap[uint256, uint256])
pool_member: public(HashMap[uint256, HashMap[uint256, address]])
pool_total: public(HashMap[uint256, uint256])
pool_eligible: public(HashMap[uint256, uint256])
weight_of: public(HashMap[address, uint256])
_tree: HashMap[uint256, HashMap[uint256, uint256]]

task_count: public(uint256)
tasks: public(HashMap[uint256, Task])
rounds: public(HashMap[uint256, HashMap[uint256, Round]])
_committee: HashMap[uint256, HashMap[uint256, DynArray[address, MAX_COMMITTEE]]]
# keyed by keccak256(task_id, round_id, attempt, member)
_member_weight: HashMap[bytes32, uint256]
_vote: HashMap[bytes32, uint256]  # 0 none, 1 accept, 2 reject
# the trainers the current attempt's result names as faulty (slashed if it is finalized)
_faulty: HashMap[uint256, HashMap[uint256, DynArray[address, MAX_FAULTY]]]
# keccak256(task_id, round_id, trainer): slashed for its update in that round (once, whatever the path)
_punished: HashMap[bytes32, bool]
# keyed by keccak256(task_id, round_id, attempt): the Merkle root of the trainers' signed update
# proof submissions and the linear-check challenge the attempt's result posted (what a dispute checks)
_proofs_root: HashMap[bytes32, bytes32]
_challenge: HashMap[bytes32, uint256]
# the dispute contract governance registered for a task, and back
task_dispute: public(HashMap[uint256, address])
dispute_task: public(HashMap[address, uint256])


event MemberRegistered:
    member: indexed(address)
    role: indexed(uint256)
    pubkey: bytes32
    metadata: bytes32
    pool_index: uint256

event MemberUpdated:
    member: indexed(address)
    pubkey: bytes32
    metadata: bytes32

event PoolWeightChanged:
    role: indexed(uint256)
    member: indexed(address)
    pool_index: uint256
    weight: uint256
    pool_total: uint256

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

event DisputeContractSet:
    task_id: indexed(uint256)
    dispute: indexed(address)

event ParameterSet:
    param: indexed(uint256)
    task_id: indexed(uint256)
    value: uint256


@deploy
def __init__(
    staking_: IStaking,
    reputation_: IReputation,
    rewards_: IRewards,
    reward_token_: IRewardToken,
    max_reward_per_round_: uint256,
    slash_bps_: uint256,
    validator_share_bps_: uint256,
):
    assert slash_bps_ <= BPS and validator_share_bps_ <= BPS, "tasks: basis points above 10000"
    staking = staking_
    reputation = reputation_
    rewards = rewards_
    reward_token = reward_token_
    validator_share_bps = validator_share_bps_
    _deployer = msg.sender
    self.max_reward_per_round = max_reward_per_round_
    self.slash_bps = slash_bps_


@external
def wire(governance: address):
    """@notice One-time wiring by the deployer."""
    assert msg.sender == _deployer, "tasks: only the deployer wires"
    assert self.governance == empty(address), "tasks: already wired"
    assert governance != empty(address), "tasks: zero address"
    self.governance = governance


# ---------------------------------------------------------------- registry


@external
def register(role: uint256, pubkey: bytes32, metadata: bytes32):
    """
    @notice Register the caller with a role and its X25519 key-agreement public key.
    @param role 1 trainer, 2 aggregator, 3 validator, 4 task owner.
    """
    assert role >= TRAINER and role <= TASK_OWNER, "tasks: unknown role"
    assert self.members[msg.sender].role == 0, "tasks: already registered"
    assert pubkey != empty(bytes32), "tasks: empty key-agreement key"
    index: uint256 = 0
    if role != TASK_OWNER:
        index = self.pool_size[role] + 1
        assert index <= POOL_CAP, "tasks: role pool is full"
        self.pool_size[role] = index
        self.pool_member[role][index] = msg.sender
        # the new Fenwick node covers (index - lowbit(index), index]; its own weight is still 0
        low: uint256 = index & unsafe_sub(0, index)
        if low > 1:
            self._tree[role][index] = self._prefix(role, index - 1) - self._prefix(role, index - low)
    self.members[msg.sender] = Member(role=role, pubkey=pubkey, metadata=metadata, pool_index=index)
    log MemberRegistered(member=msg.sender, role=role, pubkey=pubkey, metadata=metadata, pool_index=index)
    self._refresh(msg.sender)


@external
def update_member(pubkey: bytes32, metadata: bytes32):
    """@notice Rotate the caller's key-agreement key or metadata hash."""
    assert self.members[msg.sender].role != 0, "tasks: not a registered member"
    assert pubkey != empty(bytes32), "tasks: empty key-agreement key"
    self.members[msg.sender].pubkey = pubkey
    self.members[msg.sender].metadata = metadata
    log MemberUpdated(member=msg.sender, pubkey=pubkey, metadata=metadata)


@external
@view
def role_of(member: address) -> uint256:
    return self.members[member].role


@external
def on_stake_change(member: address):
    """@notice Staking only: a member's stake changed, recompute its selection weight."""
    assert msg.sender == staking.address, "tasks: only staking"
    self._refresh(member)


@external
def refresh_weight(member: address):
    """@notice Anyone: recompute a member's weight (after a reputation or minimum-stake change)."""
    self._refresh(member)


@internal
def _refresh(member: address):
    pool_index: uint256 = self.members[member].pool_index  # two slots of four: this runs on every slash
    if pool_index == 0:
        return
    role: uint256 = self.members[member].role
    weight: uint256 = 0
    stake: uint256 = staticcall staking.stake_of(member)
    if stake > 0 and stake >= staticcall staking.min_stake(role):
        weight = stake * (5000 + staticcall reputation.score_of(member)) // BPS
    old: uint256 = self.weight_of[member]
    if weight == old:
        return
    self.weight_of[member] = weight
    if weight > old:
        self._tree_add(role, pool_index, weight - old, True)
        self.pool_total[role] += weight - old
    else:
        self._tree_add(role, pool_index, old - weight, False)
        self.pool_total[role] -= old - weight
    if old == 0:
        self.pool_eligible[role] += 1
    elif weight == 0:
        self.pool_eligible[role] -= 1
    log PoolWeightChanged(role=role, member=member, pool_index=pool_index, weight=weight, pool_total=self.pool_total[role])


@internal
def _tree_add(role: uint256, index: uint256, delta: uint256, up: bool):
    # the Fenwick tree grows with the pool: an update touches at most log2(pool size) + 1 nodes
    n: uint256 = self.pool_size[role]
    i: uint256 = index
    for _: uint256 in range(POOL_LOG + 1):
        if i > n:
            break
        if up:
            self._tree[role][i] += delta
        else:
            self._tree[role][i] -= delta
        i += i & unsafe_sub(0, i)


@internal
@view
def _prefix(role: uint256, index: uint256) -> uint256:
    # the sum of the weights of pool members 1..index
    total: uint256 = 0
    i: uint256 = index
    for _: uint256 in range(POOL_LOG + 1):
        if i == 0:
            break
        total += self._tree[role][i]
        i -= i & unsafe_sub(0, i)
    return total


@internal
@view
def _tree_find(role: uint256, target: uint256) -> uint256:
    # the smallest pool index whose prefix sum of weights exceeds target (target < pool_total)
    n: uint256 = self.pool_size[role]
    step: uint256 = 1
    for _: uint256 in range(POOL_LOG):
        if step * 2 > n:
            break
        step *= 2
    pos: uint256 = 0
    rest: uint256 = target
    for _: uint256 in range(POOL_LOG + 1):
        if step == 0:
            break
        nxt: uint256 = pos + step
        if nxt <= n:
            w: uint256 = self._tree[role][nxt]
            if w <= rest:
                pos = nxt
                rest -= w
        step = step >> 1
    return pos + 1


@internal
@view
def _draw(role: uint256, seed: bytes32, tag: bytes32, j: uint256) -> address:
    t: uint256 = convert(keccak256(abi_encode(seed, tag, j)), uint256) % self.pool_total[role]
    return self.pool_member[role][self._tree_find(role, t)]


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
    @notice Create a task. The privacy budget and spend are fixed point with 18 decimals.
    @return The new task id (from 1).
    """
    assert self.members[msg.sender].role == TASK_OWNER, "tasks: only a registered task owner creates tasks"
    assert spec_hash != empty(bytes32), "tasks: empty spec hash"
    assert rounds > 0, "tasks: zero rounds"
    assert reward_per_round <= self.max_reward_per_round, "tasks: reward per round above the maximum"
    assert committee_size >= 1 and committee_size <= MAX_COMMITTEE, "tasks: committee size out of range"
    assert quorum_bps >= MIN_QUORUM_BPS and quorum_bps <= BPS, "tasks: quorum out of range"
    assert submit_window > 0 and vote_window > 0, "tasks: zero window"
    task_id: uint256 = self.task_count + 1
    self.task_count = task_id
    self.tasks[task_id] = Task(
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
    )
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
    )
    return task_id


# ---------------------------------------------------------------- rounds


@external
def open_round(task_id: uint256, privacy_bound: uint256) -> uint256:
    """
    @notice Task owner: open the task's next round.
    @param privacy_bound The task's cumulative privacy spent once this round is finalized, as
           the owner's accountant computes it before the round; it may not pass the budget.
    @return The round id (from 1).
    """
    task: Task = self.tasks[task_id]
    assert task.owner != empty(address), "tasks: unknown task"
    assert msg.sender == task.owner, "tasks: only the task owner opens rounds"
    assert task.finalized_rounds < task.rounds, "tasks: all rounds are finalized"
    if task.current_round != 0:
        assert self.rounds[task_id][task.current_round].status == FINALIZED, "tasks: current round not finalized"
    assert privacy_bound <= task.privacy_budget, "tasks: round would exceed the privacy budget"
    assert privacy_bound >= task.privacy_spent, "tasks: privacy bound below what is already spent"
    round_id: uint256 = task.current_round + 1
    self.tasks[task_id].current_round = round_id
    self.rounds[task_id][round_id].privacy_bound = privacy_bound
    self._start(task_id, round_id, 0, empty(bytes32), empty(address))
    return round_id


@internal
def _start(task_id: uint256, round_id: uint256, attempt: uint256, previous_seed: bytes32, excluded: address):
    seed: bytes32 = keccak256(
        abi_encode(block.prevrandao, blockhash(block.number - 1), task_id, round_id, attempt, previous_seed)
    )
    assert self.pool_total[AGGREGATOR] > 0, "tasks: no eligible aggregator"
    assert self.pool_total[VALIDATOR] > 0, "tasks: no eligible validator"

    aggregator: address = empty(address)
    for j: uint256 in range(AGGREGATOR_TRIES):
        aggregator = self._draw(AGGREGATOR, seed, AGGREGATOR_TAG, j)
        if aggregator != excluded or self.pool_eligible[AGGREGATOR] <= 1:
            break
    if aggregator == excluded and self.pool_eligible[AGGREGATOR] > 1:
        # every try hit it: take the next member with weight after it in pool order (wrapping), so the
        # excluded aggregator is never drawn first when anyone else can be
        after: uint256 = self._prefix(AGGREGATOR, self.members[excluded].pool_index) % self.pool_total[AGGREGATOR]
        aggregator = self.pool_member[AGGREGATOR][self._tree_find(AGGREGATOR, after)]

    target: uint256 = min(self.tasks[task_id].committee_size, self.pool_eligible[VALIDATOR])
    committee: DynArray[address, MAX_COMMITTEE] = []
    total: uint256 = 0
    for j: uint256 in range(MAX_DRAWS):
        if len(committee) >= target:
            break
        v: address = self._draw(VALIDATOR, seed, COMMITTEE_TAG, j)
        if v in committee:
            continue
        committee.append(v)
        w: uint256 = self.weight_of[v]
        total += w
        self._member_weight[self._key(task_id, round_id, attempt, v)] = w

    submit_deadline: uint256 = block.timestamp + self.tasks[task_id].submit_window
    r: Round = empty(Round)
    r.status = OPEN
    r.attempt = attempt
    r.seed = seed
    r.opened_block = block.number
    r.aggregator = aggregator
    r.submit_deadline = submit_deadline
    r.privacy_bound = self.rounds[task_id][round_id].privacy_bound
    r.committee_weight = total
    self.rounds[task_id][round_id] = r
    self._committee[task_id][round_id] = committee
    log RoundOpened(
        task_id=task_id,
        round_id=round_id,
        attempt=attempt,
        seed=seed,
        aggregator=aggregator,
        committee=committee,
        committee_weight=total,
        submit_deadline=submit_deadline,
        privacy_bound=r.privacy_bound,
    )


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
           Only registered trainers can be named; cohort membership is checked off chain.
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
    assert privacy_spent >= self.tasks[task_id].privacy_spent, "tasks: privacy spent below the task's"
    for t: address in faulty:
        assert self.members[t].role == TRAINER, "tasks: faulty member is not a trainer"
    self._faulty[task_id][round_id] = faulty
    binding: bytes32 = self._key(task_id, round_id, r.attempt, empty(address))
    self._proofs_root[binding] = proofs_root
    self._challenge[binding] = challenge
    vote_deadline: uint256 = block.timestamp + self.tasks[task_id].vote_window
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
            (mints the round's reward, posts the reward and reputation roots, records the
            privacy spent, slashes the trainers the result names as faulty). Rejects once
            rejecting weight reaches the same quorum, and slashes the aggregator
            (REJECTED_RESULT); rejects without a slash when every member has voted and neither
            side reached quorum. Reverts otherwise: wait for votes, or `reopen` after the vote
            deadline (which slashes the members that did not vote).
    @return The new status (3 finalized, 4 rejected).
    """
    r: Round = self.rounds[task_id][round_id]
    assert r.status == SUBMITTED, "tasks: round is not awaiting votes"
    quorum_bps: uint256 = self.tasks[task_id].quorum_bps
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
    """Take slash_bps of `member`'s bonded stake (active and unbonding) and refresh its weight."""
    amount: uint256 = (staticcall staking.bonded_of(member)) * self.slash_bps // BPS
    taken: uint256 = extcall staking.slash(member, amount, reason, evidence, task_id, round_id, attempt)
    self._refresh(member)
    return taken


@internal
def _settle(task_id: uint256, round_id: uint256, r: Round):
    self.rounds[task_id][round_id].status = FINALIZED
    task: Task = self.tasks[task_id]
    self.tasks[task_id].finalized_rounds = task.finalized_rounds + 1
    self.tasks[task_id].privacy_spent = r.privacy_spent

    # validators who accepted share validator_share_bps of the reward, paid here (<= 32 mints)
    committee: DynArray[address, MAX_COMMITTEE] = self._committee[task_id][round_id]
    accepted: DynArray[address, MAX_COMMITTEE] = []
    for v: address in committee:
        if self._vote[self._key(task_id, round_id, r.attempt, v)] == 1:
            accepted.append(v)
    share: uint256 = task.reward_per_round * validator_share_bps // BPS // len(accepted)
    if share > 0:
        for v: address in accepted:
            extcall reward_token.mint(v, share)
    pool: uint256 = task.reward_per_round - share * len(accepted)
    if pool > 0 and r.reward_root != empty(bytes32):
        extcall reward_token.mint(rewards.address, pool)
        extcall rewards.post_root(task_id, round_id, r.reward_root, pool)
    else:
        pool = 0
    if r.reputation_root != empty(bytes32):
        extcall reputation.post_root(task_id, round_id, r.reputation_root)
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


@external
def reopen(task_id: uint256, round_id: uint256):
    """
    @notice Anyone: restart a stalled or rejected round with a new seed, aggregator and
            committee.
            - After a missed submission deadline the aggregator is slashed (MISSED_DEADLINE)
              and is not drawn first.
            - After the vote deadline without a quorum either way, every committee member
              that did not vote is slashed (MISSED_VOTE); the aggregator is not.
            - After a rejection the aggregator (slashed by `finalize` if the quorum rejected
              it) is not drawn first.
    """
    r: Round = self.rounds[task_id][round_id]
    reason: uint256 = 0
    slashed: address = empty(address)
    amount: uint256 = 0
    excluded: address = empty(address)
    if r.status == OPEN:
        assert block.timestamp > r.submit_deadline, "tasks: submission deadline not passed"
        reason = MISSED_DEADLINE
        excluded = r.aggregator
        slashed = r.aggregator
        evidence: bytes32 = keccak256(abi_encode(task_id, round_id, r.attempt, r.aggregator, r.submit_deadline))
        amount = self._slash(r.aggregator, SLASH_MISSED_DEADLINE, evidence, task_id, round_id, r.attempt)
    elif r.status == SUBMITTED:
        assert block.timestamp > r.vote_deadline, "tasks: voting deadline not passed"
        quorum_bps: uint256 = self.tasks[task_id].quorum_bps
        assert not self._quorum(r.accept_weight, r.committee_weight, quorum_bps), "tasks: round can be finalized"
        assert not self._quorum(r.reject_weight, r.committee_weight, quorum_bps), "tasks: round can be finalized"
        reason = VOTE_TIMEOUT
        # a missing vote is on chain: the member's vote slot of this attempt is still empty
        for v: address in self._committee[task_id][round_id]:
            if self._vote[self._key(task_id, round_id, r.attempt, v)] == 0:
                evidence: bytes32 = keccak256(abi_encode(task_id, round_id, r.attempt, v, r.vote_deadline))
                amount += self._slash(v, SLASH_MISSED_VOTE, evidence, task_id, round_id, r.attempt)
    else:
        assert r.status == REJECTED, "tasks: round cannot be reopened"
        reason = REJECTED_RESULT
        excluded = r.aggregator
    attempt: uint256 = r.attempt + 1
    log RoundReopened(
        task_id=task_id,
        round_id=round_id,
        attempt=attempt,
        reason=reason,
        slashed=slashed,
        slashed_amount=amount,
        excluded=excluded,
    )
    self._start(task_id, round_id, attempt, r.seed, excluded)


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
    assert msg.sender != empty(address) and self.task_dispute[task_id] == msg.sender, "tasks: only a registered dispute contract slashes for proofs"
    r: Round = self.rounds[task_id][round_id]
    assert r.status == FINALIZED, "tasks: round not finalized"
    assert attempt == r.attempt, "tasks: not the round's final attempt"
    assert self._proofs_root[self._key(task_id, round_id, attempt, empty(address))] != empty(bytes32), "tasks: no proofs root posted"
    assert self.members[offender].role == TRAINER, "tasks: offender is not a trainer"
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


# ---------------------------------------------------------------- governance setters


@internal
def _only_governance():
    assert msg.sender == self.governance, "tasks: only governance"


@internal
@view
def _task_exists(task_id: uint256):
    assert self.tasks[task_id].owner != empty(address), "tasks: unknown task"


@external
def set_max_reward_per_round(new_value: uint256):
    self._only_governance()
    self.max_reward_per_round = new_value
    log ParameterSet(param=P_MAX_REWARD, task_id=0, value=new_value)


@external
def set_task_reward(task_id: uint256, new_value: uint256):
    self._only_governance()
    self._task_exists(task_id)
    assert new_value <= self.max_reward_per_round, "tasks: reward per round above the maximum"
    self.tasks[task_id].reward_per_round = new_value
    log ParameterSet(param=P_TASK_REWARD, task_id=task_id, value=new_value)


@external
def set_slash_bps(new_value: uint256):
    self._only_governance()
    assert new_value <= BPS, "tasks: basis points above 10000"
    self.slash_bps = new_value
    log ParameterSet(param=P_SLASH_BPS, task_id=0, value=new_value)


@external
def set_task_quorum(task_id: uint256, new_value: uint256):
    self._only_governance()
    self._task_exists(task_id)
    assert new_value >= MIN_QUORUM_BPS and new_value <= BPS, "tasks: quorum out of range"
    self.tasks[task_id].quorum_bps = new_value
    log ParameterSet(param=P_TASK_QUORUM, task_id=task_id, value=new_value)


@external
def set_task_committee_size(task_id: uint256, new_value: uint256):
    self._only_governance()
    self._task_exists(task_id)
    assert new_value >= 1 and new_value <= MAX_COMMITTEE, "tasks: committee size out of range"
    self.tasks[task_id].committee_size = new_value
    log ParameterSet(param=P_TASK_COMMITTEE, task_id=task_id, value=new_value)


@external
def set_task_privacy_budget(task_id: uint256, new_value: uint256):
    self._only_governance()
    self._task_exists(task_id)
    assert new_value >= self.tasks[task_id].privacy_spent, "tasks: budget below what is already spent"
    self.tasks[task_id].privacy_budget = new_value
    log ParameterSet(param=P_TASK_PRIVACY_BUDGET, task_id=task_id, value=new_value)


@external
def set_task_dispute(task_id: uint256, dispute: address):
    """
    @notice Governance: the contract allowed to call `slash_for_proof` for a task (the zero
            address removes it). One contract serves one task.
    """
    self._only_governance()
    self._task_exists(task_id)
    old: address = self.task_dispute[task_id]
    if old != empty(address):
        self.dispute_task[old] = 0
    if dispute != empty(address):
        assert self.dispute_task[dispute] == 0, "tasks: dispute contract already serves a task"
        self.dispute_task[dispute] = task_id
    self.task_dispute[task_id] = dispute
    log DisputeContractSet(task_id=task_id, dispute=dispute)
