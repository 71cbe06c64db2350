"""A round's evidence: what the aggregator stores and every validator and auditor re-checks.

The chain records a round's model hash and an evidence Merkle root. The leaves are the blob addresses of
the new model and of an `Evidence` blob (the previous model's address and, where the server sees
individual updates, the updates and the weights that combine them). A `RoundManifest` blob lists the
leaves; `BlobStore` files it under the root (`blobs/roots/<root>`), an untrusted lookup that is always
verified by recomputing the root. So the chain plus the blob store alone are enough to re-check a round.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fedledger.core.blobstore import BlobStore
from fedledger.core.errors import IntegrityError
from fedledger.core.merkle import MerkleTree
from fedledger.core.vectors import from_bytes

EVIDENCE_VERSION = 3


@dataclass(frozen=True)
class Settlement:
    """Who the round pays and scores: the values behind the posted reward and reputation roots."""

    contributors: tuple[str, ...] = ()  # addresses whose update is in the aggregate
    faulty: tuple[str, ...] = ()  # addresses named as faulty (slashed when the round finalizes)
    rewards: dict[str, int] = field(default_factory=dict)
    reputation: dict[str, int] = field(default_factory=dict)  # every member ever scored, after this round
    # the committee's score consensus behind `rewards` (`scoring.ScoreOutcome.to_json`: consensus per member,
    # agreement per validator, why the aggregator and each validator was or was not paid); None: not scored
    scores: dict[str, Any] | None = None

    def unpaid(self, pool: int) -> int:
        """The part of the contributors' `pool` these rewards pay nobody (it goes back to the task's escrow)."""
        return pool - sum(self.rewards.values()) if self.rewards else 0

    def to_json(self) -> dict[str, Any]:
        out = {"contributors": list(self.contributors), "faulty": list(self.faulty),
               "rewards": {a: str(v) for a, v in self.rewards.items()}, "reputation": self.reputation}
        return out if self.scores is None else {**out, "scores": self.scores}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Settlement:
        return cls(tuple(data["contributors"]), tuple(data["faulty"]),
                   {a: int(v) for a, v in data["rewards"].items()}, {a: int(v) for a, v in data["reputation"].items()},
                   data.get("scores"))


@dataclass(frozen=True)
class Evidence:
    """Everything a validator needs to recompute the round from public material.

    - `previous_model`: the model the round starts from;
    - `deltas`, `weights`: the visible updates and the weights that combine them, where the server sees them;
    - `transcript`: every signed message the aggregator accepted from the trainers, in order (the signed
      updates; or under secure aggregation the SecAgg+ messages with the masked inputs, survivor signatures
      and unmasking shares, the commitments, proofs and blame reveals). Validators verify each signature
      and recompute the round from these alone (`fedledger.protocol.secure.replay`);
    - `state`: what the round carries to the next (clip norm, rounds released, server strategy state),
      recomputed by validators and chained from the previous round's;
    - `settlement`: rewards and reputation.
    """

    previous_model: bytes  # blob address
    deltas: np.ndarray | None  # float32 [survivors, d], or None when updates are hidden (secure aggregation)
    weights: np.ndarray | None  # float64 [survivors]: new model = previous + weights @ deltas
    settlement: Settlement = field(default_factory=Settlement)
    transcript: tuple[bytes, ...] = ()
    state: dict[str, Any] | None = None
    deterministic: bool = False  # the round's secrets were derived from the public seed (simulation and tests only)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        settlement = json.dumps(self.settlement.to_json(), sort_keys=True).encode()
        arrays: dict[str, Any] = {"version": np.array([EVIDENCE_VERSION]),
                  "previous_model": np.frombuffer(self.previous_model, dtype=np.uint8),
                  "settlement": np.frombuffer(settlement, dtype=np.uint8),
                  "deterministic": np.array([self.deterministic])}
        if self.deltas is not None and self.weights is not None:
            arrays |= {"deltas": self.deltas.astype("<f4"), "weights": self.weights.astype("<f8")}
        if self.transcript:
            framed = b"".join(len(m).to_bytes(4, "big") + m for m in self.transcript)
            arrays["transcript"] = np.frombuffer(framed, dtype=np.uint8)
        if self.state is not None:
            arrays["state"] = np.frombuffer(json.dumps(self.state, sort_keys=True).encode(), dtype=np.uint8)
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Evidence:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                if int(z["version"][0]) != EVIDENCE_VERSION:
                    raise IntegrityError(f"evidence version {int(z['version'][0])} is not {EVIDENCE_VERSION}")
                settlement = Settlement.from_json(json.loads(bytes(z["settlement"])))
                flag = z.get("deterministic")
                deterministic = bool(flag is not None and flag.dtype == np.bool_ and flag.shape == (1,) and flag[0])
                transcript = _unframe(bytes(z["transcript"])) if "transcript" in z else ()
                state = json.loads(bytes(z["state"])) if "state" in z else None
                return cls(bytes(z["previous_model"]), z.get("deltas"), z.get("weights"), settlement, transcript,
                           state, deterministic)
        except (ValueError, KeyError, TypeError, OSError) as e:
            raise IntegrityError(f"evidence blob is malformed: {e}") from None

    def recompute(self, previous: torch.Tensor) -> torch.Tensor | None:
        """The new model implied by the visible updates, or None if updates are hidden."""
        if self.deltas is None or self.weights is None:
            return None
        step = self.weights @ self.deltas.astype(np.float64)
        return previous + torch.from_numpy(step.astype(np.float32))


def _unframe(data: bytes) -> tuple[bytes, ...]:
    out, pos = [], 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError("truncated transcript")
        n = int.from_bytes(data[pos : pos + 4], "big")
        if pos + 4 + n > len(data):
            raise ValueError("truncated transcript")
        out.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return tuple(out)


#: `Evidence.state` of a visible round under a stateful strategy (an adaptive server optimizer): the blob
#: addresses (hex) of the server state the round starts from and the state it leaves. `strategy_in` is the
#: previous finalized round's `strategy_out` (round 1: the strategy's initial state); validators recompute
#: `strategy_out` and the model from `strategy_in` and the signed updates (`roles.RoundChecker`).
STRATEGY_IN, STRATEGY_OUT = "strategy_in", "strategy_out"

_STATE_MAGIC = b"fedledger/strategy-state/1\n"


def encode_strategy_state(state: dict[str, torch.Tensor]) -> bytes:
    """A strategy's `state_dict` as canonical bytes (one encoding per state, so its blob address names it):
    a magic line, a 4-byte big-endian length, a JSON header `[[name, length], ...]` sorted by name, then each
    tensor as little-endian float32 in that order. Only 1-D float32 tensors (server optimizer moments)."""
    header, body = [], []
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or t.dim() != 1:
            raise ValueError(f"strategy state {name!r} is not a float32 vector")
        header.append([name, int(t.numel())])
        body.append(t.detach().numpy().astype("<f4").tobytes())
    head = json.dumps(header, separators=(",", ":")).encode()
    return _STATE_MAGIC + len(head).to_bytes(4, "big") + head + b"".join(body)


def decode_strategy_state(data: bytes) -> dict[str, torch.Tensor]:
    """The inverse of `encode_strategy_state`; anything else (another encoding of the same tensors too) raises
    `IntegrityError`."""
    try:
        if not data.startswith(_STATE_MAGIC):
            raise ValueError("not a strategy state")
        pos = len(_STATE_MAGIC)
        n = int.from_bytes(data[pos : pos + 4], "big")
        header = json.loads(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
        out: dict[str, torch.Tensor] = {}
        for name, length in header:
            if not isinstance(name, str) or not isinstance(length, int) or length < 0 or name in out:
                raise ValueError("bad header")
            raw = data[pos : pos + 4 * length]
            if len(raw) != 4 * length:
                raise ValueError("truncated")
            out[name] = torch.from_numpy(np.frombuffer(raw, dtype="<f4").astype(np.float32))
            pos += 4 * length
        if pos != len(data) or encode_strategy_state(out) != data:
            raise ValueError("not canonical")
        return out
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise IntegrityError(f"the strategy state blob is malformed: {e}") from None


@dataclass(frozen=True)
class RoundManifest:
    """The leaves of a round's evidence Merkle tree: [model address, evidence address]."""

    model: bytes
    evidence: bytes

    @property
    def leaves(self) -> list[bytes]:
        return [self.model, self.evidence]

    @property
    def root(self) -> bytes:
        return MerkleTree(self.leaves).root

    def to_bytes(self) -> bytes:
        return json.dumps({"version": EVIDENCE_VERSION, "leaves": [x.hex() for x in self.leaves]}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> RoundManifest:
        try:
            leaves = [bytes.fromhex(x) for x in json.loads(data)["leaves"]]
            return cls(*leaves)
        except (ValueError, KeyError, TypeError) as e:
            raise IntegrityError(f"round manifest is malformed: {e}") from None

    def store(self, blobs: BlobStore) -> bytes:
        """Put the manifest and file it under its root; returns the root."""
        address = blobs.put(self.to_bytes())
        blobs.name(self.root, address)
        return self.root

    @classmethod
    def find(cls, blobs: BlobStore, root: bytes) -> RoundManifest:
        manifest = cls.from_bytes(blobs.get(blobs.resolve(root)))
        if manifest.root != root:
            raise IntegrityError(f"the manifest filed under root 0x{root.hex()} has another root")
        return manifest


@dataclass(frozen=True)
class CheckedRound:
    model: torch.Tensor
    previous_model: bytes
    recomputed: bool  # the model was recomputed from visible updates (else only hashes were checked)
    settlement: Settlement = field(default_factory=Settlement)
    evidence: Evidence | None = None


def check_round(blobs: BlobStore, model_hash: bytes, evidence_root: bytes) -> CheckedRound:
    """Re-check a round's model and evidence against what the chain recorded; raise `IntegrityError` if not."""
    manifest = RoundManifest.find(blobs, evidence_root)
    if manifest.model != model_hash:
        raise IntegrityError("the evidence names another model than the chain records")
    model = from_bytes(blobs.get(manifest.model))
    evidence = Evidence.from_bytes(blobs.get(manifest.evidence))
    previous = from_bytes(blobs.get(evidence.previous_model))
    recomputed = evidence.recompute(previous)
    if recomputed is not None and not torch.allclose(recomputed, model, atol=1e-5, rtol=1e-4):
        gap = float((recomputed - model).abs().max())
        raise IntegrityError(f"the model is not the aggregate of the round's updates (max difference {gap:.3g})")
    return CheckedRound(model, evidence.previous_model, recomputed is not None, evidence.settlement, evidence)
