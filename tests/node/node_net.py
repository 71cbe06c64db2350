"""Helpers of the node tests: a real anvil with the contracts, and members whose nodes run real gRPC
servers with real TLS on 127.0.0.1 (ephemeral ports), pinned through the registry on that chain."""

from __future__ import annotations

import itertools
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from fedledger.ledger import Ledger, Role
from fedledger.ledger.types import Endpoint
from fedledger.node import CidStore, GrpcTransport, NodeIdentity, PeerDirectory, RetryPolicy
from fedledger.node.tls import TLS_NAME
from fedledger.node.transport import META_MSG_ID, META_SENDER
from fedledger.secagg.keys import Identity

FAST = RetryPolicy(attempts=12, base=0.02, cap=0.3, total=4.0, rpc_timeout=3.0)
_accounts = itertools.count(60)


class SharedRegistry:
    """The chain reads of several in-process nodes over one web3 session, one at a time (separate node
    processes each have their own session)."""

    def __init__(self, ledger: Ledger, lock: threading.Lock) -> None:
        self._ledger = ledger
        self._lock = lock

    def endpoint(self, address: str | None = None) -> Endpoint | None:
        with self._lock:
            return self._ledger.endpoint(address)

    def endpoints(self) -> dict[str, Endpoint]:
        with self._lock:
            return self._ledger.endpoints()


@dataclass
class Member:
    ledger: Ledger
    identity: NodeIdentity
    root: Path

    @property
    def address(self) -> str:
        return self.ledger.address


class Net:
    def __init__(self, chain: Ledger, tmp: Path) -> None:
        self.chain = chain
        self.tmp = tmp
        self.lock = threading.Lock()
        self.nodes: list[GrpcTransport] = []
        self.members: dict[GrpcTransport, Member] = {}

    def member(self, role: Role = Role.TRAINER) -> Member:
        ledger = self.chain.dev(next(_accounts))
        if ledger.member() is None:
            ledger.register(role, Identity(os.urandom(32)).public_bytes)
        return Member(ledger, NodeIdentity.generate(ledger.address), self.tmp / ledger.address)

    def directory(self) -> PeerDirectory:
        return PeerDirectory(SharedRegistry(self.chain, self.lock), ttl=1.0, probe_timeout=1.0, probe_retry=0.2)

    def node(
        self,
        member: Member | None = None,
        *,
        identity: NodeIdentity | None = None,
        publish: bool = True,
        listen: str = "127.0.0.1:0",
        cls: type[GrpcTransport] = GrpcTransport,
        **kw: Any,
    ) -> GrpcTransport:
        """A started node for `member` (a new one by default) presenting `identity` (the member's by default),
        its endpoint and the member's own certificate fingerprint published on chain."""
        m = member or self.member()
        kw.setdefault("retry", FAST)
        t = cls(
            m.address,
            identity or m.identity,
            self.directory(),
            listen=listen,
            blobs=CidStore(m.root / "blobs"),
            **kw,
        ).start()
        self.nodes.append(t)
        self.members[t] = m
        t.register(m.address)
        if publish:
            with self.lock:
                m.ledger.set_endpoint(t.url, m.identity.fingerprint)
        return t


def raw_channel(identity: NodeIdentity, server: GrpcTransport) -> grpc.Channel:
    """A TLS channel to `server` presenting `identity`'s certificate, for calls the transport would never make."""
    creds = grpc.ssl_channel_credentials(
        root_certificates=server.identity.cert_pem,
        private_key=identity.key_pem,
        certificate_chain=identity.cert_pem,
    )
    return grpc.secure_channel(server.url, creds, options=[("grpc.ssl_target_name_override", TLS_NAME)])


def raw_metadata(claimed: str, msg_id: str = "") -> list[tuple[str, str]]:
    md = [(META_SENDER, claimed)]
    if msg_id:
        md.append((META_MSG_ID, msg_id))
    return md
