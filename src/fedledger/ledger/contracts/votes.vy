# pragma version ~=0.4.3
"""
@title votes
@notice The committee's votes on a submitted result: a member of the current attempt's
        committee votes once, with the weight it was drawn with; the quorum rule is 2/3 of the
        committee's weight and the task's quorum (at least 6666 bps) both.
"""

from . import round_book

uses: round_book

BPS: constant(uint256) = 10000
NO_VOTE: constant(uint256) = 0
ACCEPT: constant(uint256) = 1
REJECT: constant(uint256) = 2

# keyed by `round_book._key(task_id, round_id, attempt, member)`: NO_VOTE, ACCEPT or REJECT
_vote: HashMap[bytes32, uint256]


event Voted:
    task_id: indexed(uint256)
    round_id: indexed(uint256)
    voter: indexed(address)
    attempt: uint256
    accept: bool
    weight: uint256


@internal
@view
def _quorum(weight: uint256, total: uint256, quorum_bps: uint256) -> bool:
    return weight * 3 >= total * 2 and weight * BPS >= total * quorum_bps


@internal
@view
def _vote_in(task_id: uint256, round_id: uint256, attempt: uint256, member: address) -> uint256:
    return self._vote[round_book._key(task_id, round_id, attempt, member)]


@external
def vote(task_id: uint256, round_id: uint256, accept: bool):
    """@notice A committee member accepts or rejects the submitted result, once."""
    r: round_book.Round = round_book.rounds[task_id][round_id]
    assert r.status == round_book.SUBMITTED, "votes: round is not awaiting votes"
    assert block.timestamp <= r.vote_deadline, "votes: voting deadline passed"
    key: bytes32 = round_book._key(task_id, round_id, r.attempt, msg.sender)
    weight: uint256 = round_book._member_weight[key]
    assert weight > 0, "votes: not a committee member"
    assert self._vote[key] == NO_VOTE, "votes: already voted"
    if accept:
        self._vote[key] = ACCEPT
        round_book.rounds[task_id][round_id].accept_weight = r.accept_weight + weight
    else:
        self._vote[key] = REJECT
        round_book.rounds[task_id][round_id].reject_weight = r.reject_weight + weight
    log Voted(task_id=task_id, round_id=round_id, voter=msg.sender, attempt=r.attempt, accept=accept, weight=weight)


@external
@view
def vote_of(task_id: uint256, round_id: uint256, member: address) -> uint256:
    """@notice 0 no vote, 1 accept, 2 reject (current attempt)."""
    return self._vote_in(task_id, round_id, round_book.rounds[task_id][round_id].attempt, member)
