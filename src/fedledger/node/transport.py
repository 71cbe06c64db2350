"""`GrpcTransport`: the `Transport` of a node, over gRPC with mutual TLS pinned by the chain.

One transport is one member's node: it listens on `host:port`, holds the member's inbox, and sends
envelopes to other members' nodes at the endpoints the registry publishes.

Wire. No protobuf: every method is a generic bytes-in/bytes-out handler (identity serializers). A
delivered message is `Envelope.to_bytes()`, the project's canonical encoding that role messages
sign inside; nothing is ever signed over a gRPC encoding. Service `fedledger.node.v1.Node`:
- `Deliver` (unary): one envelope up to `chunk_size` bytes;
- `DeliverStream` (client stream): a larger envelope cut into `chunk_size` pieces (gRPC refuses
  messages over 4 MiB by default; the reassembled envelope is capped at `max_message`);
- `Ping` (unary): a heartbeat that answers its request;
- `Blob` (server stream): a blob by CID, in `chunk_size` pieces, verified by hash on receipt.
Every call carries the caller's member address (`fl-sender`) and deliveries a random message id
(`fl-msg-id`, so a retried delivery that did arrive is not queued twice).

Authentication. Both sides present their node certificate (`NodeIdentity`). A client connects to
a peer with the peer's own certificate as its only trust anchor, after checking that the certificate
at the registered URL hashes to the registered fingerprint (`PeerDirectory.peer`). A server accepts
TLS clients whose certificate is one of the pinned peers' (`PeerDirectory.refresh`, re-run in the
background whenever a handshake starts and the set is older than `refresh_interval`), then, per
call, refuses (UNAUTHENTICATED) a caller whose certificate is not the one the chain pins for the
address it claims, and (PERMISSION_DENIED) an envelope whose sender is not that address.

Robustness. Each call has a deadline (`RetryPolicy.rpc_timeout`); UNAVAILABLE, DEADLINE_EXCEEDED
and RESOURCE_EXHAUSTED are retried with capped exponential backoff and full jitter (delay uniform
in [0, min(cap, base * 2^attempt)]: M. Brooker, "Exponential Backoff And Jitter", AWS Architecture
Blog, 2015) until `attempts` or the `total` time budget run out; the channel is rebuilt after
UNAVAILABLE (the peer restarted, moved or rotated its certificate). The inbox is bounded in
envelopes and bytes: a full inbox answers RESOURCE_EXHAUSTED and the sender backs off.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc

from fedledger.core.errors import IntegrityError
from fedledger.node.blobs import BlobServer
from fedledger.node.cid import digest_of, verify
from fedledger.node.faults import LinkFaults
from fedledger.node.peers import PeerDirectory, PeerRefused, normalize
from fedledger.node.tls import TLS_NAME, NodeIdentity, pem_to_der
from fedledger.protocol.transport import Envelope, TransportError

T = TypeVar("T")

SERVICE = "fedledger.node.v1.Node"
DELIVER = f"/{SERVICE}/Deliver"
DELIVER_STREAM = f"/{SERVICE}/DeliverStream"
PING = f"/{SERVICE}/Ping"
BLOB = f"/{SERVICE}/Blob"
RESOLVE = f"/{SERVICE}/Resolve"  # a protocol blob address or name -> the CID this node serves it under
META_SENDER = "fl-sender"
META_MSG_ID = "fl-msg-id"
META_SIZE = "fl-size"  # a streamed envelope's declared size: refused before it is read when it cannot fit

MiB = 1 << 20
CHUNK_SIZE = 1 * MiB  # well under gRPC's 4 MiB default message limit
GRPC_MESSAGE_LIMIT = 4 * MiB
RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)
MIN_ATTEMPT = 0.02  # seconds: a retry budget with less left than this is spent
SEEN_IDS = 8192  # delivered message ids remembered for de-duplication


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, why: str) -> NoReturn:
    context.abort(code, why)
    raise AssertionError("grpc's abort returned")  # it raises; this line tells the type checker


class Backpressure(TransportError):
    """The recipient's inbox stayed full for the whole retry budget."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 10
    base: float = 0.05  # seconds
    cap: float = 2.0  # seconds
    total: float = 30.0  # seconds for all attempts of one call
    rpc_timeout: float = 30.0  # deadline of one attempt

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.cap, self.base * (2**attempt)))


class _Inbox:
    """A FIFO bounded in envelopes and in bytes (one envelope larger than the byte bound fits an empty inbox)."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: deque[bytes] = deque()
        self._bytes = 0
        self._cond = threading.Condition()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def has_room(self, size: int) -> bool:
        with self._cond:
            n = len(self._items)
            return n == 0 or (n < self.max_items and self._bytes + size <= self.max_bytes)

    def offer(self, wire: bytes) -> bool:
        with self._cond:
            n = len(self._items)
            if n and (n >= self.max_items or self._bytes + len(wire) > self.max_bytes):
                return False
            self._items.append(wire)
            self._bytes += len(wire)
            self._cond.notify()
            return True

    def take(self, timeout: float | None) -> bytes | None:
        with self._cond:
            if timeout:
                self._cond.wait_for(lambda: bool(self._items), timeout)
            if not self._items:
                return None
            wire = self._items.popleft()
            self._bytes -= len(wire)
            return wire


class GrpcTransport:
    """The network `Transport` of the member `address` (see the module docstring)."""

    def __init__(
        self,
        address: str,
        identity: NodeIdentity,
        directory: PeerDirectory,
        *,
        listen: str = "127.0.0.1:0",
        blobs: BlobServer | None = None,
        inbox_items: int = 4096,
        inbox_bytes: int = 512 * MiB,
        chunk_size: int = CHUNK_SIZE,
        max_message: int = 1024 * MiB,
        retry: RetryPolicy = RetryPolicy(),
        refresh_interval: float = 0.5,
        workers: int = 8,
        rng: random.Random | None = None,
        faults: LinkFaults | None = None,
    ) -> None:
        if not 0 < chunk_size <= GRPC_MESSAGE_LIMIT - 64 * 1024:
            raise TransportError(f"a chunk is at most {GRPC_MESSAGE_LIMIT - 64 * 1024} bytes, not {chunk_size}")
        self.address = normalize(address)
        self.identity = identity
        self.directory = directory
        self.listen = listen
        self.blobs = blobs
        self.chunk_size = chunk_size
        self.max_message = max_message
        self.retry = retry
        self.refresh_interval = refresh_interval
        self.inbox_items = inbox_items
        self.inbox_bytes = inbox_bytes
        self._rng = rng or random.Random(os.urandom(16))  # backoff jitter: needs no secrecy
        self.faults = faults  # injected partition / slow link (fedledger.node.faults), None: a healthy link
        # answers `Resolve` requests (fedledger.node.blobmap.NetBlobStore sets it); None: this node resolves nothing
        self.resolver: Callable[[bytes], bytes | None] | None = None
        self._workers = workers
        self._inboxes: dict[str, _Inbox] = {}
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._server: grpc.Server | None = None
        self._trust_version = -1
        self._refreshing = threading.Lock()
        self._last_refresh = 0.0
        self.port: int | None = None
        self.bytes_sent: dict[str, int] = defaultdict(int)
        self.bytes_received: dict[str, int] = defaultdict(int)
        self.last_seen: dict[str, float] = {}  # peer -> monotonic time of its last successful exchange
        # (claimed address or peer, why): the latest calls and blobs this node refused
        self.refused: deque[tuple[str, str]] = deque(maxlen=1024)

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        if self.port is None:
            raise TransportError("the transport is not started")
        return f"{self.listen.rpartition(':')[0]}:{self.port}"

    def start(self) -> GrpcTransport:
        self._refresh_now()
        creds = grpc.dynamic_ssl_server_credentials(
            self._server_config(), self._fetch_config, require_client_authentication=True
        )
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="fl-node"),
            options=[
                ("grpc.max_receive_message_length", self.chunk_size + 64 * 1024),
                ("grpc.max_send_message_length", self.chunk_size + 64 * 1024),
                ("grpc.so_reuseport", 0),
            ],
        )
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    SERVICE,
                    {
                        "Deliver": grpc.unary_unary_rpc_method_handler(self._on_deliver),
                        "DeliverStream": grpc.stream_unary_rpc_method_handler(self._on_deliver_stream),
                        "Ping": grpc.unary_unary_rpc_method_handler(self._on_ping),
                        "Blob": grpc.unary_stream_rpc_method_handler(self._on_blob),
                        "Resolve": grpc.unary_unary_rpc_method_handler(self._on_resolve),
                    },
                )
            ]
        )
        try:
            port = server.add_secure_port(self.listen, creds)
        except RuntimeError as e:
            raise TransportError(f"cannot listen on {self.listen}: {e}") from None
        if not port:
            raise TransportError(f"cannot listen on {self.listen}")
        server.start()
        self._server, self.port = server, port
        return self

    def stop(self, grace: float | None = None) -> None:
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
        for ch in channels:
            ch.close()
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None

    def __enter__(self) -> GrpcTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def publish(self, ledger: Any) -> None:
        """Register this node's URL and certificate fingerprint on chain (`ledger` signs as this member)."""
        if normalize(ledger.address) != self.address:
            raise TransportError(f"the ledger signs as {ledger.address}, not as this node's member {self.address}")
        ledger.set_endpoint(self.url, self.identity.fingerprint)
        self.directory.forget(self.address)

    # ------------------------------------------------------------------ server-side trust
    def _server_config(self) -> Any:
        version = self.directory.version  # read before the certificates: a pin in between reloads again later
        roots = b"".join([self.identity.cert_pem, *self.directory.trusted_pem()])
        self._trust_version = version
        return grpc.ssl_server_certificate_configuration(
            [(self.identity.key_pem, self.identity.cert_pem)], root_certificates=roots
        )

    def _fetch_config(self) -> Any:
        """Called by gRPC as each TLS handshake starts: the current trust set, refreshed in the background."""
        if time.monotonic() - self._last_refresh >= self.refresh_interval:
            threading.Thread(target=self._refresh_now, name="fl-node-refresh", daemon=True).start()
        if self.directory.version != self._trust_version:
            return self._server_config()
        return None

    def _refresh_now(self) -> None:
        if not self._refreshing.acquire(blocking=False):
            return
        try:
            self._last_refresh = time.monotonic()
            self.directory.refresh(skip=self.address)
        except Exception:
            pass
        finally:
            self._last_refresh = time.monotonic()
            self._refreshing.release()

    def _authenticate(self, context: grpc.ServicerContext) -> str:
        """The member address the caller proved: its certificate is the one the chain pins for the address it claims."""
        md = dict(context.invocation_metadata())
        claimed = md.get(META_SENDER)
        certs = context.auth_context().get("x509_pem_cert") or []
        if not isinstance(claimed, str) or not certs:
            self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, str(claimed), "no claimed address or no certificate")
        try:
            peer = self.directory.check(str(claimed), pem_to_der(certs[0]))
        except TransportError as e:
            self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, str(claimed), str(e))
        if self.faults is not None and self.faults.incoming(peer):
            _abort(context, grpc.StatusCode.UNAVAILABLE, "link dropped (injected fault)")
        self.last_seen[peer] = time.monotonic()
        return peer

    def _refuse(self, context: grpc.ServicerContext, code: grpc.StatusCode, who: str, why: str) -> NoReturn:
        with self._lock:
            self.refused.append((who, why))
        _abort(context, code, why)

    # ------------------------------------------------------------------ server-side methods
    def _accept(self, context: grpc.ServicerContext, peer: str, wire: bytes) -> bytes:
        try:
            env = Envelope.from_bytes(wire)
        except TransportError as e:
            self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, peer, str(e))
        if env.sender != peer:
            self._refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                peer,
                f"{peer} sent an envelope claiming sender {env.sender!r:.60}",
            )
        inbox = self._inboxes.get(env.recipient)
        if inbox is None:
            self._refuse(context, grpc.StatusCode.NOT_FOUND, peer, f"no inbox for {env.recipient!r:.60} on this node")
        msg_id = str(dict(context.invocation_metadata()).get(META_MSG_ID, ""))
        key = (peer, msg_id)
        with self._lock:
            if msg_id and key in self._seen:
                return b""  # a retry of a delivery that arrived: acknowledge, do not queue twice
        if not inbox.offer(wire):
            _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, f"the inbox of {env.recipient} is full")
        with self._lock:
            if msg_id:
                self._seen[key] = None
                while len(self._seen) > SEEN_IDS:
                    self._seen.popitem(last=False)
            self.bytes_received[env.recipient] += len(wire)
        return b""

    def _on_deliver(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        peer = self._authenticate(context)
        return self._accept(context, peer, request)

    def _on_deliver_stream(self, chunks: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        peer = self._authenticate(context)
        declared = str(dict(context.invocation_metadata()).get(META_SIZE, ""))
        if declared.isdigit():
            if int(declared) > self.max_message:
                self._refuse(
                    context, grpc.StatusCode.INVALID_ARGUMENT, peer, f"a message over {self.max_message} bytes"
                )
            inbox = self._inboxes.get(self.address)
            if inbox is not None and not inbox.has_room(int(declared)):  # push back before reading megabytes
                _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, f"the inbox of {self.address} is full")
        parts: list[bytes] = []
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > self.max_message:
                self._refuse(
                    context, grpc.StatusCode.INVALID_ARGUMENT, peer, f"a message over {self.max_message} bytes"
                )
            parts.append(chunk)
        return self._accept(context, peer, b"".join(parts))

    def _on_ping(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._authenticate(context)
        return request[:64]

    def _on_resolve(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._authenticate(context)
        answer = self.resolver(request[:64]) if self.resolver is not None else None
        if answer is None:
            _abort(context, grpc.StatusCode.NOT_FOUND, "this node cannot resolve that")
        return answer

    def _blob_bytes(self, cid: str) -> bytes | None:
        """The blob this node serves for `cid` (None if it has none)."""
        if self.blobs is None or not self.blobs.has(cid):
            return None
        return self.blobs.read(cid)

    def _on_blob(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        peer = self._authenticate(context)
        try:
            cid = request.decode("ascii")
            digest_of(cid)
        except (UnicodeDecodeError, ValueError, IntegrityError) as e:
            self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, peer, f"not a CID: {e}")
        try:
            data = self._blob_bytes(cid)
        except IntegrityError as e:  # corrupt on this node's disk: serve nothing rather than bad bytes
            _abort(context, grpc.StatusCode.DATA_LOSS, str(e))
        if data is None:
            _abort(context, grpc.StatusCode.NOT_FOUND, f"this node has no blob {cid}")
        view = memoryview(data)
        for i in range(0, max(len(data), 1), self.chunk_size):
            yield bytes(view[i : i + self.chunk_size])

    # ------------------------------------------------------------------ client side
    def _channel(self, recipient: str) -> grpc.Channel:
        with self._lock:
            ch = self._channels.get(recipient)
        if ch is not None:
            return ch
        peer = self.directory.peer(recipient)
        creds = grpc.ssl_channel_credentials(
            root_certificates=peer.cert_pem,
            private_key=self.identity.key_pem,
            certificate_chain=self.identity.cert_pem,
        )
        ch = grpc.secure_channel(
            peer.url,
            creds,
            options=[
                ("grpc.ssl_target_name_override", TLS_NAME),
                ("grpc.max_receive_message_length", self.chunk_size + 64 * 1024),
                ("grpc.max_send_message_length", self.chunk_size + 64 * 1024),
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 2_000),
            ],
        )
        with self._lock:
            old = self._channels.get(recipient)
            if old is not None:
                ch.close()
                return old
            self._channels[recipient] = ch
        return ch

    def _drop_channel(self, recipient: str) -> None:
        with self._lock:
            ch = self._channels.pop(recipient, None)
        if ch is not None:
            ch.close()
        self.directory.forget(recipient)

    def _call(
        self, recipient: str, what: str, fn: Callable[[grpc.Channel, float], T], policy: RetryPolicy | None = None
    ) -> T:
        """`fn(channel, timeout)` with deadlines, capped exponential backoff with jitter, and channel rebuilds."""
        policy = policy or self.retry
        end = time.monotonic() + policy.total
        last = ""
        pushed_back = False
        for attempt in range(policy.attempts):
            left = end - time.monotonic()
            if left <= MIN_ATTEMPT:  # too little left for a call to complete: stop rather than time out
                break
            code: grpc.StatusCode | None = None
            if self.faults is not None and self.faults.outgoing(recipient):  # as if the peer did not answer
                last = "UNAVAILABLE: link dropped (injected fault)"
                time.sleep(min(policy.delay(attempt, self._rng), max(0.0, end - time.monotonic())))
                continue
            try:
                out = fn(self._channel(recipient), min(policy.rpc_timeout, left))
                self.last_seen[recipient] = time.monotonic()
                return out
            except PeerRefused:
                raise
            except TransportError as e:  # the peer's endpoint cannot be reached for its certificate
                last = str(e)
                self._drop_channel(recipient)
            except grpc.RpcError as e:
                code = e.code()  # type: ignore[attr-defined]
                last = f"{code.name}: {e.details()}"  # type: ignore[attr-defined]
                if code not in RETRYABLE:
                    raise TransportError(f"{what} to {recipient} refused: {last}") from None
                if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    pushed_back = True
                if code == grpc.StatusCode.UNAVAILABLE:
                    self._drop_channel(recipient)
            pause = min(policy.delay(attempt, self._rng), max(0.0, end - time.monotonic()))
            time.sleep(pause)
        if pushed_back and last.split(":")[0] in ("RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"):
            raise Backpressure(f"{what} to {recipient}: still refused after backing off ({last})")
        raise TransportError(f"{what} to {recipient} failed after retries: {last}")

    def _metadata(self, msg_id: str | None = None) -> list[tuple[str, str]]:
        md = [(META_SENDER, self.address)]
        if msg_id:
            md.append((META_MSG_ID, msg_id))
        return md

    # ------------------------------------------------------------------ Transport
    def register(self, address: str) -> None:
        """Open the inbox of `address`: this node's member only (its certificate speaks for no one else)."""
        a = normalize(address)
        if a != self.address:
            raise TransportError(f"this node is {self.address}; it cannot receive for {a}")
        with self._lock:
            self._inboxes.setdefault(a, _Inbox(self.inbox_items, self.inbox_bytes))

    def send(self, envelope: Envelope) -> None:
        """Deliver to the recipient's node (retried, backing off while its inbox is full); raise `TransportError`."""
        if envelope.sender != self.address:
            raise TransportError(f"this node sends as {self.address}, not as {envelope.sender!r:.60}")
        recipient = normalize(envelope.recipient)
        wire = envelope.to_bytes()
        if len(wire) > self.max_message:
            raise TransportError(f"an envelope of {len(wire)} bytes is over the {self.max_message}-byte limit")
        if recipient == self.address and envelope.recipient in self._inboxes:
            self._call_local(envelope.recipient, wire)
        else:
            msg_id = os.urandom(16).hex()
            md = self._metadata(msg_id)
            if len(wire) > self.chunk_size:
                md.append((META_SIZE, str(len(wire))))
            if len(wire) <= self.chunk_size:

                def unary(ch: grpc.Channel, timeout: float) -> None:
                    ch.unary_unary(DELIVER)(wire, timeout=timeout, metadata=md)

                self._call(recipient, "delivery", unary)
            else:

                def streamed(ch: grpc.Channel, timeout: float) -> None:
                    pieces = (wire[i : i + self.chunk_size] for i in range(0, len(wire), self.chunk_size))
                    ch.stream_unary(DELIVER_STREAM)(pieces, timeout=timeout, metadata=md)

                self._call(recipient, "streamed delivery", streamed)
        with self._lock:
            self.bytes_sent[self.address] += len(wire)

    def _call_local(self, address: str, wire: bytes) -> None:
        inbox = self._inboxes[address]
        end = time.monotonic() + self.retry.total
        attempt = 0
        while not inbox.offer(wire):
            if time.monotonic() >= end:
                raise Backpressure(f"the inbox of {address} stayed full")
            time.sleep(self.retry.delay(min(attempt, 16), self._rng))
            attempt += 1
        with self._lock:
            self.bytes_received[address] += len(wire)

    def receive(self, address: str, timeout: float | None = None) -> Envelope | None:
        inbox = self._inboxes.get(address)
        if inbox is None:
            raise TransportError(f"no inbox for {address!r} on this node")
        wire = inbox.take(timeout)
        return None if wire is None else Envelope.from_bytes(wire)

    def drain(self, address: str) -> list[Envelope]:
        out = []
        while (env := self.receive(address)) is not None:
            out.append(env)
        return out

    # ------------------------------------------------------------------ heartbeats
    def ping(self, peer: str, timeout: float = 2.0) -> float:
        """One heartbeat round trip to `peer`'s node, in seconds, retried within `timeout` seconds (raises
        `TransportError` if it does not answer in time)."""
        a = normalize(peer)
        nonce = os.urandom(16)
        policy = RetryPolicy(
            attempts=self.retry.attempts, base=self.retry.base, cap=self.retry.cap, total=timeout, rpc_timeout=timeout
        )
        t0 = time.perf_counter()

        def call(ch: grpc.Channel, t: float) -> bytes:
            return ch.unary_unary(PING)(nonce, timeout=t, metadata=self._metadata())  # type: ignore[no-any-return]

        if self._call(a, "ping", call, policy) != nonce:
            raise TransportError(f"{a} answered a ping with other bytes")
        return time.perf_counter() - t0

    def heartbeat(self, peers: Sequence[str], timeout: float = 1.0) -> dict[str, float | None]:
        """Ping each peer once (within `timeout` seconds each): its round trip in seconds, or None if it is down."""
        out: dict[str, float | None] = {}
        for p in peers:
            try:
                out[normalize(p)] = self.ping(p, timeout)
            except TransportError:
                out[normalize(p)] = None
        return out

    def alive(self, peer: str, within: float) -> bool:
        """Whether `peer` exchanged anything with this node in the last `within` seconds."""
        seen = self.last_seen.get(normalize(peer))
        return seen is not None and time.monotonic() - seen <= within

    # ------------------------------------------------------------------ blobs
    def put_blob(self, data: bytes) -> str:
        if self.blobs is None:
            raise TransportError("this node has no blob store")
        return self.blobs.add(data)

    def resolve_at(self, peer: str, request: bytes, *, policy: RetryPolicy | None = None) -> bytes | None:
        """Ask `peer`'s node to resolve `request` (its `resolver`); None if it cannot. The answer is untrusted:
        the caller checks whatever it fetches with it."""

        def call(ch: grpc.Channel, timeout: float) -> bytes:
            return ch.unary_unary(RESOLVE)(request, timeout=timeout, metadata=self._metadata())  # type: ignore[no-any-return]

        try:
            return self._call(normalize(peer), "resolve", call, policy)
        except TransportError as e:
            if "NOT_FOUND" in str(e):
                return None
            raise

    def fetch_blob(self, cid: str, sources: Sequence[str], *, max_size: int | None = None,
                   policy: RetryPolicy | None = None) -> bytes:
        """The blob `cid` names: from this node's store, else from the first of `sources` that serves it.

        Received bytes are hashed before anything keeps them: a source that serves other bytes is skipped
        (`IntegrityError` if none serves the right ones), and a verified blob is cached so this node serves it
        too."""
        digest_of(cid)
        if self.blobs is not None and self.blobs.has(cid):
            return self.blobs.read(cid)
        data = self._fetch(cid, sources, lambda data: verify(cid, data), max_size=max_size, policy=policy)
        if self.blobs is not None:
            self.blobs.add(data)
        return data

    def _fetch(self, request: str, sources: Sequence[str], check: Callable[[bytes], None], *,
               max_size: int | None, policy: RetryPolicy | None) -> bytes:
        limit = self.max_message if max_size is None else max_size
        errors: list[str] = []
        tampered = False
        for source in sources:
            src = normalize(source)
            if src == self.address:
                continue

            def fetch(ch: grpc.Channel, timeout: float, src: str = src) -> bytes:
                parts: list[bytes] = []
                size = 0
                for chunk in ch.unary_stream(BLOB)(request.encode(), timeout=timeout, metadata=self._metadata()):
                    size += len(chunk)
                    if size > limit:
                        raise IntegrityError(f"{src} sent more than {limit} bytes for {request}")
                    parts.append(chunk)
                return b"".join(parts)

            try:
                data = self._call(src, "blob fetch", fetch, policy)
                check(data)
            except (TransportError, IntegrityError) as e:
                errors.append(f"{src}: {e}")
                if isinstance(e, IntegrityError):
                    tampered = True
                    with self._lock:
                        self.refused.append((src, f"served wrong bytes for {request}"))
                continue
            with self._lock:
                self.bytes_received[self.address] += len(data)
            return data
        why = f"no source served {request}: " + "; ".join(errors or ["no sources"])
        raise IntegrityError(why) if tampered else TransportError(why)
