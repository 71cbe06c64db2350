# pragma version ~=0.4.3
"""
@title Scores
@notice The committee's commit-reveal of contribution scores, one instance per round attempt,
        before the aggregator posts the round's settlement. A contract of its own (the task
        manager is at the EIP-170 limit); it reads the round's aggregator, deadline and
        committee from the task manager and holds nothing of value.

        1. `publish` (the attempt's aggregator, while the round is open): the root of the
           evidence the committee scores (the round's evidence without its settlement). The
           time left until the submit deadline is split in three: commits until the first
           third, reveals until the second, the aggregator's submission in the last.
        2. `commit` (each committee member, once): keccak256(abi_encode(scores_hash, salt,
           validator, task, round, attempt)), scores_hash the keccak256 of the member's score
           vector blob (per-member scores stay off chain: one transaction per validator,
           whatever the number of trainers).
        3. `reveal` (each committer, once), only when every committee member has committed or
           the commit deadline passed, and before the reveal deadline: (scores_hash, salt),
           checked against its own commitment.

        Off chain, every party takes the revealed vectors, computes the stake-weighted median
        with clipping (`fedledger.protocol.scoring`) and the reward split; the aggregator posts
        its root with the result and the committee's vote checks it (2/3 of its stake).
@custom:security A commitment binds the validator's own address, the task, round and attempt:
                 a copied commitment cannot be revealed by the copier, and no reveal exists
                 before commits close, so nobody scores by copying this attempt's vectors. A
                 reveal that does not match, or none, leaves the validator without a vector:
                 zero agreement, no scoring share.
"""

interface ITaskManager:
    def rounds(task_id: uint256, round_id: uint256) -> Round: view
    def committee(task_id: uint256, round_id: uint256) -> DynArray[address, 32]: view
    def committee_weight_of(task_id: uint256, round_id: uint256, member: address) -> uint256: view


# the task manager's round record (round_book.Round), as its ABI returns it
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


struct Attempt:
    evidence_root: bytes32
    commit_deadline: uint256
    reveal_deadline: uint256
    commits: uint256
    reveals: uint256
    committee_size: uint256


OPEN: constant(uint256) = 1

task_manager: public(immutable(ITaskManager))

# keyed by keccak256(abi_encode(task, round, attempt))
_attempts: HashMap[bytes32, Attempt]
# keyed by keccak256(abi_encode(task, round, attempt, validator))
_commitment: HashMap[bytes32, bytes32]
_revealed: HashMap[bytes32, bytes32]


event ScoringOpened:
    task_id: indexed(uint256)
    round_id: indexed(uint256)
    attempt: uint256
    evidence_root: bytes32
    commit_deadline: uint256
    reveal_deadline: uint256

event ScoresCommitted:
    task_id: indexed(uint256)
    round_id: indexed(uint256)
    validator: indexed(address)
    attempt: uint256
    commitment: bytes32

event ScoresRevealed:
    task_id: indexed(uint256)
    round_id: indexed(uint256)
    validator: indexed(address)
    attempt: uint256
    scores_hash: bytes32


@deploy
def __init__(task_manager_: ITaskManager):
    task_manager = task_manager_


@internal
@pure
def _akey(task_id: uint256, round_id: uint256, attempt: uint256) -> bytes32:
    return keccak256(abi_encode(task_id, round_id, attempt))


@internal
@pure
def _vkey(task_id: uint256, round_id: uint256, attempt: uint256, validator: address) -> bytes32:
    return keccak256(abi_encode(task_id, round_id, attempt, validator))


@external
@pure
def commitment_for(scores_hash: bytes32, salt: bytes32, validator: address, task_id: uint256, round_id: uint256, attempt: uint256) -> bytes32:
    """@notice The commitment a validator posts for its score vector."""
    return keccak256(abi_encode(scores_hash, salt, validator, task_id, round_id, attempt))


@external
def publish(task_id: uint256, round_id: uint256, evidence_root: bytes32):
    """@notice The attempt's aggregator, while the round is open: the evidence to score."""
    r: Round = staticcall task_manager.rounds(task_id, round_id)
    assert r.status == OPEN, "scores: round is not open"
    assert msg.sender == r.aggregator, "scores: only the round's aggregator publishes"
    assert evidence_root != empty(bytes32), "scores: empty evidence root"
    assert block.timestamp < r.submit_deadline, "scores: submission deadline passed"
    key: bytes32 = self._akey(task_id, round_id, r.attempt)
    assert self._attempts[key].evidence_root == empty(bytes32), "scores: already published"
    third: uint256 = (r.submit_deadline - block.timestamp) // 3
    a: Attempt = Attempt(
        evidence_root=evidence_root,
        commit_deadline=block.timestamp + third,
        reveal_deadline=block.timestamp + 2 * third,
        commits=0,
        reveals=0,
        committee_size=len(staticcall task_manager.committee(task_id, round_id)),
    )
    self._attempts[key] = a
    log ScoringOpened(task_id=task_id, round_id=round_id, attempt=r.attempt, evidence_root=evidence_root, commit_deadline=a.commit_deadline, reveal_deadline=a.reveal_deadline)


@external
def commit(task_id: uint256, round_id: uint256, commitment: bytes32):
    """@notice A committee member of the current attempt, once, before the commit deadline."""
    r: Round = staticcall task_manager.rounds(task_id, round_id)
    assert r.status == OPEN, "scores: round is not open"
    key: bytes32 = self._akey(task_id, round_id, r.attempt)
    a: Attempt = self._attempts[key]
    assert a.evidence_root != empty(bytes32), "scores: nothing published to score"
    assert block.timestamp <= a.commit_deadline, "scores: commit deadline passed"
    assert staticcall task_manager.committee_weight_of(task_id, round_id, msg.sender) > 0, "scores: not a committee member"
    assert commitment != empty(bytes32), "scores: empty commitment"
    vkey: bytes32 = self._vkey(task_id, round_id, r.attempt, msg.sender)
    assert self._commitment[vkey] == empty(bytes32), "scores: already committed"
    self._commitment[vkey] = commitment
    self._attempts[key].commits = a.commits + 1
    log ScoresCommitted(task_id=task_id, round_id=round_id, validator=msg.sender, attempt=r.attempt, commitment=commitment)


@external
def reveal(task_id: uint256, round_id: uint256, scores_hash: bytes32, salt: bytes32):
    """@notice A committer, once every member committed or the commit deadline passed, before the reveal deadline."""
    r: Round = staticcall task_manager.rounds(task_id, round_id)
    assert r.status == OPEN, "scores: round is not open"
    key: bytes32 = self._akey(task_id, round_id, r.attempt)
    a: Attempt = self._attempts[key]
    assert a.evidence_root != empty(bytes32), "scores: nothing published to score"
    assert a.commits == a.committee_size or block.timestamp > a.commit_deadline, "scores: commits still open"
    assert block.timestamp <= a.reveal_deadline, "scores: reveal deadline passed"
    vkey: bytes32 = self._vkey(task_id, round_id, r.attempt, msg.sender)
    c: bytes32 = self._commitment[vkey]
    assert c != empty(bytes32), "scores: no commitment"
    assert self._revealed[vkey] == empty(bytes32), "scores: already revealed"
    assert scores_hash != empty(bytes32), "scores: empty scores hash"
    assert keccak256(abi_encode(scores_hash, salt, msg.sender, task_id, round_id, r.attempt)) == c, "scores: reveal does not match the commitment"
    self._revealed[vkey] = scores_hash
    self._attempts[key].reveals = a.reveals + 1
    log ScoresRevealed(task_id=task_id, round_id=round_id, validator=msg.sender, attempt=r.attempt, scores_hash=scores_hash)


@external
@view
def attempt_of(task_id: uint256, round_id: uint256, attempt: uint256) -> Attempt:
    """@notice The scoring record of one attempt (zero evidence root: nothing published)."""
    return self._attempts[self._akey(task_id, round_id, attempt)]


@external
@view
def commitment_of(task_id: uint256, round_id: uint256, attempt: uint256, validator: address) -> bytes32:
    return self._commitment[self._vkey(task_id, round_id, attempt, validator)]


@external
@view
def revealed_of(task_id: uint256, round_id: uint256, attempt: uint256, validator: address) -> bytes32:
    """@notice The validator's revealed scores hash (zero: none)."""
    return self._revealed[self._vkey(task_id, round_id, attempt, validator)]
