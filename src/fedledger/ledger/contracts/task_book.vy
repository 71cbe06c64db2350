# pragma version ~=0.4.3
"""
@title task_book
@notice The tasks: each one's spec hash, reward terms, privacy plan (budget and per-round spend), committee and window
        settings, progress, escrow and deposit, and the dispute contract governance registered
        for it; plus governance's per-task setters. A task's reward per round never exceeds
        what its escrow still pays for, its committee size stays within the bounds, and its
        privacy budget is fixed once its first round has opened.
"""

from . import task_params

uses: task_params

MIN_QUORUM_BPS: constant(uint256) = 6666
BPS: constant(uint256) = 10000


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
    escrow: uint256
    deposit: uint256
    closed: bool
    # the privacy plan's most spent by one round (18 decimals): each round's bound is the spent so
    # far plus this, within the budget (`round_machine.open_round`); fixed at creation
    privacy_per_round: uint256


task_count: public(uint256)
tasks: public(HashMap[uint256, Task])
# everything ever escrowed for rewards (the reward token's supply never exceeds it)
total_funded: public(uint256)
# the dispute contract governance registered for a task, and back
task_dispute: public(HashMap[uint256, address])
dispute_task: public(HashMap[address, uint256])


event DisputeContractSet:
    task_id: indexed(uint256)
    dispute: indexed(address)


@internal
@view
def _require_exists(task_id: uint256):
    assert self.tasks[task_id].owner != empty(address), "task_book: unknown task"


@internal
def _add(task: Task) -> uint256:
    """Store a new task (its escrow already received); return its id (from 1)."""
    task_id: uint256 = self.task_count + 1
    self.task_count = task_id
    self.tasks[task_id] = task
    self.total_funded += task.escrow
    return task_id


@external
def set_task_reward(task_id: uint256, new_value: uint256):
    """@notice Governance: a task's reward per round, within what its escrow still pays for."""
    task_params._only_governance()
    self._require_exists(task_id)
    task: Task = self.tasks[task_id]
    assert new_value <= task_params.max_reward_per_round, "task_book: reward per round above the maximum"
    assert new_value * (task.rounds - task.finalized_rounds) <= task.escrow, "task_book: reward above the funded budget"
    self.tasks[task_id].reward_per_round = new_value
    log task_params.ParameterSet(param=task_params.P_TASK_REWARD, task_id=task_id, value=new_value)


@external
def set_task_quorum(task_id: uint256, new_value: uint256):
    task_params._only_governance()
    self._require_exists(task_id)
    assert new_value >= MIN_QUORUM_BPS and new_value <= BPS, "task_book: quorum out of range"
    self.tasks[task_id].quorum_bps = new_value
    log task_params.ParameterSet(param=task_params.P_TASK_QUORUM, task_id=task_id, value=new_value)


@external
def set_task_committee_size(task_id: uint256, new_value: uint256):
    task_params._only_governance()
    self._require_exists(task_id)
    assert new_value >= task_params.min_committee and new_value <= task_params.max_committee, "task_book: committee size out of range"
    self.tasks[task_id].committee_size = new_value
    log task_params.ParameterSet(param=task_params.P_TASK_COMMITTEE, task_id=task_id, value=new_value)


@external
def set_task_privacy_budget(task_id: uint256, new_value: uint256):
    """@notice Governance: a task's privacy budget, only before its first round opens."""
    task_params._only_governance()
    self._require_exists(task_id)
    assert self.tasks[task_id].current_round == 0, "task_book: privacy budget is fixed once a round has opened"
    self.tasks[task_id].privacy_budget = new_value
    log task_params.ParameterSet(param=task_params.P_TASK_PRIVACY_BUDGET, task_id=task_id, value=new_value)


@external
def set_task_dispute(task_id: uint256, dispute: address):
    """
    @notice Governance: the contract allowed to call `slash_for_proof` for a task (the zero
            address removes it). One contract serves one task.
    """
    task_params._only_governance()
    self._require_exists(task_id)
    old: address = self.task_dispute[task_id]
    if old != empty(address):
        self.dispute_task[old] = 0
    if dispute != empty(address):
        assert self.dispute_task[dispute] == 0, "task_book: dispute contract already serves a task"
        self.dispute_task[dispute] = task_id
    self.task_dispute[task_id] = dispute
    log DisputeContractSet(task_id=task_id, dispute=dispute)
