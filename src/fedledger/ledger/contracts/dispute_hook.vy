# pragma version ~=0.4.3
"""
@title dispute_hook
@notice What a task's dispute contract (registered by governance in `task_book`) sees and may
        do: read the proofs root and challenge a round's attempt posted with its result
        (`round_binding`), and slash a trainer whose signed update proof in that root it found
        to be an offence (`slash_for_proof`, BAD_PROOF), only for a finalized round's final
        attempt and a trainer that joined the task.
"""

from . import peers
from . import round_book
from . import slashing
from . import task_book

uses: peers
uses: round_book
uses: slashing
uses: task_book

TRAINER: constant(uint256) = 1

# keyed by `round_book._key(task_id, round_id, attempt, empty(address))`: the Merkle root of the
# trainers' signed update proof submissions and the linear-check challenge the attempt's result
# posted (what a dispute checks)
_proofs_root: HashMap[bytes32, bytes32]
_challenge: HashMap[bytes32, uint256]


@internal
def _bind(task_id: uint256, round_id: uint256, attempt: uint256, proofs_root: bytes32, challenge: uint256):
    """Record the proofs root and challenge an attempt's result posts."""
    binding: bytes32 = round_book._key(task_id, round_id, attempt, empty(address))
    self._proofs_root[binding] = proofs_root
    self._challenge[binding] = challenge


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
    assert msg.sender != empty(address) and task_book.task_dispute[task_id] == msg.sender, "dispute_hook: only a registered dispute contract slashes for proofs"
    r: round_book.Round = round_book.rounds[task_id][round_id]
    assert r.status == round_book.FINALIZED, "dispute_hook: round not finalized"
    assert attempt == r.attempt, "dispute_hook: not the round's final attempt"
    assert self._proofs_root[round_book._key(task_id, round_id, attempt, empty(address))] != empty(bytes32), "dispute_hook: no proofs root posted"
    assert staticcall peers.registry.role_of(offender) == TRAINER, "dispute_hook: offender is not a trainer"
    assert staticcall peers.registry.joined(task_id, offender), "dispute_hook: offender did not join the task"
    assert slashing._mark_update_punished(task_id, round_id, offender), "dispute_hook: update already slashed this round"
    return slashing._slash(offender, slashing.SLASH_BAD_PROOF, evidence, task_id, round_id, attempt)


@external
@view
def round_binding(task_id: uint256, round_id: uint256) -> (bytes32, uint256, uint256):
    """
    @notice (proofs root, challenge, attempt) the round's current attempt posted with its result
            (empty before a result). Disputes check proofs against these, and only once the
            round is finalized.
    """
    attempt: uint256 = round_book.rounds[task_id][round_id].attempt
    binding: bytes32 = round_book._key(task_id, round_id, attempt, empty(address))
    return self._proofs_root[binding], self._challenge[binding], attempt
