"""`fedledger node`: one member's long-lived process (docs/node.md, "The member daemon").

It runs THE SAME role classes as the simulation (`protocol.roles`: TaskOwner, Trainer, Aggregator, Validator),
one account per process, over a `GrpcTransport`, with a blob store that fetches what it lacks from peers
(`blobmap.NetBlobStore`: by protocol address, resolved to a CID and verified on receipt). The loop: read each
task's round from the chain, build the `RoundView` every member derives alike (record, cohort from the seed,
model the round starts from), step the node's roles, sleep a poll interval when none progressed.

`idle` (the roles' "the collection or vote deadline is reached" pass): in the simulation it is the pass after
nobody progressed; here a node cannot see the others, so a role is idle once the round's (attempt, status)
and this node's own progress have not changed for `patience` wall seconds. The chain's own deadlines (the
owner's reopen) still need the chain's clock past them: see docs/node.md, "Time".

Keys. The account key: the encrypted keystore, decrypted in memory only. The role's Ed25519 identity (it signs
the member's messages and gives its X25519 key agreement, registered on chain) is DERIVED from the account
key with HKDF-SHA256 (RFC 5869; salt "fedledger/node", info "role-identity/v1"): nothing more to back up or
encrypt, a restart and a new machine with the same keystore get the same identity, and the account key
cannot be recovered from it. The TLS key is random (OS CSPRNG) and stored in STATE/tls encrypted under the
keystore password (PKCS#8, BestAvailableEncryption): rotating it is one `set_endpoint` transaction.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_account.signers.local import LocalAccount

from fedledger.core.errors import ConfigError, FedLedgerError, IntegrityError
from fedledger.core.vectors import to_bytes
from fedledger.ledger import Role, RoundStatus
from fedledger.ledger.types import ZERO32
from fedledger.node.blobmap import FETCH_POLICY, NetBlobStore
from fedledger.node.chain import load_keystore, open_chain
from fedledger.node.faults import FAULT_FILE, LinkFaults
from fedledger.node.metrics import Log, Metrics, serve
from fedledger.node.peers import PeerDirectory
from fedledger.node.tls import KEY_FILE, NodeIdentity
from fedledger.node.transport import GrpcTransport
from fedledger.node.work import (
    DataChoice,
    NodeAggregation,
    NodeWork,
    commitment,
    committed_counts,
    evaluator,
    initial_model,
    member_split,
    unsupported,
)
from fedledger.protocol import roles
from fedledger.protocol.roles import Network, RoundView, StageClock
from fedledger.protocol.rules import TaskRules, task_rules
from fedledger.protocol.score_flow import BallotBox
from fedledger.protocol.signing import Registry
from fedledger.protocol.terms import TaskTermsError, check_task_terms, read_spec
from fedledger.secagg.keys import Identity

TOKEN = 10**18
ROLES = {"trainer": Role.TRAINER, "aggregator": Role.AGGREGATOR, "validator": Role.VALIDATOR,
         "owner": Role.TASK_OWNER}
#: stake a node puts up if it has less (the simulation's amounts; at least the contract's minimum)
STAKES = {Role.TRAINER: 10 * TOKEN, Role.AGGREGATOR: 200 * TOKEN, Role.VALIDATOR: 300 * TOKEN}


def role_identity(account: LocalAccount) -> Identity:
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"fedledger/node",
                info=b"role-identity/v1").derive(bytes(account.key))
    return Identity(seed)


def parse_role(text: str) -> Role:
    names = [r.strip() for r in text.split(",") if r.strip()]
    unknown = [n for n in names if n not in ROLES]
    if unknown or not names:
        raise ConfigError(f"--roles {text!r}: choose one of {', '.join(ROLES)}")
    if len(names) > 1:
        raise ConfigError(f"--roles {text!r}: the registry gives an account exactly one role; run one node (one "
                          "keystore) per role")
    return ROLES[names[0]]


@dataclass
class NodeOptions:
    chain: str
    keystore: Path
    password: str
    listen: str
    state: Path
    role: Role = Role.TRAINER
    data: DataChoice = field(default_factory=lambda: DataChoice("shard"))
    tasks: tuple[int, ...] = ()
    deployment: Path | None = None
    advertise: str | None = None
    metrics: str | None = None
    patience: float = 10.0
    poll: float = 0.3


@dataclass
class TaskRun:
    task_id: int
    spec: dict[str, Any]
    spec_bytes: bytes  # as hashed on chain: the terms are re-checked against it before each round
    rules: TaskRules
    initial: bytes
    net: Network
    role: roles.Role
    cohorts: dict[tuple[int, int], tuple[str, ...]] = field(default_factory=dict)
    seen: set[tuple[int, int]] = field(default_factory=set)
    acted: set[tuple[int, int]] = field(default_factory=set)
    state: tuple[Any, ...] = ()
    changed: float = field(default_factory=time.monotonic)


class NodeDaemon:
    def __init__(self, opts: NodeOptions, log: Log | None = None) -> None:
        self.opts = opts
        self.log = log or Log()
        self.metrics = Metrics()
        self.clock = StageClock()
        self.runs: dict[int, TaskRun] = {}
        self.stopping = threading.Event()
        self._closers: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ start
    def start(self) -> NodeDaemon:
        o = self.opts
        account = load_keystore(o.keystore, o.password)
        o.state.mkdir(parents=True, exist_ok=True)
        self.ledger = open_chain(o.chain, o.state, deployment=o.deployment, signer=account)
        self._closers.append(self.ledger.close)
        self.address = self.ledger.address
        self.identity = role_identity(account)
        self.tls = self._tls()
        self._register()
        # the peer directory reads the chain from the transport's threads: its own session (and event index)
        peers_ledger = open_chain(o.chain, o.state / "peers", deployment=o.state / "chain" / "deployment.json")
        self._closers.append(peers_ledger.close)
        self.blobs = NetBlobStore(o.state / "blobs", sources=self._sources, policy=FETCH_POLICY)
        self.transport = GrpcTransport(self.address, self.tls, PeerDirectory(peers_ledger, ttl=1.0, probe_retry=1.0),
                                       listen=o.listen,
                                       faults=LinkFaults(o.state / FAULT_FILE)).start()  # testnet link faults
        self._closers.insert(0, lambda: self.transport.stop(0))
        self.blobs.attach(self.transport)
        url = o.advertise or self.transport.url
        current = self.ledger.endpoint(self.address)
        if current is None or current.url != url or current.tls_fingerprint != self.tls.fingerprint:
            self.ledger.set_endpoint(url, self.tls.fingerprint)
        self.transport.directory.forget(self.address)
        self.metrics.health = {"address": self.address, "role": o.role.name.lower(), "endpoint": url,
                               "tasks": list(o.tasks)}
        if o.metrics:
            server = serve(self.metrics, o.metrics)
            self._closers.insert(0, server.shutdown)
            host, port = server.server_address[:2]
            self.metrics.health["metrics"] = f"{host!s}:{port}"
        self.log("started", address=self.address, role=o.role.name.lower(), endpoint=url,
                 metrics=self.metrics.health.get("metrics"), tasks=list(o.tasks))
        return self

    def _tls(self) -> NodeIdentity:
        d = self.opts.state / "tls"
        pw = self.opts.password.encode() or None
        if (d / KEY_FILE).exists():
            return NodeIdentity.load(d, pw)
        ident = NodeIdentity.generate(self.address)
        ident.save(d, pw)
        return ident

    def _register(self) -> None:
        me = self.ledger.member()
        role = self.opts.role
        if me is None:
            self.ledger.register(role, self.identity.public_bytes, ZERO32)
            self.log("registered", role=role.name.lower())
        elif me.role is not role:
            raise ConfigError(f"{self.address} is registered as {me.role.name.lower()}, not {role.name.lower()}: "
                              "one account holds one role (use another keystore)")
        elif me.pubkey != self.identity.public_bytes:
            raise IntegrityError(f"{self.address} registered another key than this keystore derives: the node's "
                                 "messages would not verify (was it registered by another tool?)")
        stake = STAKES.get(role, 0)
        if stake:
            stake = max(stake, self.ledger.params()[f"min_stake_{role.name.lower()}"])
            have = self.ledger.stake_of()
            if have < stake:
                if self.ledger.utility_balance() < stake - have:
                    raise ConfigError(f"{self.address} holds {self.ledger.utility_balance() / TOKEN:g} utility tokens "
                                      f"and must stake {(stake - have) / TOKEN:g} more as a {role.name.lower()}")
                self.ledger.stake(stake - have)
                self.log("staked", amount=(stake - have) / TOKEN)

    def _sources(self) -> list[str]:
        """Peers that may hold a blob: every member with a published endpoint, this round's aggregators and task
        owners first."""
        everyone = [a for a in self.transport.directory._registry.endpoints() if a != self.address]
        first: set[str] = set()
        for run in self.runs.values():
            if run.state:
                first.add(run.state[2])
        return sorted(everyone, key=lambda a: (a not in first, a))

    # ------------------------------------------------------------------ tasks
    def _trainers(self) -> dict[str, int]:
        """Every registered trainer's member number: its place among trainer registrations (from 0)."""
        return {str(e.args["member"]): int(e.args["pool_index"]) - 1  # type: ignore[call-overload]
                for e in self.ledger.events("MemberRegistered") if int(e.args["role"]) == int(Role.TRAINER)}  # type: ignore[call-overload]

    def _number(self, role: Role) -> int:
        for e in self.ledger.events("MemberRegistered", member=self.address):
            return int(e.args["pool_index"]) - 1  # type: ignore[call-overload]
        raise IntegrityError(f"{self.address} has no registration event")

    def join(self, task_id: int) -> TaskRun:
        info = self.ledger.task(task_id)
        raw = read_spec(info, self.blobs.get)  # by its hash on chain, from a peer if need be
        check_task_terms(info, raw)  # refuse a task whose committed terms its spec does not fix
        spec = json.loads(raw)
        rules = task_rules(spec)
        why = unsupported(rules)
        if why is not None:
            raise ConfigError(f"task {task_id}: {why}")
        initial = self.blobs.put(to_bytes(initial_model(rules, spec)))
        ledger, role = self.ledger, self.opts.role

        def lookup(address: str) -> tuple[bytes, bytes] | None:
            m = ledger.member(address)
            return None if m is None else (m.pubkey, m.metadata)

        net = Network(ledger.backend.chain_id, ledger.deployment.addresses["task_manager"], Registry(lookup),
                      self._trainers())
        common: dict[str, Any] = {"clock": self.clock, "identity": self.identity, "net": net}
        t = self.transport
        pool = info.reward_per_round - info.reward_per_round * ledger.params()["validator_share_bps"] // 10_000
        if role is Role.TASK_OWNER:
            if info.owner.lower() != self.address.lower():
                raise ConfigError(f"task {task_id} belongs to {info.owner}, not to this node's {self.address}")
            r: roles.Role = roles.TaskOwner(ledger, task_id, t, self.blobs, self.clock)
        elif role is Role.TRAINER:
            number = self._number(role)
            split, _ = member_split(rules, spec, self.opts.data, number)
            wanted = commitment(split)
            me = ledger.member()
            assert me is not None
            if not ledger.joined(task_id):
                if me.metadata != wanted:
                    ledger.update_member(self.identity.public_bytes, wanted)
                ledger.join_task(task_id)
            elif me.metadata != wanted:
                raise IntegrityError(f"this node's data ({len(split.y)} examples) is not what {self.address} "
                                     f"committed to when it joined task {task_id}")
            work = NodeWork(rules, spec, split, number, task_id, self.blobs, self.clock,
                            committed_counts(ledger, net))
            r = roles.Trainer(ledger, task_id, t, self.blobs, member=number, work=work, rules=rules.secure, **common)
        elif role is Role.AGGREGATOR:
            if not ledger.joined(task_id):
                ledger.join_task(task_id)
            r = roles.Aggregator(ledger, task_id, t, self.blobs,
                                 aggregation=None if rules.secure else NodeAggregation(rules, self.blobs, net),
                                 reward_pool=pool, index_of=net.members, rules=rules.secure, strategy=rules.strategy,
                                 **common)
        else:
            if not ledger.joined(task_id):
                ledger.join_task(task_id)
            number = self._number(role)
            split, _ = member_split(rules, spec, self.opts.data, number, validators=rules.cfg.ledger.committee)
            r = roles.Validator(ledger, task_id, t, self.blobs, evaluate=evaluator(rules, spec, split),
                                reward_pool=pool, held_out=len(split.y), rules=rules.secure,
                                strategy=rules.strategy, private=rules.private,
                                ballots=BallotBox(self.opts.state / "ballots"), **common)
        self.log("joined", task=task_id, rounds=info.rounds, role=role.name.lower())
        return TaskRun(task_id, spec, raw, rules, initial, net, r)

    # ------------------------------------------------------------------ the loop
    def observe(self, run: TaskRun) -> RoundView | None:
        task = self.ledger.task(run.task_id)
        check_task_terms(task, run.spec_bytes)  # governance or the owner may not change them once joined
        if task.current_round == 0:
            if isinstance(run.role, roles.TaskOwner):
                run.role.open()
                return self.observe(run)
            return None
        rid = task.current_round
        record = self.ledger.round(run.task_id, rid)
        if record.status is RoundStatus.FINALIZED and rid < task.rounds and isinstance(run.role, roles.TaskOwner):
            run.role.open()
            return self.observe(run)
        key = (rid, record.attempt)
        if record.status not in (RoundStatus.NONE, RoundStatus.SEALING) and key not in run.cohorts:
            run.cohorts[key] = tuple(self.ledger.cohort(run.task_id, rid, run.rules.cohort))
        previous = self.ledger.round(run.task_id, rid - 1) if rid > 1 else None
        return RoundView(record=record, cohort=run.cohorts.get(key, ()),
                         global_model=previous.model_hash if previous is not None else run.initial,
                         previous_evidence=previous.evidence_root if previous is not None else None,
                         now=self.ledger.timestamp)

    def tick(self) -> bool:
        """One pass over every task; whether any role acted."""
        progressed = False
        for task_id in self.opts.tasks:
            if task_id not in self.runs:
                try:
                    self.runs[task_id] = self.join(task_id)
                except (FedLedgerError, OSError) as e:
                    if isinstance(e, ConfigError):
                        raise
                    self.metrics.error("join")
                    self.log("join_failed", level="warning", task=task_id, error=str(e)[:300])
                    continue
            run = self.runs[task_id]
            try:
                view = self.observe(run)
            except TaskTermsError as e:
                self.metrics.error("terms")
                self.log("terms_changed", level="error", task=task_id, error=str(e)[:300])
                continue
            self.metrics.last_chain_read = time.monotonic()
            if view is None:
                continue
            r = view.record
            state = (view.key, r.status, r.aggregator)
            now = time.monotonic()
            if state != run.state:
                run.state, run.changed = state, now
                if view.key not in run.seen:
                    run.seen.add(view.key)
                    self.metrics.inc("rounds_seen_total")
                self.log("round", task=task_id, round=r.round_id, attempt=r.attempt, status=r.status.name.lower())
            if not isinstance(run.role, roles.TaskOwner):  # trainers registered since the task started
                run.net.members.update(self._trainers())  # type: ignore[attr-defined]
            idle = now - run.changed >= self.opts.patience
            try:
                acted = run.role.step(view, idle)
            except FedLedgerError as e:
                acted = False
                self.metrics.error(type(e).__name__)
                self.log("step_failed", level="warning", task=task_id, round=r.round_id, error=str(e)[:300])
                run.changed = now  # back off for one patience period before an idle retry
            if acted:
                progressed = True
                run.changed = time.monotonic()
                self.metrics.last_progress = run.changed
                self.metrics.inc("steps_acted_total")
                if view.key not in run.acted:
                    run.acted.add(view.key)
                    self.metrics.inc("rounds_acted_total")
                self.log("acted", task=task_id, round=r.round_id, attempt=r.attempt, status=r.status.name.lower(),
                         stages=dict(self.clock.seconds))
            self.metrics.stages(self.clock.take())
            self.metrics.set("bytes_sent_total", sum(self.transport.bytes_sent.values()))
            self.metrics.set("bytes_received_total", sum(self.transport.bytes_received.values()))
            self.metrics.set("blob_bytes_fetched_total", self.blobs.fetched_bytes)
            if isinstance(run.role, roles.TaskOwner) and r.status is RoundStatus.FINALIZED \
                    and self.ledger.task(task_id).finalized_rounds >= self.ledger.task(task_id).rounds \
                    and run.state[1] is RoundStatus.FINALIZED and "done" not in run.spec:
                run.spec["done"] = True
                self.log("task_done", task=task_id, rounds=r.round_id)
        return progressed

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                if not self.tick():
                    self.stopping.wait(self.opts.poll)
        finally:
            self.close()

    def close(self) -> None:
        for close in self._closers:
            with contextlib.suppress(Exception):  # closing what is left; the process is ending
                close()
        self._closers = []
        self.log("stopped")

