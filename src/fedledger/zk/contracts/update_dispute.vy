# pragma version ~=0.4.3
# @license GPL-3.0-or-later
"""
@title Dispute of an update proof
@notice The normal path is optimistic: validators verify trainers' proofs off chain and the
        chain records only the round's evidence root and challenge. Here anyone can show that
        an entry of that evidence, a chunk proof signed by its trainer, is an offence: its
        public inputs claim another challenge, norm bounds, first-chunk flag or challenge
        power than the round's, or the proof does not verify. The contract checks inclusion,
        the trainer's signature, the statement and the proof, records the offence once, and
        asks the slasher to slash the trainer in the same transaction. The slasher is the
        ledger's TaskManager (`slash_for_proof`): it takes the stake (reason BAD_PROOF) only
        if governance registered this contract for the task, only from a registered trainer,
        for a round the task has opened, at most once per trainer and round, and always the
        governed slash fraction; if it refuses, the whole dispute reverts. With no slasher the
        contract only records offences.
@dev Evidence leaf: keccak256(abi_encode(round_id, offender, a, b, c, input, v, r, s)); inner
     nodes hash the sorted pair. The trainer signs (EIP-191) keccak256(abi_encode(DOMAIN,
     round_id, a, b, c, input)), so an aggregator cannot frame it with a proof it never sent.
@custom:security The verifier is called with raw_call and a failed call counts as "does not
     verify" (the BN254 precompiles revert on points off the curve).
"""

interface ISlasher:
    def slash_for_proof(offender: address, round_id: uint256, evidence: bytes32) -> uint256: nonpayable

N_PUBLIC: constant(uint256) = 12
FIELD: constant(uint256) = 21888242871839275222246405745257275088548364400416034343698204186575808495617
DOMAIN: constant(bytes32) = keccak256("fedledger/v1/zk/update-proof-submission")

event EvidenceRootPosted:
    round_id: indexed(uint256)
    root: bytes32

event ProofDisputed:
    offender: indexed(address)
    round_id: indexed(uint256)
    leaf: bytes32
    disputer: address

verifier: public(immutable(address))
slasher: public(immutable(address))
poster: public(immutable(address))
chunk_size: public(immutable(uint256))
chunks: public(immutable(uint256))
bound2x: public(immutable(uint256))
bound2e: public(immutable(uint256))
evidence_root: public(HashMap[uint256, bytes32])
challenge: public(HashMap[uint256, uint256])
offence: public(HashMap[bytes32, address])


@deploy
def __init__(
    verifier_: address,
    slasher_: address,
    poster_: address,
    chunk_size_: uint256,
    chunks_: uint256,
    bound2x_: uint256,
    bound2e_: uint256,
):
    """
    @param verifier_ The Groth16 verifier of the task's update circuit.
    @param slasher_ The TaskManager, asked to slash an offender; empty to only record offences.
    @param poster_ The account allowed to post each round's evidence root and challenge
           (normally the task owner; the committee checks what it posts against the round).
    @param chunk_size_ Entries per chunk of the task's update circuit.
    @param chunks_ Chunks per update (the model dimension divided by chunk_size_, rounded up).
    @param bound2x_ The task's squared L2 bound of updates (integer units).
    @param bound2e_ The task's squared L2 bound of noise shares.
    """
    verifier = verifier_
    slasher = slasher_
    poster = poster_
    assert chunk_size_ > 0 and chunks_ > 0, "dispute: empty update"
    chunk_size = chunk_size_
    chunks = chunks_
    bound2x = bound2x_
    bound2e = bound2e_


@external
def post_evidence_root(round_id: uint256, root: bytes32, r: uint256):
    """@notice Record the evidence root and the linear-check challenge of a round (once)."""
    assert msg.sender == poster, "dispute: not the poster"
    assert root != empty(bytes32), "dispute: empty root"
    assert r != 0 and r < FIELD, "dispute: bad challenge"
    assert self.evidence_root[round_id] == empty(bytes32), "dispute: root already posted"
    self.evidence_root[round_id] = root
    self.challenge[round_id] = r
    log EvidenceRootPosted(round_id=round_id, root=root)


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
def _statement_ok(round_id: uint256, input: uint256[N_PUBLIC]) -> bool:
    """The inputs a validator fixes itself: challenge, its power for chunk k, flags, bounds."""
    r: uint256 = self.challenge[round_id]
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


@external
@view
def submission_digest(
    round_id: uint256, a: uint256[2], b: uint256[2][2], c: uint256[2], input: uint256[N_PUBLIC]
) -> bytes32:
    """@notice The digest a trainer signs (EIP-191) when it submits a proof."""
    return keccak256(abi_encode(DOMAIN, round_id, a, b, c, input))


@external
def dispute(
    round_id: uint256,
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
    @notice Show that `offender` submitted a proof that does not verify.
    @return The evidence leaf, now recorded as an offence.
    """
    root: bytes32 = self.evidence_root[round_id]
    assert root != empty(bytes32), "dispute: no evidence for round"
    leaf: bytes32 = keccak256(abi_encode(round_id, offender, a, b, c, input, v, r, s))
    node: bytes32 = leaf
    for sibling: bytes32 in path:
        if convert(node, uint256) <= convert(sibling, uint256):
            node = keccak256(concat(node, sibling))
        else:
            node = keccak256(concat(sibling, node))
    assert node == root, "dispute: not in the evidence"
    assert self.offence[leaf] == empty(address), "dispute: already disputed"
    digest: bytes32 = keccak256(abi_encode(DOMAIN, round_id, a, b, c, input))
    signed: bytes32 = keccak256(concat(b"\x19Ethereum Signed Message:\n32", digest))
    assert ecrecover(signed, v, r, s) == offender, "dispute: not signed by the offender"
    assert not (self._statement_ok(round_id, input) and self._verifies(a, b, c, input)), "dispute: proof verifies"
    self.offence[leaf] = offender
    if slasher != empty(address):
        extcall ISlasher(slasher).slash_for_proof(offender, round_id, leaf)  # reverts all if refused
    log ProofDisputed(offender=offender, round_id=round_id, leaf=leaf, disputer=msg.sender)
    return leaf
