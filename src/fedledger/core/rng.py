"""Randomness: public reproducible choices from the run seed, and secrets from an `Entropy` source.

Two kinds of randomness, never mixed:

* **Public choices** (data partition, model initialisation, local minibatch order, simulated dropouts,
  attack membership): `derive_seed` / `numpy_rng` / `torch_generator` derive generators from the run's
  seed and a path of labels, so `--seed` reproduces them. The seed is in the task spec, whose hash is on
  chain: nothing derived from it is secret.
* **Secrets** (identity keys, DP noise and stochastic rounding, SecAgg+ randomness, commitment hiding
  randomness and blindings, DP-SGD noise and sampling): drawn from an `Entropy` passed in by the caller.
  `SystemEntropy` reads the operating system's CSPRNG (`os.urandom`) for every key; it is what every run
  uses unless asked otherwise. `DeterministicEntropy(seed)` derives every key from a seed: for
  simulations and tests that must reproduce bit for bit, never for a run whose secrets matter (its
  outputs say so, and a run against an external chain refuses it).

An `Entropy` hands out domain-separated keys and streams per (purpose, member, round, attempt, label):
the context is encoded injectively (length-prefixed, with presence markers) under SHA-256, so two
different contexts never share a stream, and a reopened attempt of a round never reuses the noise of an
earlier attempt. `child(...)` fixes a sub-source: for `SystemEntropy` a child is keyed by 32 fresh OS
bytes held only in memory, so the same secret can be redrawn within the child (for example the same
noise share when a round is summed again without a blamed member) while nothing outside the process can
derive it.

Samplers that take bytes (`CryptoRng`: AES-256-CTR keyed by 32 bytes, exact rejection sampling) draw
straight from the key; numpy generators are seeded with the full 256-bit key (SeedSequence keeps all
of it); torch generators only take a 64-bit seed (`torch.Generator.manual_seed`), so a torch stream has
64 secret bits: see docs/privacy.md, "Randomness".
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from enum import StrEnum
from typing import Protocol

import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fedledger.core.hashing import Usage, domain_hash

KEY_BYTES = 32


# -- public, reproducible choices ------------------------------------------------------------------
def derive_seed(seed: int, *labels: object) -> int:
    """A 63-bit seed derived from the run seed and a path of labels (public: never for a secret)."""
    text = "/".join([str(seed), *map(str, labels)]).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


def numpy_rng(seed: int, *labels: object) -> np.random.Generator:
    """A public, reproducible numpy generator (data partition, sampling): not for secrets."""
    return np.random.default_rng(derive_seed(seed, *labels))


def torch_generator(seed: int, *labels: object) -> torch.Generator:
    """A public, reproducible torch generator (minibatch order): not for secrets."""
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, *labels))
    return g


# -- the CSPRNG --------------------------------------------------------------------------------------
def random_bytes(n: int) -> bytes:
    """`n` bytes from the operating system's CSPRNG: the only place fedledger reads the OS for secrets."""
    if n < 0:
        raise ValueError("n must be non-negative")
    return os.urandom(n)


class ByteSource(Protocol):
    """Anything that hands out uniform bytes (`CryptoRng`; numpy's Generator also fits, for tests)."""

    def bytes(self, n: int) -> bytes: ...


class CryptoRng:
    """A CSPRNG stream: AES-256-CTR keyed by 32 bytes, read as little-endian uint64 words, with the exact,
    vectorized samplers the privacy and secure-aggregation code needs (uniform integers below a bound by
    rejection, fair bits, uniform floats with 53 random bits). Secret exactly when its key is."""

    __slots__ = ("_enc",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"CryptoRng needs a 32-byte key, got {len(key)} bytes")
        self._enc = Cipher(algorithms.AES(key), modes.CTR(b"\x00" * 16)).encryptor()

    @classmethod
    def from_os(cls) -> CryptoRng:
        return cls(random_bytes(KEY_BYTES))

    def bytes(self, n: int) -> bytes:
        return self._enc.update(bytes(n))

    def words(self, n: int) -> np.ndarray:
        """`n` uniform uint64 words."""
        return np.frombuffer(self._enc.update(bytes(8 * n)), dtype="<u8").astype(np.uint64, copy=False)

    def below(self, bound: np.ndarray | int, size: int | None = None) -> np.ndarray:
        """Exactly uniform integers in [0, bound) (bound an int or uint64 array, 1 <= bound < 2**63).

        Rejection sampling on 64-bit words: a word u is kept when u < 2**64 - (2**64 mod bound),
        so every residue is equally likely; rejected positions are redrawn (vectorized).
        """
        b = np.asarray(bound, dtype=np.uint64)
        if size is not None:
            b = np.broadcast_to(b, (size,))
        b = np.ascontiguousarray(b).reshape(-1)
        if b.size and (int(b.min()) < 1 or int(b.max()) >= 1 << 63):
            raise ValueError("bound must be in [1, 2**63)")
        rem = (np.uint64(0) - b) % b  # 2**64 mod b, in wrapping uint64 arithmetic
        limit = np.uint64(0) - rem  # 2**64 - rem (0 means no rejection needed: b divides 2**64)
        out = np.empty(b.size, dtype=np.uint64)
        todo = np.arange(b.size)
        while todo.size:
            u = self.words(todo.size)
            lim = limit[todo]
            ok = (lim == 0) | (u < lim)
            idx = todo[ok]
            out[idx] = u[ok] % b[idx]
            todo = todo[~ok]
        return out.reshape(np.shape(bound) if size is None else (size,))

    def bits(self, n: int) -> np.ndarray:
        """`n` fair bits as a bool array."""
        raw = np.frombuffer(self._enc.update(bytes((n + 7) // 8)), dtype=np.uint8)
        return np.unpackbits(raw, bitorder="little")[:n].astype(bool)

    def uniform(self, n: int) -> np.ndarray:
        """`n` floats uniform on [0, 1) with 53 random bits each."""
        return (self.words(n) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


# -- entropy sources -----------------------------------------------------------------------------------
class Purpose(StrEnum):
    """What a secret is for; each purpose is its own stream."""

    ATTEMPT = "attempt"  # a child fixed for one (round, attempt): everything the attempt draws
    IDENTITY = "identity"  # a member's long-term signing / key-agreement seed
    DP_NOISE = "dp-noise"  # discrete Gaussian noise shares and stochastic rounding
    SECAGG = "secagg"  # SecAgg+ ephemeral keys, mask seeds, Shamir coefficients
    COMMITMENT = "commitment"  # commitment hiding randomness and linear-check blindings
    DPSGD = "dpsgd"  # DP-SGD Gaussian noise and Poisson sampling


def _opt_int(name: bytes, value: int | None) -> bytes:
    if value is None:
        return name + b"\x00"
    v = int(value)
    return name + b"\x01" + v.to_bytes((v.bit_length() + 8) // 8 or 1, "big", signed=True)


def context_parts(purpose: Purpose, member: int | None, round: int | None, attempt: int | None,
                  label: str) -> tuple[bytes, ...]:
    """The injective encoding of a stream's context (each part is length-prefixed by `domain_hash`)."""
    return (Purpose(purpose).value.encode(), _opt_int(b"m", member), _opt_int(b"r", round),
            _opt_int(b"a", attempt), label.encode())


class Entropy(ABC):
    """A source of secrets. Ask for one per purpose and context; pass it down, never derive it."""

    deterministic: bool

    @abstractmethod
    def key(self, purpose: Purpose, *, member: int | None = None, round: int | None = None,
            attempt: int | None = None, label: str = "") -> bytes:
        """32 secret bytes for this context."""

    def child(self, purpose: Purpose, *, member: int | None = None, round: int | None = None,
              attempt: int | None = None, label: str = "") -> Entropy:
        """A sub-source fixed for this context: the same key for the same context within it."""
        key = self.key(purpose, member=member, round=round, attempt=attempt, label=label)
        return KeyedEntropy(key, deterministic=self.deterministic)

    def stream(self, purpose: Purpose, *, member: int | None = None, round: int | None = None,
               attempt: int | None = None, label: str = "") -> CryptoRng:
        """A CSPRNG stream for this context (exact samplers draw from it directly)."""
        return CryptoRng(self.key(purpose, member=member, round=round, attempt=attempt, label=label))

    def numpy(self, purpose: Purpose, *, member: int | None = None, round: int | None = None,
              attempt: int | None = None, label: str = "") -> np.random.Generator:
        """A numpy generator seeded with the context's full 256-bit key."""
        key = self.key(purpose, member=member, round=round, attempt=attempt, label=label)
        return np.random.default_rng(np.random.SeedSequence(int.from_bytes(key, "big")))

    def torch(self, purpose: Purpose, *, member: int | None = None, round: int | None = None,
              attempt: int | None = None, label: str = "") -> torch.Generator:
        """A torch generator seeded from the context's key (torch takes 64 bits of it)."""
        key = self.key(purpose, member=member, round=round, attempt=attempt, label=label)
        g = torch.Generator()
        g.manual_seed(int.from_bytes(key[:8], "big") >> 1)
        return g

    def describe(self) -> dict[str, object]:
        """What results.json and the round evidence record about the source."""
        if self.deterministic:
            return {"deterministic": True,
                    "source": "derived from the run seed (public): simulation and tests only, no secret is secret"}
        return {"deterministic": False, "source": "operating system CSPRNG (os.urandom)"}


class SystemEntropy(Entropy):
    """Every key straight from the operating system's CSPRNG: the default for every run."""

    deterministic = False

    def key(self, purpose: Purpose, *, member: int | None = None, round: int | None = None,
            attempt: int | None = None, label: str = "") -> bytes:
        context_parts(purpose, member, round, attempt, label)  # validates the purpose
        return random_bytes(KEY_BYTES)


class KeyedEntropy(Entropy):
    """Keys derived from a root key: key(context) = SHA-256(domain, root, context). Secret exactly when
    the root is (a `SystemEntropy` child's root is fresh OS bytes; a `DeterministicEntropy`'s is public)."""

    def __init__(self, root: bytes, *, deterministic: bool) -> None:
        if len(root) != KEY_BYTES:
            raise ValueError(f"an entropy root is {KEY_BYTES} bytes, got {len(root)}")
        self._root = bytes(root)
        self.deterministic = deterministic

    def key(self, purpose: Purpose, *, member: int | None = None, round: int | None = None,
            attempt: int | None = None, label: str = "") -> bytes:
        return domain_hash(Usage.RNG, self._root, *context_parts(purpose, member, round, attempt, label))

    def __repr__(self) -> str:  # never print the root
        return f"{type(self).__name__}(deterministic={self.deterministic})"


class DeterministicEntropy(KeyedEntropy):
    """INSECURE BY DESIGN: every secret derived from `seed`, for simulations and tests that must reproduce
    bit for bit. Anyone who knows the seed (it is in the task spec) recomputes every key, noise share and
    blinding. Runs using it say `deterministic: true` in results.json and in each round's evidence."""

    def __init__(self, seed: int | bytes) -> None:
        raw = seed if isinstance(seed, bytes) else int(seed).to_bytes(32, "big", signed=True)
        super().__init__(domain_hash(Usage.RNG, b"deterministic-entropy", raw), deterministic=True)


def entropy_for(deterministic: bool, seed: int) -> Entropy:
    """The one place a run decides: `DeterministicEntropy(seed)` when asked, else `SystemEntropy()`."""
    return DeterministicEntropy(seed) if deterministic else SystemEntropy()
