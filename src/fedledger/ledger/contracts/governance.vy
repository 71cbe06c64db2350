# pragma version ~=0.4.3
"""
@title Governance
@notice Stake-weighted governance over a whitelist of parameter changes. Any member whose stake
        at the previous block reaches `proposal_threshold` may propose one action; voting power
        is each voter's active stake at that snapshot block (so stake bought after the proposal
        does not vote). After `voting_period` seconds a proposal that reached `quorum_bps` of the
        total stake at the snapshot, with more for than against, can be queued; after
        `timelock` seconds anyone can execute it, within `GRACE_PERIOD`.
        This contract is also the treasury: slashed stake lands here and only a passed
        TREASURY_GRANT proposal moves it.
"""

from ethereum.ercs import IERC20


interface IStaking:
    def stake_at(member: address, block_number: uint256) -> uint256: view
    def total_stake_at(block_number: uint256) -> uint256: view
    def set_min_stake(role: uint256, amount: uint256): nonpayable


interface ITaskManager:
    def set_max_reward_per_round(new_value: uint256): nonpayable
    def set_task_reward(task_id: uint256, new_value: uint256): nonpayable
    def set_slash_bps(new_value: uint256): nonpayable
    def set_task_quorum(task_id: uint256, new_value: uint256): nonpayable
    def set_task_committee_size(task_id: uint256, new_value: uint256): nonpayable
    def set_task_privacy_budget(task_id: uint256, new_value: uint256): nonpayable
    def set_task_dispute(task_id: uint256, dispute: address): nonpayable
    def set_param(param: uint256, new_value: uint256): nonpayable


# the whitelist: `key` is the task id or the role where the action needs one
MAX_REWARD_PER_ROUND: constant(uint256) = 1
TASK_REWARD: constant(uint256) = 2
MIN_STAKE: constant(uint256) = 3
SLASH_BPS: constant(uint256) = 4
TASK_QUORUM: constant(uint256) = 5
TASK_COMMITTEE_SIZE: constant(uint256) = 6
TASK_PRIVACY_BUDGET: constant(uint256) = 7
TREASURY_GRANT: constant(uint256) = 8
TASK_DISPUTE: constant(uint256) = 9  # key: task id, account: its dispute contract (zero removes it)
TASK_BOUNDS: constant(uint256) = 10  # key: the task manager's parameter code (deposit, window and committee bounds)

GRACE_PERIOD: constant(uint256) = 14 * 86400
BPS: constant(uint256) = 10000


struct Proposal:
    proposer: address
    action: uint256
    key: uint256
    new_value: uint256
    account: address
    snapshot_block: uint256
    vote_end: uint256
    for_votes: uint256
    against_votes: uint256
    eta: uint256
    executed: bool


staking: public(immutable(IStaking))
task_manager: public(immutable(ITaskManager))
token: public(immutable(IERC20))
voting_period: public(immutable(uint256))
timelock: public(immutable(uint256))
quorum_bps: public(immutable(uint256))
proposal_threshold: public(immutable(uint256))

proposal_count: public(uint256)
proposals: public(HashMap[uint256, Proposal])
has_voted: public(HashMap[uint256, HashMap[address, bool]])

event Proposed:
    proposal_id: indexed(uint256)
    proposer: indexed(address)
    action: indexed(uint256)
    key: uint256
    new_value: uint256
    account: address
    snapshot_block: uint256
    vote_end: uint256

event VoteCast:
    proposal_id: indexed(uint256)
    voter: indexed(address)
    support: bool
    weight: uint256

event Queued:
    proposal_id: indexed(uint256)
    eta: uint256

event Executed:
    proposal_id: indexed(uint256)
    action: indexed(uint256)


@deploy
def __init__(
    staking_: IStaking,
    task_manager_: ITaskManager,
    token_: IERC20,
    voting_period_: uint256,
    timelock_: uint256,
    quorum_bps_: uint256,
    proposal_threshold_: uint256,
):
    assert quorum_bps_ > 0 and quorum_bps_ <= BPS, "governance: quorum out of range"
    staking = staking_
    task_manager = task_manager_
    token = token_
    voting_period = voting_period_
    timelock = timelock_
    quorum_bps = quorum_bps_
    proposal_threshold = proposal_threshold_


@external
def propose(action: uint256, key: uint256, new_value: uint256, account: address) -> uint256:
    """@notice Propose one whitelisted action. @return The proposal id (from 1)."""
    assert action >= MAX_REWARD_PER_ROUND and action <= TASK_BOUNDS, "governance: action not whitelisted"
    snapshot: uint256 = block.number - 1
    assert staticcall staking.stake_at(msg.sender, snapshot) >= max(proposal_threshold, 1), "governance: stake below the proposal threshold"
    if action == TREASURY_GRANT:
        assert account != empty(address), "governance: grant to the zero address"
    pid: uint256 = self.proposal_count + 1
    self.proposal_count = pid
    vote_end: uint256 = block.timestamp + voting_period
    self.proposals[pid] = Proposal(
        proposer=msg.sender,
        action=action,
        key=key,
        new_value=new_value,
        account=account,
        snapshot_block=snapshot,
        vote_end=vote_end,
        for_votes=0,
        against_votes=0,
        eta=0,
        executed=False,
    )
    log Proposed(
        proposal_id=pid,
        proposer=msg.sender,
        action=action,
        key=key,
        new_value=new_value,
        account=account,
        snapshot_block=snapshot,
        vote_end=vote_end,
    )
    return pid


@external
def vote(proposal_id: uint256, support: bool):
    """@notice Vote with the caller's stake at the proposal's snapshot block, once."""
    p: Proposal = self.proposals[proposal_id]
    assert p.action != 0, "governance: unknown proposal"
    assert block.timestamp <= p.vote_end, "governance: voting closed"
    assert not self.has_voted[proposal_id][msg.sender], "governance: already voted"
    weight: uint256 = staticcall staking.stake_at(msg.sender, p.snapshot_block)
    assert weight > 0, "governance: no voting power at the snapshot"
    self.has_voted[proposal_id][msg.sender] = True
    if support:
        self.proposals[proposal_id].for_votes = p.for_votes + weight
    else:
        self.proposals[proposal_id].against_votes = p.against_votes + weight
    log VoteCast(proposal_id=proposal_id, voter=msg.sender, support=support, weight=weight)


@external
def queue(proposal_id: uint256):
    """@notice Anyone: queue a passed proposal; it becomes executable after the timelock."""
    p: Proposal = self.proposals[proposal_id]
    assert p.action != 0, "governance: unknown proposal"
    assert block.timestamp > p.vote_end, "governance: voting still open"
    assert p.eta == 0, "governance: already queued"
    total: uint256 = staticcall staking.total_stake_at(p.snapshot_block)
    assert (p.for_votes + p.against_votes) * BPS >= total * quorum_bps, "governance: quorum not reached"
    assert p.for_votes > p.against_votes, "governance: proposal defeated"
    eta: uint256 = block.timestamp + timelock
    self.proposals[proposal_id].eta = eta
    log Queued(proposal_id=proposal_id, eta=eta)


@external
def execute(proposal_id: uint256):
    """@notice Anyone: carry out a queued proposal once its timelock is over."""
    p: Proposal = self.proposals[proposal_id]
    assert p.eta != 0, "governance: not queued"
    assert not p.executed, "governance: already executed"
    assert block.timestamp >= p.eta, "governance: timelock not over"
    assert block.timestamp <= p.eta + GRACE_PERIOD, "governance: proposal expired"
    self.proposals[proposal_id].executed = True
    if p.action == MAX_REWARD_PER_ROUND:
        extcall task_manager.set_max_reward_per_round(p.new_value)
    elif p.action == TASK_REWARD:
        extcall task_manager.set_task_reward(p.key, p.new_value)
    elif p.action == MIN_STAKE:
        extcall staking.set_min_stake(p.key, p.new_value)
    elif p.action == SLASH_BPS:
        extcall task_manager.set_slash_bps(p.new_value)
    elif p.action == TASK_QUORUM:
        extcall task_manager.set_task_quorum(p.key, p.new_value)
    elif p.action == TASK_COMMITTEE_SIZE:
        extcall task_manager.set_task_committee_size(p.key, p.new_value)
    elif p.action == TASK_PRIVACY_BUDGET:
        extcall task_manager.set_task_privacy_budget(p.key, p.new_value)
    elif p.action == TASK_DISPUTE:
        extcall task_manager.set_task_dispute(p.key, p.account)
    elif p.action == TASK_BOUNDS:
        extcall task_manager.set_param(p.key, p.new_value)
    else:
        assert extcall token.transfer(p.account, p.new_value, default_return_value=True), "governance: transfer failed"
    log Executed(proposal_id=proposal_id, action=p.action)
