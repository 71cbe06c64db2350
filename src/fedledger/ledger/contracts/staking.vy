# pragma version ~=0.4.3
"""
@title Staking
@notice Holds members' utility-token stake. Each member has one role (in the task manager's
        registry) and the role has a minimum stake. Unstaking is two steps: `unbond` moves stake
        out of the active balance at once (it no longer counts for selection or voting) and
        `withdraw` pays it out after `unbonding_delay` seconds; stake that is unbonding can still be
        slashed. Only the task manager slashes, always with a reason code, an evidence hash and
        the task, round and attempt it concerns, and slashed tokens go to the treasury, an
        address only governance can change. Proof disputes reach this contract through the
        task manager too (`TaskManager.slash_for_proof`), so this contract trusts one slasher.
        Every change of a member's active stake is checkpointed by block number so governance can
        read voting power at a snapshot block.
@custom:security `unbonding_delay` must exceed a round's submit + vote windows, so a member
                 cannot escape a slash by leaving during the round it misbehaves in.
"""

from ethereum.ercs import IERC20


interface IRegistry:
    def role_of(member: address) -> uint256: view
    def on_stake_change(member: address): nonpayable


MAX_ROLE: constant(uint256) = 4
AMOUNT_BITS: constant(uint256) = 160
AMOUNT_MASK: constant(uint256) = (1 << AMOUNT_BITS) - 1
# checkpoints of the total live under this key
_TOTAL: constant(address) = empty(address)

token: public(immutable(IERC20))
unbonding_delay: public(immutable(uint256))
_deployer: immutable(address)

registry: public(address)
task_manager: public(address)
governance: public(address)
treasury: public(address)
min_stake: public(HashMap[uint256, uint256])
stake_of: public(HashMap[address, uint256])
unbonding_of: public(HashMap[address, uint256])
release_time: public(HashMap[address, uint256])
total_staked: public(uint256)
# one slot per checkpoint: block number << AMOUNT_BITS | amount (a slash or stake writes one new slot, not two)
_checkpoints: HashMap[address, HashMap[uint256, uint256]]
_checkpoint_count: HashMap[address, uint256]

event Staked:
    member: indexed(address)
    amount: uint256
    stake: uint256

event Unbonding:
    member: indexed(address)
    amount: uint256
    stake: uint256
    release_time: uint256

event Withdrawn:
    member: indexed(address)
    amount: uint256

event Slashed:
    member: indexed(address)
    amount: uint256
    reason: indexed(uint256)
    evidence: bytes32
    treasury: address
    task_id: indexed(uint256)
    round_id: uint256
    attempt: uint256

event MinStakeSet:
    role: indexed(uint256)
    amount: uint256

event TreasurySet:
    treasury: indexed(address)


@deploy
def __init__(token_: IERC20, unbonding_delay_: uint256, min_stakes: uint256[MAX_ROLE]):
    """
    @param token_ The utility token.
    @param unbonding_delay_ Seconds between `unbond` and the earliest `withdraw`.
    @param min_stakes Minimum stake for roles 1..4 (trainer, aggregator, validator, task owner).
    """
    token = token_
    unbonding_delay = unbonding_delay_
    _deployer = msg.sender
    for i: uint256 in range(MAX_ROLE):
        self.min_stake[i + 1] = min_stakes[i]


@external
def wire(registry: address, task_manager: address, governance: address):
    """
    @notice One-time wiring by the deployer: the registry (roles, told of every stake change),
            the task manager (the only slasher) and governance. The treasury starts as the
            governance contract.
    """
    assert msg.sender == _deployer, "staking: only the deployer wires"
    assert self.task_manager == empty(address), "staking: already wired"
    assert registry != empty(address) and task_manager != empty(address) and governance != empty(address), "staking: zero address"
    self.registry = registry
    self.task_manager = task_manager
    self.governance = governance
    self.treasury = governance
    log TreasurySet(treasury=governance)


@external
def stake(amount: uint256):
    """@notice Add `amount` (pulled with `transferFrom`) to the caller's active stake."""
    role: uint256 = staticcall IRegistry(self.registry).role_of(msg.sender)
    assert role != 0, "staking: not a registered member"
    assert amount > 0, "staking: zero amount"
    new_stake: uint256 = self.stake_of[msg.sender] + amount
    assert new_stake >= self.min_stake[role], "staking: below the role's minimum stake"
    assert extcall token.transferFrom(msg.sender, self, amount, default_return_value=True), "staking: transfer failed"
    self._set_stake(msg.sender, new_stake)
    log Staked(member=msg.sender, amount=amount, stake=new_stake)
    extcall IRegistry(self.registry).on_stake_change(msg.sender)


@external
def unbond(amount: uint256):
    """
    @notice Start unbonding `amount` of the caller's active stake. What stays active must be zero
            or at least the role's minimum. A new unbond restarts the delay for all that is pending.
    """
    assert amount > 0, "staking: zero amount"
    current: uint256 = self.stake_of[msg.sender]
    assert amount <= current, "staking: amount exceeds the active stake"
    rest: uint256 = current - amount
    role: uint256 = staticcall IRegistry(self.registry).role_of(msg.sender)
    assert rest == 0 or rest >= self.min_stake[role], "staking: remaining stake below the role's minimum"
    self._set_stake(msg.sender, rest)
    self.unbonding_of[msg.sender] += amount
    release: uint256 = block.timestamp + unbonding_delay
    self.release_time[msg.sender] = release
    log Unbonding(member=msg.sender, amount=amount, stake=rest, release_time=release)
    extcall IRegistry(self.registry).on_stake_change(msg.sender)


@external
def withdraw():
    """@notice Pay out all of the caller's unbonded stake once the delay is over."""
    amount: uint256 = self.unbonding_of[msg.sender]
    assert amount > 0, "staking: nothing to withdraw"
    assert block.timestamp >= self.release_time[msg.sender], "staking: unbonding delay not over"
    self.unbonding_of[msg.sender] = 0
    assert extcall token.transfer(msg.sender, amount, default_return_value=True), "staking: transfer failed"
    log Withdrawn(member=msg.sender, amount=amount)


@external
def slash(
    member: address, amount: uint256, reason: uint256, evidence: bytes32, task_id: uint256, round_id: uint256, attempt: uint256
) -> uint256:
    """
    @notice Take up to `amount` from `member` (active stake first, then unbonding) and send it to
            the treasury. Only the task manager can slash; the registry recomputes the member's
            selection weights.
            `task_id`, `round_id` and `attempt` locate the offence; they are logged, not checked.
    @return The amount actually taken.
    """
    assert msg.sender == self.task_manager, "staking: only the task manager slashes"
    assert reason != 0, "staking: a slash needs a reason code"
    active: uint256 = self.stake_of[member]
    from_active: uint256 = min(amount, active)
    from_unbonding: uint256 = min(amount - from_active, self.unbonding_of[member])
    if from_active > 0:
        self._set_stake(member, active - from_active)
    if from_unbonding > 0:
        self.unbonding_of[member] -= from_unbonding
    taken: uint256 = from_active + from_unbonding
    if taken > 0:
        assert extcall token.transfer(self.treasury, taken, default_return_value=True), "staking: transfer failed"
    log Slashed(
        member=member,
        amount=taken,
        reason=reason,
        evidence=evidence,
        treasury=self.treasury,
        task_id=task_id,
        round_id=round_id,
        attempt=attempt,
    )
    extcall IRegistry(self.registry).on_stake_change(member)
    return taken


@external
def set_min_stake(role: uint256, amount: uint256):
    """@notice Governance: the minimum stake of a role (1..4)."""
    assert msg.sender == self.governance, "staking: only governance"
    assert role >= 1 and role <= MAX_ROLE, "staking: unknown role"
    self.min_stake[role] = amount
    log MinStakeSet(role=role, amount=amount)


@external
def set_treasury(treasury: address):
    """@notice Governance: where slashed stake goes."""
    assert msg.sender == self.governance, "staking: only governance"
    assert treasury != empty(address), "staking: zero address"
    self.treasury = treasury
    log TreasurySet(treasury=treasury)


@external
@view
def bonded_of(member: address) -> uint256:
    """@notice Active plus unbonding stake: everything that can still be slashed."""
    return self.stake_of[member] + self.unbonding_of[member]


@external
@view
def stake_at(member: address, block_number: uint256) -> uint256:
    """@notice `member`'s active stake at the end of block `block_number` (a past block)."""
    assert block_number < block.number, "staking: snapshot block not yet final"
    return self._lookup(member, block_number)


@external
@view
def total_stake_at(block_number: uint256) -> uint256:
    """@notice The total active stake at the end of block `block_number` (a past block)."""
    assert block_number < block.number, "staking: snapshot block not yet final"
    return self._lookup(_TOTAL, block_number)


@internal
def _set_stake(member: address, amount: uint256):
    old: uint256 = self.stake_of[member]
    self.stake_of[member] = amount
    self.total_staked = self.total_staked + amount - old
    self._checkpoint(member, amount)
    self._checkpoint(_TOTAL, self.total_staked)


@internal
def _checkpoint(key: address, amount: uint256):
    assert amount <= AMOUNT_MASK, "staking: amount out of range"
    packed: uint256 = (block.number << AMOUNT_BITS) | amount
    n: uint256 = self._checkpoint_count[key]
    if n > 0 and self._checkpoints[key][n - 1] >> AMOUNT_BITS == block.number:
        self._checkpoints[key][n - 1] = packed
        return
    self._checkpoints[key][n] = packed
    self._checkpoint_count[key] = n + 1


@internal
@view
def _lookup(key: address, block_number: uint256) -> uint256:
    # binary search for the last checkpoint at or before block_number
    lo: uint256 = 0
    hi: uint256 = self._checkpoint_count[key]
    for _: uint256 in range(64):
        if lo >= hi:
            break
        mid: uint256 = (lo + hi) // 2
        if self._checkpoints[key][mid] >> AMOUNT_BITS > block_number:
            hi = mid
        else:
            lo = mid + 1
    if lo == 0:
        return 0
    return self._checkpoints[key][lo - 1] & AMOUNT_MASK
