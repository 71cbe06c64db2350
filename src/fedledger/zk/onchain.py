"""The on-chain side of update proofs: submissions signed by trainers, the evidence tree, disputes.

The Vyper dispute contract (`contracts/update_dispute.vy`) checks an evidence entry against the
round's evidence root (keccak, sorted pairs, as cheap on chain), the trainer's EIP-191 signature
over its submission, the statement (challenge, its power, flags, bounds) and the proof with the
task's verifier (`Groth16Backend.export_vyper`).
These helpers build the same leaves and paths off chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak

from fedledger.zk.backend import proof_words

DISPUTE_CONTRACT = Path(__file__).parent / "contracts" / "update_dispute.vy"
DOMAIN = keccak(text="fedledger/v1/zk/update-proof-submission")
_WORDS = ["uint256[2]", "uint256[2][2]", "uint256[2]", "uint256[12]"]


@dataclass(frozen=True)
class Submission:
    """A chunk proof as a trainer submits it: proof, public inputs and its signature."""

    round_id: int
    trainer: str  # checksum address
    proof: bytes
    public: tuple[int, ...]
    v: int
    r: int
    s: int

    def args(self) -> tuple[object, ...]:
        a, b, c = proof_words(self.proof)
        return (self.round_id, self.trainer, a, b, c, list(self.public), self.v, self.r, self.s)

    def leaf(self) -> bytes:
        a, b, c = proof_words(self.proof)
        types = ["uint256", "address", *_WORDS, "uint256", "uint256", "uint256"]
        return keccak(encode(types, [self.round_id, self.trainer, a, b, c, list(self.public), self.v, self.r, self.s]))


def submission_digest(round_id: int, proof: bytes, public: Sequence[int]) -> bytes:
    a, b, c = proof_words(proof)
    return keccak(encode(["bytes32", "uint256", *_WORDS], [DOMAIN, round_id, a, b, c, list(public)]))


def sign_submission(private_key: bytes, round_id: int, proof: bytes, public: Sequence[int]) -> Submission:
    acct = Account.from_key(private_key)
    sig = acct.sign_message(encode_defunct(primitive=submission_digest(round_id, proof, public)))
    return Submission(round_id, acct.address, bytes(proof), tuple(int(v) for v in public), sig.v, sig.r, sig.s)


def _pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if int.from_bytes(a, "big") <= int.from_bytes(b, "big") else keccak(b + a)


def evidence_tree(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """(root, path per leaf) of the keccak sorted-pair tree; an odd node is promoted unchanged."""
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
