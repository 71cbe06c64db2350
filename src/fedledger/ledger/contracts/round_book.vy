# pragma version ~=0.4.3
"""
@title round_book
@notice The rounds' records: per task and round its status, attempt, seed, roles, deadlines and
        the posted result; the current attempt's committee, each member's voting weight in an
        attempt, and the trainers the current attempt's result names as faulty. No rules live
        here: `round_machine` moves a round through its states, `votes` and `settlement` read
        and settle it.
@custom:security The status stays a uint256 and not a Vyper `flag`: a flag is ABI-encoded as
                 a bit (1, 2, 4, 8, 16), so `rounds(...)` and `finalize`'s return value would
                 no longer carry the values 0..5 that clients (`fedledger.ledger.RoundStatus`)
                 and deployed readers decode.
"""

# round status (the values of `Round.status`, `finalize`'s return value and RoundStatus)
NO_ROUND: constant(uint256) = 0
OPEN: constant(uint256) = 1
SUBMITTED: constant(uint256) = 2
FINALIZED: constant(uint256) = 3
REJECTED: constant(uint256) = 4
SEALING: constant(uint256) = 5  # committed to a future block; `seal` draws the roles

MAX_COMMITTEE: constant(uint256) = 32
MAX_FAULTY: constant(uint256) = 32


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


rounds: public(HashMap[uint256, HashMap[uint256, Round]])
_committee: HashMap[uint256, HashMap[uint256, DynArray[address, MAX_COMMITTEE]]]
# keyed by `_key(task_id, round_id, attempt, member)`
_member_weight: HashMap[bytes32, uint256]
# the trainers the current attempt's result names as faulty (slashed if it is finalized)
_faulty: HashMap[uint256, HashMap[uint256, DynArray[address, MAX_FAULTY]]]
# the part of the current attempt's contributors' pool its reward root pays nobody (goes back to the escrow)
reward_unpaid: public(HashMap[uint256, HashMap[uint256, uint256]])


@internal
@pure
def _key(task_id: uint256, round_id: uint256, attempt: uint256, member: address) -> bytes32:
    """The key of a member's slot in one attempt of a round (the zero address: the attempt's own)."""
    return keccak256(abi_encode(task_id, round_id, attempt, member))


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
