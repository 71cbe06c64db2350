"""The on-chain side of update proofs: submissions signed by trainers, the proofs tree, disputes.

The Vyper dispute contract (`contracts/update_dispute.vy`) checks a submission against the proofs
root and the challenge the round's finalized result posted on the task manager
(`TaskManager.round_binding`; keccak, sorted pairs, as cheap on chain), the trainer's EIP-712
signature over it, the statement (challenge, its power, flags, bounds) and the proof with the
task's verifier (`Groth16Backend.export_vyper`). The signed digest's domain is (name, version,
chain id, dispute contract) and its message (task, round, attempt, member, proof, public inputs):
a submission answers one statement of one task's round attempt, on one chain, through one
dispute contract (`DisputeDomain`), and cannot be replayed anywhere else.
These helpers build and sign the same digests, leaves and paths off chain; eth_account's EIP-712
encoder computes the digest, independently of the contract's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi import encode
from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils import keccak, to_checksum_address

from fedledger.zk.backend import proof_words

DISPUTE_CONTRACT = Path(__file__).parent / "contracts" / "update_dispute.vy"
DOMAIN_NAME = "fedledger UpdateDispute"
DOMAIN_VERSION = "1"
SUBMISSION_TYPES = {
    "ProofSubmission": [
        {"name": "taskId", "type": "uint256"},
        {"name": "roundId", "type": "uint256"},
        {"name": "attempt", "type": "uint256"},
        {"name": "member", "type": "address"},
        {"name": "a", "type": "uint256[2]"},
        {"name": "b", "type": "uint256[2][2]"},
        {"name": "c", "type": "uint256[2]"},
        {"name": "input", "type": "uint256[12]"},
    ]
}
#: secp256k1 group order / 2: the dispute contract refuses signatures with s above it (EIP-2)
HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


@dataclass(frozen=True)
class DisputeDomain:
    """Where a submission can be disputed: the chain, the task's dispute contract and the task.

    A trainer reads the dispute contract from the chain (`Ledger.task_dispute(task_id)`) before it
    signs; its `task_id()` must be the task the trainer proves for.
    """

    chain_id: int
    dispute: str  # the UpdateDispute contract (EIP-712 verifyingContract)
    task_id: int


@dataclass(frozen=True)
class Submission:
    """A chunk proof as a trainer submits it: where it counts, proof, public inputs and signature."""

    domain: DisputeDomain
    round_id: int
    attempt: int
    trainer: str  # checksum address
    proof: bytes
    public: tuple[int, ...]
    v: int
    r: int
    s: int

    def digest(self) -> bytes:
        return submission_digest(self.domain, self.round_id, self.attempt, self.trainer, self.proof, self.public)

    def args(self) -> tuple[object, ...]:
        """`UpdateDispute.dispute`'s arguments before the Merkle path."""
        a, b, c = proof_words(self.proof)
        return (self.round_id, self.attempt, self.trainer, a, b, c, list(self.public), self.v, self.r, self.s)

    def leaf(self) -> bytes:
        """The proofs-root leaf: keccak256(abi_encode(member, digest, v, r, s))."""
        types = ["address", "bytes32", "uint256", "uint256", "uint256"]
        return keccak(encode(types, [self.trainer, self.digest(), self.v, self.r, self.s]))


def typed_submission(
    domain: DisputeDomain, round_id: int, attempt: int, member: str, proof: bytes, public: Sequence[int]
) -> SignableMessage:
    """The EIP-712 message a trainer signs for one chunk proof of (task, round, attempt)."""
    if len(public) != 12:
        raise ValueError(f"an update chunk proof has 12 public inputs, got {len(public)}")
    a, b, c = proof_words(proof)
    message: dict[str, Any] = {
        "taskId": domain.task_id,
        "roundId": round_id,
        "attempt": attempt,
        "member": to_checksum_address(member),
        "a": a,
        "b": b,
        "c": c,
        "input": [int(x) for x in public],
    }
    domain_data = {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": domain.chain_id,
        "verifyingContract": to_checksum_address(domain.dispute),
    }
    return encode_typed_data(domain_data, SUBMISSION_TYPES, message)


def submission_digest(
    domain: DisputeDomain, round_id: int, attempt: int, member: str, proof: bytes, public: Sequence[int]
) -> bytes:
    """keccak256(0x19 0x01 || domain separator || struct hash): what the contract recovers the signer from."""
    m = typed_submission(domain, round_id, attempt, member, proof, public)
    return keccak(b"\x19" + m.version + m.header + m.body)


def sign_submission(
    private_key: bytes, domain: DisputeDomain, round_id: int, attempt: int, proof: bytes, public: Sequence[int]
) -> Submission:
    """A trainer's signed submission of one chunk proof for attempt `attempt` of round `round_id`."""
    acct = Account.from_key(private_key)
    sig = acct.sign_message(typed_submission(domain, round_id, attempt, acct.address, proof, public))
    return Submission(
        domain, round_id, attempt, acct.address, bytes(proof), tuple(int(v) for v in public), sig.v, sig.r, sig.s
    )


def _pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if int.from_bytes(a, "big") <= int.from_bytes(b, "big") else keccak(b + a)


def evidence_tree(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """(root, path per leaf) of the keccak sorted-pair tree (the proofs root); an odd node is promoted unchanged."""
    if not leaves:
        raise ValueError("an evidence tree needs at least one leaf")
    paths: list[list[bytes]] = [[] for _ in leaves]
    level = [(leaf, [i]) for i, leaf in enumerate(leaves)]
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            (a, ia), (b, ib) = level[i], level[i + 1]
            for j in ia:
                paths[j].append(b)
            for j in ib:
                paths[j].append(a)
            nxt.append((_pair(a, b), ia + ib))
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0][0], paths
