# pragma version ~=0.4.3
"""
@title Reputation
@notice A score per task and member in [0, 10000] (5000 for a member never scored in that task).
        Every role is scored, each from the evidence that can judge it:
        - trainers from the task's finalized rounds: a round whose result carried a reputation
          root (accepted by the committee's vote) opens an epoch of its task; each trainer's new
          absolute score is a leaf abi_encode(task_id, round_id, member, score) of that root and
          anyone may apply it with an inclusion proof. Epochs only move forward per task and
          member, so an old score of a task cannot be replayed over a newer one, and an epoch of
          one task can never touch a score in another (scores are per task, not one global
          value a later epoch elsewhere could overwrite);
        - aggregators and validators from what the chain itself sees (`adjust`, task manager
          only): a finalized result raises its aggregator and every committee member that
          accepted it by REWARD_STEP; a fault the chain slashes (missed deadline, missed vote,
          a result the quorum rejected) lowers the member by PENALTY_STEP.
        The task manager weighs selection in a task by stake * (5000 + score) / 10000.
"""

from . import merkle


interface IRegistry:
    def refresh_weight(task_id: uint256, member: address): nonpayable
    def role_of(member: address) -> uint256: view


MAX_SCORE: constant(uint256) = 10000
DEFAULT_SCORE: constant(uint256) = 5000
REWARD_STEP: constant(uint256) = 100
PENALTY_STEP: constant(uint256) = 1000
TRAINER: constant(uint256) = 1
MAX_ADJUST: constant(uint256) = 33

_deployer: immutable(address)
task_manager: public(address)
registry: public(address)
epoch: public(uint256)


struct Epoch:
    task_id: uint256
    round_id: uint256
    root: bytes32


epochs: public(HashMap[uint256, Epoch])
# task_id -> member -> the last epoch applied to the member's score in that task
last_epoch: public(HashMap[uint256, HashMap[address, uint256]])
_score_plus_one: HashMap[uint256, HashMap[address, uint256]]

event ReputationRootPosted:
    epoch: indexed(uint256)
    task_id: indexed(uint256)
    round_id: indexed(uint256)
    root: bytes32

event ScoreUpdated:
    member: indexed(address)
    task_id: indexed(uint256)
    epoch: indexed(uint256)
    score: uint256


@deploy
def __init__():
    _deployer = msg.sender


@external
def wire(task_manager: address, registry: address):
    """@notice One-time wiring by the deployer."""
    assert msg.sender == _deployer, "reputation: only the deployer wires"
    assert self.task_manager == empty(address), "reputation: already wired"
    assert task_manager != empty(address) and registry != empty(address), "reputation: zero address"
    self.task_manager = task_manager
    self.registry = registry


@external
def post_root(task_id: uint256, round_id: uint256, root: bytes32) -> uint256:
    """@notice Task manager only: open a new epoch with a finalized round's reputation root."""
    assert msg.sender == self.task_manager, "reputation: only the task manager posts roots"
    e: uint256 = self.epoch + 1
    self.epoch = e
    self.epochs[e] = Epoch(task_id=task_id, round_id=round_id, root=root)
    log ReputationRootPosted(epoch=e, task_id=task_id, round_id=round_id, root=root)
    return e


@external
def apply(epoch: uint256, member: address, score: uint256, proof: DynArray[bytes32, merkle.MAX_DEPTH]):
    """@notice Set a trainer's score in the epoch's task to its value there (anyone may call)."""
    assert epoch >= 1 and epoch <= self.epoch, "reputation: unknown epoch"
    e: Epoch = self.epochs[epoch]
    assert epoch > self.last_epoch[e.task_id][member], "reputation: stale epoch"
    assert score <= MAX_SCORE, "reputation: score out of range"
    assert staticcall IRegistry(self.registry).role_of(member) == TRAINER, "reputation: roots score trainers only"
    leaf: bytes32 = merkle._leaf128(abi_encode(e.task_id, e.round_id, member, score))
    assert merkle._verify(e.root, leaf, proof), "reputation: invalid Merkle proof"
    self.last_epoch[e.task_id][member] = epoch
    self._score_plus_one[e.task_id][member] = score + 1
    log ScoreUpdated(member=member, task_id=e.task_id, epoch=epoch, score=score)
    extcall IRegistry(self.registry).refresh_weight(e.task_id, member)


@external
def adjust(task_id: uint256, members: DynArray[address, MAX_ADJUST], up: bool):
    """
    @notice Task manager only: raise (a finalized result, an accepting vote) or lower (a slashed
            fault) the scores of aggregators and validators in a task. The task manager
            slashes the lowered members (the registry then refreshes their weights); a raised
            weight is refreshed by anyone through `Registry.refresh_weight`.
    """
    assert msg.sender == self.task_manager, "reputation: only the task manager adjusts scores"
    for m: address in members:
        s: uint256 = self._score(task_id, m)
        if up:
            s = min(s + REWARD_STEP, MAX_SCORE)
        else:
            s = s - min(s, PENALTY_STEP)
        self._score_plus_one[task_id][m] = s + 1
        log ScoreUpdated(member=m, task_id=task_id, epoch=0, score=s)


@internal
@view
def _score(task_id: uint256, member: address) -> uint256:
    s: uint256 = self._score_plus_one[task_id][member]
    if s == 0:
        return DEFAULT_SCORE
    return s - 1


@external
@view
def score_of(task_id: uint256, member: address) -> uint256:
    return self._score(task_id, member)
