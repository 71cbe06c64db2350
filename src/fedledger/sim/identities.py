"""The simulated members' long-term keys: the secret half of the PKI the chain holds.

Each member's identity (Ed25519 signing key, X25519 key agreement derived from it) is 32 secret bytes
from the run's `Entropy` (fedledger.core.rng): fresh OS randomness unless the run is deterministic. The
public halves are registered on chain when the federation is set up, so a run that resumes on the same
output directory must find the same secrets: they are kept in `DIR/keys/member-<i>.key` (one file per
member, readable by the owner only), the simulation's stand-in for each member's own keystore. A
deterministic run re-derives them from the seed and writes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from fedledger.core.errors import IntegrityError
from fedledger.core.rng import KEY_BYTES, Entropy, Purpose
from fedledger.secagg.keys import Identity

KEYS_DIR = "keys"


ROLE_IDENTITY_OFFSET = 1_000_000  # stream numbers of the non-trainer accounts' keys: offset + account


def member_identities(entropy: Entropy, members: int, out: Path | None) -> dict[int, Identity]:
    """Member i's identity for i in range(members): derived (deterministic), loaded from `out`, or drawn."""
    return _identities(entropy, {i: (i, f"member-{i}.key") for i in range(members)}, out)


def role_identities(entropy: Entropy, accounts: list[int], out: Path | None) -> dict[int, Identity]:
    """The signing keys of the simulated aggregator, validator and owner accounts (dev account numbers), kept
    like the members' keys (`DIR/keys/role-<account>.key`) so a resumed run signs with the registered ones."""
    return _identities(entropy, {a: (ROLE_IDENTITY_OFFSET + a, f"role-{a}.key") for a in accounts}, out)


def _identities(entropy: Entropy, wanted: dict[int, tuple[int, str]], out: Path | None) -> dict[int, Identity]:
    if entropy.deterministic or out is None:
        return {i: Identity(entropy.key(Purpose.IDENTITY, member=n)) for i, (n, _) in wanted.items()}
    folder = out / KEYS_DIR
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    identities = {}
    for i, (n, name) in wanted.items():
        path = folder / name
        if path.exists():
            secret = path.read_bytes()
            if len(secret) != KEY_BYTES:
                raise IntegrityError(f"{path} does not hold a {KEY_BYTES}-byte key")
        else:
            secret = entropy.key(Purpose.IDENTITY, member=n)
            _write_secret(path, secret)
        identities[i] = Identity(secret)
    return identities


def _write_secret(path: Path, secret: bytes) -> None:
    """Create `path` with mode 0600 before any byte is written, then rename it into place atomically."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, secret)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
