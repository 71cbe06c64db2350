# pragma version ~=0.4.3
# @license GPL-3.0-or-later
"""
@title Dispute of an update proof
@notice The normal path is optimistic: validators verify trainers' proofs off chain and the
        chain records, with the round's result, the root of the trainers' signed proof
        submissions and the linear-check challenge (`TaskManager.round_binding`). Once the
        committee's quorum has finalized that result, anyone can show here that an entry of
        that root, a chunk proof signed by its trainer for the round's challenge, is an
        offence: its public inputs claim other norm bounds, first-chunk flag or challenge power
        than the round's, or the proof does not verify. The contract checks inclusion, the trainer's signature,
        the statement and the proof, records the offence once, and asks the task manager to
        slash the trainer in the same transaction (`slash_for_proof`, reason BAD_PROOF). The
        task manager takes the stake only if governance registered this contract for its task,
        only for a finalized round's final attempt with a posted proofs root, only from a
        registered trainer, at most once per trainer and round, and always the governed slash
        fraction; if it refuses, the whole dispute reverts.

        What is bound, and why:
        - The root and the challenge come from the task manager, for this contract's task and
          the disputed (round, attempt); nobody passes them in. They are those of a result the
          committee accepted, so neither an aggregator nor a task owner can frame an honest
          proof by posting another challenge or root. A proof is disputed only if it answers
          that challenge (its signed input 7): even a committee that accepted a wrong challenge
          cannot make an honest proof an offence, since what an honest trainer signs verifies
          for the challenge it signs and for this contract's verifier and bounds.
        - The trainer signs an EIP-712 digest whose domain is (name, version, chain id, this
          contract) and whose message is (task, round, attempt, member, proof, public inputs).
          A submission therefore answers one statement of one task's round attempt, checked by
          one verifier with one set of bounds (this contract's immutables), on one chain: it
          cannot be replayed against another task, attempt, deployment or chain, and an
          aggregator cannot put it, or a proof the trainer never signed, under another name.
@dev Proofs-root leaf: keccak256(abi_encode(member, digest, v, r, s)) with `digest` the EIP-712
     digest below (160 bytes, never a 64-byte inner node); inner nodes hash the sorted pair.
     Signed message type:
     ProofSubmission(uint256 taskId,uint256 roundId,uint256 attempt,address member,
                     uint256[2] a,uint256[2][2] b,uint256[2] c,uint256[12] input)
     Arrays are encoded as EIP-712 says: keccak256 of the concatenated encodings of their
     elements (for b: of the two rows' hashes). Signatures are (v, r, s) over the digest itself
     (no EIP-191 prefix), with s in the lower half of the curve order (EIP-2).
@custom:security The verifier is called with raw_call and a failed call counts as "does not
     verify" (the BN254 precompiles revert on points off the curve). A submission names its
     dispute contract: a trainer signs for the contract governance registered for the task
     when it proves (`TaskManager.task_dispute`); if governance later replaces it, the old
     submissions cannot be disputed through the new one (which may check another circuit).
"""

interface ITaskManager:
    def round_binding(task_id: uint256, round_id: uint256) -> (bytes32, uint256, uint256): view
    def slash_for_proof(
        task_id: uint256, round_id: uint256, attempt: uint256, offender: address, evidence: bytes32
    ) -> uint256: nonpayable

N_PUBLIC: constant(uint256) = 12
FIELD: constant(uint256) = 21888242871839275222246405745257275088548364400416034343698204186575808495617
# secp256k1 group order / 2 (EIP-2: the upper half of s is refused)
HALF_N: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168
DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
NAME_HASH: constant(bytes32) = keccak256("fedledger UpdateDispute")
VERSION_HASH: constant(bytes32) = keccak256("1")
SUBMISSION_TYPEHASH: constant(bytes32) = keccak256(
    "ProofSubmission(uint256 taskId,uint256 roundId,uint256 attempt,address member,uint256[2] a,uint256[2][2] b,uint256[2] c,uint256[12] input)"
)

event ProofDisputed:
    offender: indexed(address)
    round_id: indexed(uint256)
    attempt: uint256
    leaf: bytes32
    disputer: address

verifier: public(immutable(address))
task_manager: public(immutable(ITaskManager))
task_id: public(immutable(uint256))
chunk_size: public(immutable(uint256))
chunks: public(immutable(uint256))
bound2x: public(immutable(uint256))
bound2e: public(immutable(uint256))
offence: public(HashMap[bytes32, address])


@deploy
def __init__(
    verifier_: address,
    task_manager_: ITaskManager,
    task_id_: uint256,
    chunk_size_: uint256,
    chunks_: uint256,
    bound2x_: uint256,
    bound2e_: uint256,
):
    """
    @param verifier_ The Groth16 verifier of the task's update circuit.
    @param task_manager_ The TaskManager: the source of each round's proofs root and challenge,
           asked to slash an offender.
    @param task_id_ The task whose rounds this contract disputes.
    @param chunk_size_ Entries per chunk of the task's update circuit.
    @param chunks_ Chunks per update (the model dimension divided by chunk_size_, rounded up).
    @param bound2x_ The task's squared L2 bound of updates (integer units).
    @param bound2e_ The task's squared L2 bound of noise shares.
    """
    assert task_manager_.address != empty(address), "dispute: empty task manager"
    assert task_id_ != 0, "dispute: zero task id"
    assert chunk_size_ > 0 and chunks_ > 0, "dispute: empty update"
    verifier = verifier_
    task_manager = task_manager_
    task_id = task_id_
    chunk_size = chunk_size_
    chunks = chunks_
    bound2x = bound2x_
    bound2e = bound2e_


@internal
@view
def _verifies(a: uint256[2], b: uint256[2][2], c: uint256[2], input: uint256[N_PUBLIC]) -> bool:
    ok: bool = False
    res: Bytes[32] = b""
    ok, res = raw_call(
        verifier,
        abi_encode(a, b, c, input, method_id=method_id("verifyProof(uint256[2],uint256[2][2],uint256[2],uint256[12])")),
        max_outsize=32,
        is_static_call=True,
        revert_on_failure=False,
    )
    if not ok or len(res) != 32:
        return False
    return extract32(res, 0, output_type=uint256) == 1


@internal
@view
def _pow_mod(base: uint256, e: uint256) -> uint256:
    """base^e mod FIELD with the modexp precompile (EIP-198)."""
    res: Bytes[32] = raw_call(
        0x0000000000000000000000000000000000000005,
        concat(
            convert(32, bytes32), convert(32, bytes32), convert(32, bytes32),
            convert(base, bytes32), convert(e, bytes32), convert(FIELD, bytes32),
        ),
        max_outsize=32,
        is_static_call=True,
    )
    return extract32(res, 0, output_type=uint256)


@internal
@view
def _statement_ok(r: uint256, input: uint256[N_PUBLIC]) -> bool:
    """The inputs a validator fixes itself: challenge, its power for chunk k, flags, bounds."""
    k: uint256 = input[1]
    if input[7] != r or input[10] != bound2x or input[11] != bound2e:
        return False
    if k >= chunks:
        return False
    if input[2] != convert(k == 0, uint256) or input[3] != convert(k == chunks - 1, uint256):
        return False
    if input[3] == 0 and input[9] != 0:  # s is only defined on the last chunk
        return False
    return input[8] == self._pow_mod(r, k * chunk_size)


@internal
@view
def _domain_separator() -> bytes32:
    return keccak256(abi_encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, chain.id, self))


@internal
@view
def _digest(
    round_id: uint256,
    attempt: uint256,
    member: address,
    a: uint256[2],
    b: uint256[2][2],
    c: uint256[2],
    input: uint256[N_PUBLIC],
) -> bytes32:
    b_hash: bytes32 = keccak256(concat(keccak256(abi_encode(b[0])), keccak256(abi_encode(b[1]))))
    struct_hash: bytes32 = keccak256(
        abi_encode(
            SUBMISSION_TYPEHASH,
            task_id,
            round_id,
            attempt,
            member,
            keccak256(abi_encode(a)),
            b_hash,
            keccak256(abi_encode(c)),
            keccak256(abi_encode(input)),
        )
    )
    return keccak256(concat(b"\x19\x01", self._domain_separator(), struct_hash))


@external
@view
def domain_separator() -> bytes32:
    """@notice The EIP-712 domain separator: (name, version, chain id, this contract)."""
    return self._domain_separator()


@external
@view
def submission_digest(
    round_id: uint256,
    attempt: uint256,
    member: address,
    a: uint256[2],
    b: uint256[2][2],
    c: uint256[2],
    input: uint256[N_PUBLIC],
) -> bytes32:
    """@notice The EIP-712 digest `member` signs when it submits a proof for (task, round, attempt)."""
    return self._digest(round_id, attempt, member, a, b, c, input)


@external
def dispute(
    round_id: uint256,
    attempt: uint256,
    offender: address,
    a: uint256[2],
    b: uint256[2][2],
    c: uint256[2],
    input: uint256[N_PUBLIC],
    v: uint256,
    r: uint256,
    s: uint256,
    path: DynArray[bytes32, 32],
) -> bytes32:
    """
    @notice Show that `offender` submitted, for attempt `attempt` of round `round_id` of this
            contract's task, a proof that is an offence against the round's statement.
    @return The proofs-root leaf, now recorded as an offence.
    """
    root: bytes32 = empty(bytes32)
    challenge: uint256 = 0
    current: uint256 = 0
    root, challenge, current = staticcall task_manager.round_binding(task_id, round_id)
    assert attempt == current, "dispute: not the round's current attempt"
    assert root != empty(bytes32), "dispute: no proofs root for round"
    assert challenge != 0 and challenge < FIELD, "dispute: bad challenge"
    digest: bytes32 = self._digest(round_id, attempt, offender, a, b, c, input)
    leaf: bytes32 = keccak256(abi_encode(offender, digest, v, r, s))
    node: bytes32 = leaf
    for sibling: bytes32 in path:
        if convert(node, uint256) <= convert(sibling, uint256):
            node = keccak256(concat(node, sibling))
        else:
            node = keccak256(concat(sibling, node))
    assert node == root, "dispute: not in the proofs root"
    assert self.offence[leaf] == empty(address), "dispute: already disputed"
    assert s <= HALF_N and (v == 27 or v == 28), "dispute: malformed signature"
    signer: address = ecrecover(digest, v, r, s)
    assert signer != empty(address) and signer == offender, "dispute: not signed by the offender"
    # a proof of another challenge than the posted one is not slashed here: had the committee
    # accepted a wrong challenge, every honest proof would "fail"; validators exclude such a
    # proof off chain (and may name its trainer faulty in the result)
    assert input[7] == challenge, "dispute: proof answers another challenge"
    assert not (self._statement_ok(challenge, input) and self._verifies(a, b, c, input)), "dispute: proof verifies"
    self.offence[leaf] = offender
    extcall task_manager.slash_for_proof(task_id, round_id, attempt, offender, leaf)  # reverts all if refused
    log ProofDisputed(offender=offender, round_id=round_id, attempt=attempt, leaf=leaf, disputer=msg.sender)
    return leaf
