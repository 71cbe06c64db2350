# pragma version ~=0.4.3
"""
@title slashing
@notice How the task manager slashes: slash_bps of the member's bonded stake (active and
        unbonding), taken by `Staking` into the treasury, for a reason code and an evidence
        hash. A member is slashed for a missed deadline or vote at most once per round, and only
        if the window it was given was at least the governance minimum; a trainer is slashed for
        its update at most once per round, whatever the path (FAULTY_UPDATE or BAD_PROOF).
        Which faults are slashed, and when, is the callers' (`round_machine`, `settlement`,
        `dispute_hook`).
"""

from . import peers
from . import task_params

uses: peers
uses: task_params

BPS: constant(uint256) = 10000

# slash reasons (Staking.Slashed.reason); the first three line up with the reopen reasons
SLASH_MISSED_DEADLINE: constant(uint256) = 1  # the aggregator did not submit in time
SLASH_MISSED_VOTE: constant(uint256) = 2  # a committee member did not vote in time (no quorum)
SLASH_REJECTED_RESULT: constant(uint256) = 3  # the committee's quorum rejected the aggregator's result
SLASH_FAULTY_UPDATE: constant(uint256) = 4  # a trainer the finalized result names as faulty
SLASH_BAD_PROOF: constant(uint256) = 5  # a trainer's signed update proof disputed on chain

# keccak256(task_id, round_id, trainer): slashed for its update in that round (once, whatever the path)
_punished: HashMap[bytes32, bool]
# keccak256(task_id, round_id, member, "liveness"): slashed for a missed deadline or vote in that round
_liveness_slashed: HashMap[bytes32, bool]


@internal
def _slash(member: address, reason: uint256, evidence: bytes32, task_id: uint256, round_id: uint256, attempt: uint256) -> uint256:
    """Take slash_bps of `member`'s bonded stake (active and unbonding); staking has the registry refresh its weights."""
    amount: uint256 = (staticcall peers.staking.bonded_of(member)) * task_params.slash_bps // BPS
    return extcall peers.staking.slash(member, amount, reason, evidence, task_id, round_id, attempt)


@internal
def _penalize(task_id: uint256, member: address):
    """Lower a member's score in the task (its weights are refreshed by the slash that follows)."""
    one: DynArray[address, 33] = [member]
    extcall peers.reputation.adjust(task_id, one, False)


@internal
def _liveness_slash(member: address, reason: uint256, evidence: bytes32, task_id: uint256, round_id: uint256, attempt: uint256, window: uint256) -> uint256:
    """A missed deadline or vote: slashed once per member and round, and only if the window given was at least the minimum."""
    if window < task_params.min_window:
        return 0
    key: bytes32 = keccak256(abi_encode(task_id, round_id, member, "liveness"))
    if self._liveness_slashed[key]:
        return 0
    self._liveness_slashed[key] = True
    self._penalize(task_id, member)
    return self._slash(member, reason, evidence, task_id, round_id, attempt)


@internal
def _mark_update_punished(task_id: uint256, round_id: uint256, trainer: address) -> bool:
    """Record that `trainer` is slashed for its update in this round; False if it already was."""
    key: bytes32 = keccak256(abi_encode(task_id, round_id, trainer))
    if self._punished[key]:
        return False
    self._punished[key] = True
    return True


@external
@view
def is_punished(task_id: uint256, round_id: uint256, trainer: address) -> bool:
    """@notice Whether `trainer` was slashed for its update in this round (FAULTY_UPDATE or BAD_PROOF)."""
    return self._punished[keccak256(abi_encode(task_id, round_id, trainer))]
