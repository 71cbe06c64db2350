# pragma version ~=0.4.3
# @license GPL-3.0-or-later
"""
@title Dispute of an update proof
@notice The normal path is optimistic: validators verify trainers' proofs off chain and the
        chain records only the round's evidence root. Here anyone can show that an entry of
        that evidence, a proof signed by its trainer, does not verify; the contract checks the
        inclusion, the trainer's signature and the proof itself, records the offence once, and
        asks the slasher (the Staking contract, if set) to slash the trainer.
@dev Evidence leaf: keccak256(abi_encode(round_id, offender, a, b, c, input, v, r, s)); inner
     nodes hash the sorted pair. The trainer signs (EIP-191) keccak256(abi_encode(DOMAIN,
     round_id, a, b, c, input)), so an aggregator cannot frame it with a proof it never sent.
@custom:security The verifier is called with raw_call and a failed call counts as "does not
     verify" (the BN254 precompiles revert on points off the curve).
"""

interface ISlasher:
    def slash_for_proof(offender: address, round_id: uint256, evidence: bytes32): nonpayable

N_PUBLIC: constant(uint256) = 12
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
evidence_root: public(HashMap[uint256, bytes32])
offence: public(HashMap[bytes32, address])


@deploy
def __init__(verifier_: address, slasher_: address, poster_: address):
    """
    @param verifier_ The Groth16 verifier of the task's update circuit.
    @param slasher_ Contract asked to slash an offender; empty to only record offences.
    @param poster_ The account (TaskManager) allowed to post evidence roots.
    """
    verifier = verifier_
    slasher = slasher_
    poster = poster_


@external
def post_evidence_root(round_id: uint256, root: bytes32):
    """@notice Record the evidence root of a round (once)."""
    assert msg.sender == poster, "dispute: not the poster"
    assert root != empty(bytes32), "dispute: empty root"
    assert self.evidence_root[round_id] == empty(bytes32), "dispute: root already posted"
    self.evidence_root[round_id] = root
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
    assert not self._verifies(a, b, c, input), "dispute: proof verifies"
    self.offence[leaf] = offender
    if slasher != empty(address):
        extcall ISlasher(slasher).slash_for_proof(offender, round_id, leaf)
    log ProofDisputed(offender=offender, round_id=round_id, leaf=leaf, disputer=msg.sender)
    return leaf
