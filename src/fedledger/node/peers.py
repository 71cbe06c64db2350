"""Who a peer is, from the chain: its endpoint and the TLS certificate its registered fingerprint pins.

The registry (`Ledger.endpoint`, `Ledger.endpoints`) maps a member address to the URL of its node
and the SHA-256 of its certificate. `PeerDirectory` turns that into what TLS needs:
- to connect to a peer, the peer's certificate itself (gRPC pins the one trust anchor we give it): we
  read it off a TLS handshake with the registered URL and keep it only if it hashes to the
  registered fingerprint (`peer`);
- to accept connections, the certificates of every member with a published endpoint, each obtained
  and checked the same way (`refresh`, `trusted_pem`);
- to authenticate a call, the registered fingerprint of the address a caller claims (`check`):
  the TLS handshake proves the caller holds the key of the certificate it presented, the check
  that this certificate is the one the chain pins for the claimed address.

Chain reads are cached for `ttl` seconds; a mismatch is re-read from the chain before a refusal, so
a rotated certificate is accepted as soon as its `EndpointSet` transaction is mined, while an old
certificate stays accepted for at most `ttl` seconds after a rotation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from eth_utils import to_checksum_address

from fedledger.ledger.types import Endpoint
from fedledger.node.tls import der_to_pem, fingerprint, probe_certificate
from fedledger.protocol.transport import TransportError


class PeerRefused(TransportError):
    """A peer whose certificate is not the one the chain pins for the address it claims (or has none)."""


class Registry(Protocol):
    """The part of `Ledger` a directory reads."""

    def endpoint(self, address: str | None = None) -> Endpoint | None: ...

    def endpoints(self) -> dict[str, Endpoint]: ...


def normalize(address: str) -> str:
    try:
        return str(to_checksum_address(address))
    except (ValueError, TypeError):
        raise TransportError(f"not a member address: {address!r:.60}") from None


@dataclass(frozen=True, slots=True)
class Peer:
    address: str
    url: str
    fingerprint: bytes
    cert_pem: bytes


class PeerDirectory:
    def __init__(
        self,
        registry: Registry,
        *,
        ttl: float = 2.0,
        probe_timeout: float = 2.0,
        probe_retry: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self.ttl = ttl
        self.probe_timeout = probe_timeout
        self.probe_retry = probe_retry  # seconds before `refresh` probes an unreachable or mismatching peer again
        self._clock = clock
        self._chain_lock = threading.Lock()  # one chain read at a time (the web3 session is shared)
        self._lock = threading.Lock()
        self._registered: dict[str, tuple[float, Endpoint | None]] = {}
        self._pinned: dict[str, Peer] = {}
        self._failed: dict[tuple[str, str, bytes], float] = {}
        self.version = 0  # grows whenever the set of pinned certificates changes

    # -- the chain's view
    def endpoint(self, address: str, *, fresh: bool = False) -> Endpoint | None:
        a = normalize(address)
        now = self._clock()
        with self._lock:
            hit = self._registered.get(a)
        if hit is not None and not fresh and now - hit[0] < self.ttl:
            return hit[1]
        with self._chain_lock:
            e = self._registry.endpoint(a)
        with self._lock:
            self._registered[a] = (self._clock(), e)
        return e

    def check(self, address: str, cert_der: bytes) -> str:
        """The checksummed `address` if `cert_der` is the certificate the chain pins for it; `PeerRefused` otherwise."""
        a = normalize(address)
        fp = fingerprint(cert_der)
        e = self.endpoint(a)
        if e is None or e.tls_fingerprint != fp:
            e = self.endpoint(a, fresh=True)
        if e is None:
            raise PeerRefused(f"{a} has published no endpoint and TLS fingerprint on chain")
        if e.tls_fingerprint != fp:
            raise PeerRefused(
                f"the certificate presented for {a} has fingerprint {fp.hex()[:16]}..., "
                f"the chain pins {e.tls_fingerprint.hex()[:16]}..."
            )
        return a

    # -- pinned certificates
    def peer(self, address: str, *, fresh: bool = False) -> Peer:
        """The peer's endpoint and certificate, probed from its endpoint and checked against the chain."""
        a = normalize(address)
        e = self.endpoint(a, fresh=fresh)
        if e is None:
            raise PeerRefused(f"{a} has published no endpoint and TLS fingerprint on chain")
        with self._lock:
            p = self._pinned.get(a)
        if p is not None and (p.url, p.fingerprint) == (e.url, e.tls_fingerprint):
            return p
        return self._pin(e)

    def _pin(self, e: Endpoint, der: bytes | None = None) -> Peer:
        """Pin `e`'s certificate: `der` if it was just read off `e.url`, else probed now."""
        if der is None:
            der = probe_certificate(e.url, self.probe_timeout)
        if fingerprint(der) != e.tls_fingerprint:
            with self._lock:
                self._failed[(e.address, e.url, e.tls_fingerprint)] = self._clock()
            raise PeerRefused(
                f"the node at {e.url} presents a certificate with fingerprint {fingerprint(der).hex()[:16]}..., "
                f"the chain pins {e.tls_fingerprint.hex()[:16]}... for {e.address}"
            )
        p = Peer(e.address, e.url, e.tls_fingerprint, der_to_pem(der))
        with self._lock:
            old = self._pinned.get(e.address)
            self._pinned[e.address] = p
            if old is None or old.cert_pem != p.cert_pem:
                self.version += 1
            self._failed.pop((e.address, e.url, e.tls_fingerprint), None)
        return p

    def refresh(self, skip: str | None = None) -> int:
        """Pin every member with a published endpoint not pinned yet (or whose endpoint changed); the number pinned.

        Endpoints never probed before go first, then those whose probe failed `probe_retry` seconds ago or more: a
        newly published member is trusted after one probe and one chain read, not after the whole list of dead or
        stale peers has been tried again. A peer is probed before its record is re-read, so one that does not answer
        costs no chain read; each is pinned (and `version` bumped) as soon as it checks, and one that cannot be
        reached, read or checked only marks that peer as failed."""
        with self._chain_lock:
            listed = self._registry.endpoints()
        skip_a = normalize(skip) if skip else None
        now = self._clock()
        new: list[Endpoint] = []
        again: list[Endpoint] = []
        for a, e in listed.items():
            if a == skip_a:
                continue
            with self._lock:
                p = self._pinned.get(a)
                failed_at = self._failed.get((a, e.url, e.tls_fingerprint))
            if p is not None and (p.url, p.fingerprint) == (e.url, e.tls_fingerprint):
                continue
            if failed_at is None:
                new.append(e)
            elif now - failed_at >= self.probe_retry:
                again.append(e)
        pinned = 0
        for e in new + again:
            try:
                der = probe_certificate(e.url, self.probe_timeout)
                # the event may be older than the member's latest record: pin what the chain says now
                current = self.endpoint(e.address, fresh=True)
                if current is None:
                    raise PeerRefused(f"{e.address} has published no endpoint and TLS fingerprint on chain")
                self._pin(current, der if current.url == e.url else None)
                pinned += 1
            except Exception:  # unreachable, a mismatching certificate, a failed chain read: on to the next peer
                with self._lock:
                    self._failed[(e.address, e.url, e.tls_fingerprint)] = self._clock()
        return pinned

    def trusted_pem(self) -> list[bytes]:
        """The certificates of every pinned peer (PEM)."""
        with self._lock:
            return [p.cert_pem for p in self._pinned.values()]

    def forget(self, address: str) -> None:
        a = normalize(address)
        with self._lock:
            self._registered.pop(a, None)
