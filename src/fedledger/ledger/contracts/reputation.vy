# pragma version ~=0.4.3
"""
@title Reputation
@notice A score per member in [0, 10000] (5000 for a member never scored). Scores change in
        batch: a finalized round whose result carried a reputation root (accepted by the
        committee's vote) opens a new epoch; each member's new absolute score is a leaf
        abi_encode(task_id, round_id, member, score) of that root and anyone may apply it with an
        inclusion proof, which also refreshes the member's selection weight. Epochs only move
        forward per member, so an old score cannot be replayed over a newer one.
"""

from . import merkle


interface ITaskManager:
    def refresh_weight(member: address): nonpayable


MAX_SCORE: constant(uint256) = 10000
DEFAULT_SCORE: constant(uint256) = 5000

_deployer: immutable(address)
task_manager: public(address)
epoch: public(uint256)


struct Epoch:
    task_id: uint256
    round_id: uint256
    root: bytes32


epochs: public(HashMap[uint256, Epoch])
last_epoch: public(HashMap[address, uint256])
_score_plus_one: HashMap[address, uint256]

event ReputationRootPosted:
    epoch: indexed(uint256)
    task_id: indexed(uint256)
    round_id: indexed(uint256)
    root: bytes32

event ScoreUpdated:
    member: indexed(address)
    epoch: indexed(uint256)
    score: uint256


@deploy
def __init__():
    _deployer = msg.sender


@external
def wire(task_manager: address):
    """@notice One-time wiring by the deployer."""
    assert msg.sender == _deployer, "reputation: only the deployer wires"
    assert self.task_manager == empty(address), "reputation: already wired"
    assert task_manager != empty(address), "reputation: zero address"
    self.task_manager = task_manager


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
    """@notice Set `member`'s score to its value in epoch `epoch` (anyone may call)."""
    assert epoch >= 1 and epoch <= self.epoch, "reputation: unknown epoch"
    assert epoch > self.last_epoch[member], "reputation: stale epoch"
    assert score <= MAX_SCORE, "reputation: score out of range"
    e: Epoch = self.epochs[epoch]
    leaf: bytes32 = merkle._leaf128(abi_encode(e.task_id, e.round_id, member, score))
    assert merkle._verify(e.root, leaf, proof), "reputation: invalid Merkle proof"
    self.last_epoch[member] = epoch
    self._score_plus_one[member] = score + 1
    log ScoreUpdated(member=member, epoch=epoch, score=score)
    extcall ITaskManager(self.task_manager).refresh_weight(member)


@external
@view
def score_of(member: address) -> uint256:
    s: uint256 = self._score_plus_one[member]
    if s == 0:
        return DEFAULT_SCORE
    return s - 1
