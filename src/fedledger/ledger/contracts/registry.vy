# pragma version ~=0.4.3
"""
@title Registry
@notice Who is who, and who joined which task. One role per address (trainer, aggregator,
        validator, task owner), an X25519 key-agreement public key (the chain is the PKI of
        secure aggregation) and a metadata hash.
        Members opt in to tasks (`join_task`, at most MAX_JOINED at once): each task has its own
        selection pool per role (`pools`: a Fenwick tree, O(log n) per weight change and per
        draw), weight = stake * (5000 + the member's score in that task) / 10000, zero below the
        role's minimum stake. The task manager draws a round's aggregator and committee here
        (`draw_roles`), from the task's pools only: a member that did not join a task is never
        drawn for it, and so never slashed by it.
        Each member may also publish where its node listens and the SHA-256 fingerprint of its
        node's TLS certificate (`set_endpoint`): the chain is the PKI of the network transport too.
@custom:security A member may leave a task only between its rounds (or once it is closed), so
                 nobody drawn or in a cohort walks out of a round it may be slashed in.
"""

from . import ITaskManager
from . import pools

initializes: pools
exports: (pools.size, pools.member_at, pools.index_of, pools.total, pools.eligible, pools.weight_in, pools.frozen)


interface IStaking:
    def stake_of(member: address) -> uint256: view
    def min_stake(role: uint256) -> uint256: view


interface IReputation:
    def score_of(task_id: uint256, member: address) -> uint256: view


TRAINER: constant(uint256) = 1
AGGREGATOR: constant(uint256) = 2
VALIDATOR: constant(uint256) = 3
TASK_OWNER: constant(uint256) = 4
MAX_JOINED: constant(uint256) = 4
MAX_COMMITTEE: constant(uint256) = 32
MAX_DRAWS: constant(uint256) = 128
MAX_ENDPOINT: constant(uint256) = 128
AGGREGATOR_TRIES: constant(uint256) = 8
BPS: constant(uint256) = 10000
AGGREGATOR_TAG: constant(bytes32) = keccak256("fedledger/v1/aggregator")
COMMITTEE_TAG: constant(bytes32) = keccak256("fedledger/v1/committee")


struct Member:
    role: uint256
    pubkey: bytes32
    metadata: bytes32


struct Endpoint:
    url: String[MAX_ENDPOINT]
    tls_fingerprint: bytes32


struct Draw:
    aggregator: address
    committee: DynArray[address, MAX_COMMITTEE]
    weights: DynArray[uint256, MAX_COMMITTEE]


staking: public(immutable(IStaking))
reputation: public(immutable(IReputation))
_deployer: immutable(address)
task_manager: public(address)

members: public(HashMap[address, Member])
# registrations per role: a member's number in its role, in registration order (a label, not a pool)
role_count: public(HashMap[uint256, uint256])
joined: public(HashMap[uint256, HashMap[address, bool]])
# where a member's node listens ("host:port") and the SHA-256 of its DER TLS certificate
endpoints: public(HashMap[address, Endpoint])
_joined_tasks: HashMap[address, DynArray[uint256, MAX_JOINED]]


event MemberRegistered:
    member: indexed(address)
    role: indexed(uint256)
    pubkey: bytes32
    metadata: bytes32
    pool_index: uint256  # the member's number in its role (0 for task owners)

event MemberUpdated:
    member: indexed(address)
    pubkey: bytes32
    metadata: bytes32

event EndpointSet:
    member: indexed(address)
    url: String[MAX_ENDPOINT]
    tls_fingerprint: bytes32

event TaskJoined:
    task_id: indexed(uint256)
    member: indexed(address)
    role: indexed(uint256)

event TaskLeft:
    task_id: indexed(uint256)
    member: indexed(address)
    role: indexed(uint256)


@deploy
def __init__(staking_: IStaking, reputation_: IReputation):
    staking = staking_
    reputation = reputation_
    _deployer = msg.sender


@external
def wire(task_manager: address):
    """@notice One-time wiring by the deployer."""
    assert msg.sender == _deployer, "registry: only the deployer wires"
    assert self.task_manager == empty(address), "registry: already wired"
    assert task_manager != empty(address), "registry: zero address"
    self.task_manager = task_manager


@external
def register(role: uint256, pubkey: bytes32, metadata: bytes32):
    """
    @notice Register the caller with a role and its X25519 key-agreement public key.
    @param role 1 trainer, 2 aggregator, 3 validator, 4 task owner.
    """
    assert role >= TRAINER and role <= TASK_OWNER, "registry: unknown role"
    assert self.members[msg.sender].role == 0, "registry: already registered"
    assert pubkey != empty(bytes32), "registry: empty key-agreement key"
    self.members[msg.sender] = Member(role=role, pubkey=pubkey, metadata=metadata)
    number: uint256 = 0
    if role != TASK_OWNER:
        number = self.role_count[role] + 1
        self.role_count[role] = number
    log MemberRegistered(member=msg.sender, role=role, pubkey=pubkey, metadata=metadata, pool_index=number)


@external
def update_member(pubkey: bytes32, metadata: bytes32):
    """
    @notice Rotate the caller's key-agreement key or metadata hash, only while it has joined no
            task: every signed message of a round is checked against the key its sender had
            when the round opened, and the metadata bounds a trainer's weight, so neither may
            change under a task (a member leaves its tasks between rounds first).
    """
    assert self.members[msg.sender].role != 0, "registry: not a registered member"
    assert len(self._joined_tasks[msg.sender]) == 0, "registry: leave every task before changing the key or the metadata"
    assert pubkey != empty(bytes32), "registry: empty key-agreement key"
    self.members[msg.sender].pubkey = pubkey
    self.members[msg.sender].metadata = metadata
    log MemberUpdated(member=msg.sender, pubkey=pubkey, metadata=metadata)


@external
def set_endpoint(url: String[MAX_ENDPOINT], tls_fingerprint: bytes32):
    """
    @notice Publish (or move, or rotate the certificate of) the caller's node: peers connect to
            `url` and accept only a TLS certificate whose SHA-256 is `tls_fingerprint`. Unlike
            the key-agreement key it may change under a task: it signs nothing of a round.
    """
    assert self.members[msg.sender].role != 0, "registry: not a registered member"
    assert len(url) > 0, "registry: empty endpoint"
    assert tls_fingerprint != empty(bytes32), "registry: empty TLS fingerprint"
    self.endpoints[msg.sender] = Endpoint(url=url, tls_fingerprint=tls_fingerprint)
    log EndpointSet(member=msg.sender, url=url, tls_fingerprint=tls_fingerprint)


@external
@view
def role_of(member: address) -> uint256:
    return self.members[member].role


@external
@view
def joined_tasks(member: address) -> DynArray[uint256, MAX_JOINED]:
    return self._joined_tasks[member]


@external
def join_task(task_id: uint256):
    """
    @notice Opt in to a task with the caller's role and stake: from now on the caller can be
            drawn (aggregator, validator) or be in a cohort (trainer) of the task's rounds, and
            the task's rules may slash its stake.
    """
    role: uint256 = self.members[msg.sender].role
    assert role >= TRAINER and role <= VALIDATOR, "registry: only trainers, aggregators and validators join tasks"
    assert staticcall ITaskManager(self.task_manager).joinable(task_id), "registry: unknown or closed task"
    assert not self.joined[task_id][msg.sender], "registry: already joined"
    assert len(self._joined_tasks[msg.sender]) < MAX_JOINED, "registry: too many joined tasks"
    # a member joins with the stake the task's rules may slash: a stakeless address could fill a pool for free
    stake: uint256 = staticcall staking.stake_of(msg.sender)
    assert stake > 0 and stake >= staticcall staking.min_stake(role), "registry: stake at least the role's minimum before joining a task"
    self.joined[task_id][msg.sender] = True
    self._joined_tasks[msg.sender].append(task_id)
    pools._enter(self._pool(task_id, role), msg.sender)
    log TaskJoined(task_id=task_id, member=msg.sender, role=role)
    self._refresh_in(task_id, msg.sender)


@external
def leave_task(task_id: uint256):
    """@notice Opt out of a task between its rounds (or once it is closed)."""
    assert self.joined[task_id][msg.sender], "registry: not joined"
    assert staticcall ITaskManager(self.task_manager).leavable(task_id), "registry: cannot leave during a round"
    role: uint256 = self.members[msg.sender].role
    self.joined[task_id][msg.sender] = False
    kept: DynArray[uint256, MAX_JOINED] = []
    for t: uint256 in self._joined_tasks[msg.sender]:
        if t != task_id:
            kept.append(t)
    self._joined_tasks[msg.sender] = kept
    pools._set_weight(self._pool(task_id, role), msg.sender, 0)
    log TaskLeft(task_id=task_id, member=msg.sender, role=role)


@external
def on_stake_change(member: address):
    """@notice Staking only (stake, unbond, slash): recompute the member's weight in every joined task."""
    assert msg.sender == staking.address, "registry: only staking"
    for t: uint256 in self._joined_tasks[member]:
        self._refresh_in(t, member)


@external
def refresh_weight(task_id: uint256, member: address):
    """@notice Anyone: recompute a joined member's weight in a task (after a score or minimum-stake change)."""
    if self.joined[task_id][member]:
        self._refresh_in(task_id, member)


@internal
@pure
def _pool(task_id: uint256, role: uint256) -> uint256:
    return task_id * 4 + role


@internal
def _refresh_in(task_id: uint256, member: address):
    role: uint256 = self.members[member].role
    weight: uint256 = 0
    stake: uint256 = staticcall staking.stake_of(member)
    if stake > 0 and stake >= staticcall staking.min_stake(role):
        weight = stake * (5000 + staticcall reputation.score_of(task_id, member)) // BPS
    pools._set_weight(self._pool(task_id, role), member, weight)


@external
@view
def eligible_in(task_id: uint256, role: uint256) -> uint256:
    """@notice How many joined members of a role have weight in the task."""
    return pools.eligible[self._pool(task_id, role)]


@external
def freeze_pools(task_id: uint256):
    """
    @notice The task manager, when a round of the task commits to a future block: fix the task's
            aggregator and validator pools for the draw. `draw_roles` reads them as they stand
            now, with these weights, whatever joins, stake, unbonding, slashes or scores change
            before the seal (those take effect from the next commitment on): nobody who learns
            the committed block's randomness can steer the draw by touching the pools. The draw
            (`draw_roles`) thaws them.
    """
    assert msg.sender == self.task_manager, "registry: only the task manager"
    pools._freeze(self._pool(task_id, AGGREGATOR))
    pools._freeze(self._pool(task_id, VALIDATOR))


@external
def draw_roles(task_id: uint256, seed: bytes32, excluded: address, committee_size: uint256) -> Draw:
    """
    @notice A round's aggregator and committee (with their weights) from the task's pools as
            they stood at the task's last `freeze_pools` (the round's commitment); the task manager
            only, at the seal. Thaws the pools once drawn (nothing needs the snapshot any more).
            The aggregator is draw 0 under the aggregator tag, redrawn up to 8 times while it
            is `excluded`, then the next member with weight after it in pool order. The
            committee takes draws 0, 1, ... under the committee tag, skipping repeats; if 128
            draws do not fill it (very uneven weights) it walks on in pool order from the last
            draw. Reverts unless an aggregator and `committee_size` validators can be drawn.
    """
    assert msg.sender == self.task_manager, "registry: only the task manager"
    agg_pool: uint256 = self._pool(task_id, AGGREGATOR)
    val_pool: uint256 = self._pool(task_id, VALIDATOR)
    agg_eligible: uint256 = pools._frozen_eligible(agg_pool)
    assert agg_eligible >= 1, "registry: no eligible aggregator joined"
    assert pools._frozen_eligible(val_pool) >= committee_size, "registry: too few validators joined for a full committee"
    out: Draw = empty(Draw)
    aggregator: address = empty(address)
    for j: uint256 in range(AGGREGATOR_TRIES):
        aggregator = pools._draw(agg_pool, seed, AGGREGATOR_TAG, j)
        if aggregator != excluded or agg_eligible <= 1:
            break
    if aggregator == excluded and agg_eligible > 1:
        aggregator = pools._next_after(agg_pool, excluded)
    out.aggregator = aggregator
    last: address = empty(address)
    for j: uint256 in range(MAX_DRAWS + 2 * MAX_COMMITTEE):
        if len(out.committee) >= committee_size:
            break
        v: address = empty(address)
        if j < MAX_DRAWS:
            v = pools._draw(val_pool, seed, COMMITTEE_TAG, j)
        else:
            v = pools._next_after(val_pool, last)
        last = v
        if v in out.committee:
            continue
        out.committee.append(v)
        out.weights.append(pools._frozen_weight(val_pool, v))
    assert len(out.committee) == committee_size, "registry: too few validators joined for a full committee"
    pools._thaw(agg_pool)
    pools._thaw(val_pool)
    return out
