"""A member-level round under secure aggregation, split between the roles that do its work, and its replay.

Trainer side (`TrainerSession`): the member's privacy pipeline (clip, rotate, round, noise share, wrap), its
update commitment, its SecAgg+ client state, its proof and its blame reveal. Nothing of it leaves the
trainer except the protocol messages below, each one signed (`fedledger.protocol.signing`).

Aggregator side (`AggregatorSession`): the SecAgg+ server state, the challenge, the proof screen, the linear
check, blame and (if blame names a culprit) a second SecAgg+ session over the same noisy inputs without it.
Every message it accepts from a trainer is kept, in order, as the round's transcript.

Replay (`replay`): what a validator or an auditor runs on the transcript in the evidence, trusting nothing
the aggregator computed: it verifies every signature and context, runs the SecAgg+ server state machine
again over the trainers' signed messages (which re-checks their inner signatures, the seed commitments and
the reconstructed keys), re-derives the challenge, verifies every proof, redoes the linear check and
blame, and returns the sum, the survivors and the members whose own signed message failed a check.
`recompute` then decodes the sum and applies the strategy to give the model, the next clip norm and the
rounds released.

Messages (topic, with the SecAgg+ session s = 0, or 1 after blame):
  secagg/s    trainer <-> aggregator  a SecAgg+ message (`fedledger.secagg.messages`)
  posting/s   trainer -> aggregator   update commitment and carry digest, sent with the masked input
  challenge/s aggregator -> trainer   r and the postings it was derived from
  proof/s     trainer -> aggregator   the update proof for r
  blame/s     aggregator -> trainer   the linear check failed: reveal
  reveal/s    trainer -> aggregator   self-mask seed, carries, kappa per pair
  dispute/s   aggregator -> trainer   the other ends' signed reveals whose kappa contradicts this member's
  shared/s    trainer -> aggregator   for each contradicted pair, the pair's X25519 value with its proof
  session/1   aggregator -> trainer   start session 1 with these members
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from fedledger.core.errors import IntegrityError
from fedledger.core.hashing import Usage, domain_hash
from fedledger.learning import RoundUpdates
from fedledger.privacy.compress import SketchMap, round_map
from fedledger.privacy.distributed import (
    DdpPlan,
    adaptive_clip_update,
    decode_sum,
    encode_members,
)
from fedledger.privacy.rotation import Rotation
from fedledger.protocol.messages import MessageError
from fedledger.protocol.signing import Context, Registry, Signed
from fedledger.secagg.channel import pair_context, pairwise_seed_from_shared, seed_commitment
from fedledger.secagg.client import ClientConfig, ClientStage, ClientState, client_handle, client_start
from fedledger.secagg.context import SessionContext
from fedledger.secagg.dleq import SharedProof, prove_shared, verify_shared
from fedledger.secagg.entropy import CryptoRng
from fedledger.secagg.errors import ProtocolViolation, SecAggAbort
from fedledger.secagg.field import decode_element
from fedledger.secagg.graph import Graph, SecAggParams
from fedledger.secagg.keys import Identity, PublicIdentity
from fedledger.secagg.messages import (
    AdvertiseKeys,
    MaskedInput,
    Message,
    ShareKeys,
    SurvivorList,
    SurvivorSignature,
    UnmaskShares,
    decode,
)
from fedledger.secagg.packing import unpack
from fedledger.secagg.prg import expand_mask
from fedledger.secagg.server import (
    ServerConfig,
    ServerStage,
    ServerState,
    server_advance,
    server_exclude,
    server_handle,
    server_start,
)
from fedledger.zk import InvalidProof, LinearCheckFailed
from fedledger.zk.backend import KeySet
from fedledger.zk.binding import (
    MemberEvidence,
    adjudicate,
    blame,
    check_aggregate,
    derive_challenge,
    field_mask,
    kappa,
    lift,
    masked_input_digest,
    posting_digest,
    project,
    vector_digest,
)
from fedledger.zk.field import P
from fedledger.zk.update import (
    ChunkProof,
    ProofContext,
    UpdateCommitment,
    UpdateProof,
    UpdateProver,
    UpdateSecret,
    UpdateSpec,
    commit_update,
    verify_update,
)

SECAGG, POSTING, CHALLENGE, PROOF, BLAME, REVEAL, SESSION, DISPUTE, SHARED = (
    "secagg", "posting", "challenge", "proof", "blame", "reveal", "session", "dispute", "shared")
TRAINER_TOPICS = (SECAGG, POSTING, PROOF, REVEAL, SHARED)
MAX_SESSIONS = 2
SecAggError = (ProtocolViolation, SecAggAbort)


def topic(kind: str, session: int) -> str:
    return f"{kind}/{session}"


def parse_topic(t: str) -> tuple[str, int]:
    kind, _, s = t.partition("/")
    if not s.isdigit() or int(s) >= MAX_SESSIONS:
        raise MessageError(f"unknown topic {t!r}")
    return kind, int(s)


def session_index(round_id: int, attempt: int, session: int) -> int:
    """The SecAgg+ round index of a session: binds keys, shares and commitments to round, attempt and session."""
    return (round_id << 20) | (attempt << 8) | session


def _key(member: int) -> str:
    """Blame's member key: zero-padded so string order is SecAgg+'s integer order (the mask signs)."""
    return f"{int(member):012d}"


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _load(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise MessageError(f"malformed message body: {e}") from None


def _felt(v: Any) -> int:
    n = int(str(v), 16)
    if not 0 <= n < P:
        raise MessageError("field element out of range")
    return n


def commitment_to_json(c: UpdateCommitment) -> dict[str, Any]:
    return {"ctx": hex(c.ctx), "dim": c.dim, "chunks": [hex(x) for x in c.chunk_commits], "state0": hex(c.state0)}


def commitment_from_json(d: Mapping[str, Any]) -> UpdateCommitment:
    try:
        return UpdateCommitment(_felt(d["ctx"]), int(d["dim"]), tuple(_felt(x) for x in d["chunks"]),
                                _felt(d["state0"]))
    except (KeyError, TypeError, ValueError) as e:
        raise MessageError(f"malformed commitment: {e}") from None


def proof_to_json(p: UpdateProof) -> dict[str, Any]:
    return {"s": hex(p.s), "chunks": [[c.index, hex(c.state_out), c.proof.hex()] for c in p.chunks]}


def proof_answers(d: Mapping[str, Any]) -> int | None:
    """The challenge a proof message says it answers (None if it names none)."""
    try:
        return _felt(d["r"])
    except (KeyError, TypeError, ValueError, MessageError):
        return None


def proof_from_json(d: Mapping[str, Any]) -> UpdateProof:
    try:
        return UpdateProof(_felt(d["s"]), tuple(ChunkProof(int(i), _felt(s), bytes.fromhex(p))
                                                for i, s, p in d["chunks"]))
    except (KeyError, TypeError, ValueError) as e:
        raise MessageError(f"malformed proof: {e}") from None


# -- the task's rules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecureRules:
    """Everything public a secure round follows, fixed by the task spec: every role derives the same."""

    plan: DdpPlan
    params: SecAggParams
    public_seed: bytes  # the rotations' public seed
    clip_norm: float  # the initial clip norm (adaptive clipping moves it round by round)
    target_quantile: float
    strategy: Callable[[], Any]  # a fresh server strategy
    spec: UpdateSpec | None = None  # update proofs: the circuit the task uses
    keys: KeySet | None = None  # and its verification keys

    @property
    def proofs(self) -> bool:
        return self.spec is not None

    def rotation(self, round_id: int, round_seed: bytes = b"") -> Rotation | SketchMap:
        """The round's public map (with compression, the SRHT is seeded also by the round's seed on chain)."""
        return round_map(self.plan, self.public_seed, round_id, round_seed)

    @staticmethod
    def secagg_task(ctx: Context) -> bytes:
        """SecAgg+'s task id: the on-chain task id as a big-endian uint256."""
        return ctx.task.to_bytes(32, "big")

    @classmethod
    def session(cls, ctx: Context, session: int) -> SessionContext:
        """The SecAgg+ session of (chain, task manager, task, round, attempt, sub-session)."""
        return SessionContext(ctx.chain_id, bytes.fromhex(ctx.contract.removeprefix("0x")), cls.secagg_task(ctx),
                              ctx.round, ctx.attempt, session)

    @staticmethod
    def proof_context(ctx: Context, member: int) -> ProofContext:
        return ProofContext(f"{ctx.chain_id}:{ctx.contract.lower()}:{ctx.task}:{ctx.attempt}", ctx.round, str(member))

    @staticmethod
    def challenge_seed(round_seed: bytes, session: int) -> bytes:
        return domain_hash(Usage.SEED, b"linear-check", round_seed, bytes([session]))

    def graph(self, ctx: Context, members: Sequence[int], session: int) -> Graph:
        return Graph.build(members, self.params.degree, self.secagg_task(ctx),
                           session_index(ctx.round, ctx.attempt, session))


@dataclass(frozen=True)
class SecureState:
    """What a round carries to the next one: every field is recomputed by validators, then chained."""

    clip_norm: float
    released: int  # rounds whose sum was released (each one accounted)
    strategy_state: bytes  # torch.save of the strategy's state_dict

    @classmethod
    def initial(cls, rules: SecureRules) -> SecureState:
        return cls(rules.clip_norm, 0, strategy_state_bytes(rules.strategy()))

    def to_json(self) -> dict[str, Any]:
        return {"clip_norm": self.clip_norm, "released": self.released, "strategy_state": self.strategy_state.hex()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SecureState:
        return cls(float(d["clip_norm"]), int(d["released"]), bytes.fromhex(str(d["strategy_state"])))


def strategy_state_bytes(strategy: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(strategy.state_dict(), buf)
    return buf.getvalue()


def load_strategy(rules: SecureRules, state: bytes) -> Any:
    strategy = rules.strategy()
    try:
        strategy.load_state_dict(torch.load(io.BytesIO(state), weights_only=True))
    except Exception as e:  # whatever torch raises on a malformed blob
        raise IntegrityError(f"the strategy state in the evidence does not load: {e}") from None
    return strategy


# -- trainer side ----------------------------------------------------------------------------------


@dataclass
class TrainerSession:
    """One trainer's secrets for one attempt of a round. Never leaves the trainer."""

    ctx: Context
    member: int
    identity: Identity
    pki: Mapping[int, PublicIdentity]
    rules: SecureRules
    cohort: tuple[int, ...]
    rand: Callable[[int], bytes]
    wrapped: np.ndarray  # the secure-aggregation input (values + noise mod 2^b)
    proved: np.ndarray | None = None  # y = values + noise (signed), what the proof is about
    secret: UpdateSecret | None = None
    posted: UpdateCommitment | None = None
    session: int = 0
    client: ClientState | None = None
    carries: dict[int, np.ndarray] = field(default_factory=dict)  # session -> w
    masked: dict[int, tuple[np.ndarray, int]] = field(default_factory=dict)  # session -> (z, u)
    proved_sessions: set[int] = field(default_factory=set)
    revealed: set[int] = field(default_factory=set)
    members_of: dict[int, tuple[int, ...]] = field(default_factory=dict)  # session -> its members
    mask_secrets: dict[int, bytes] = field(default_factory=dict)  # session -> its masking key (for a dispute)
    settled: set[int] = field(default_factory=set)  # sessions whose disputes this member answered

    @classmethod
    def begin(cls, *, ctx: Context, member: int, identity: Identity, pki: Mapping[int, PublicIdentity],
              rules: SecureRules, cohort: Sequence[int], delta: torch.Tensor, clip_norm: float,
              rng: CryptoRng, commit_rng: np.random.Generator, round_seed: bytes = b"") -> TrainerSession:
        """The privacy pipeline and the commitment, from the member's own update."""
        enc = encode_members(rules.plan, delta[None, :], clip_norm, rules.rotation(ctx.round, round_seed), rng)
        s = cls(ctx, member, identity, pki, rules, tuple(sorted(cohort)), rng.bytes, enc.wrapped[0].copy())
        if rules.spec is not None:
            from fedledger.core.errors import DataError
            try:
                s.secret, s.posted = commit_update(rules.spec, rules.proof_context(ctx, member), enc.values[0],
                                                   enc.noise[0], commit_rng)
                s.proved = enc.values[0] + enc.noise[0]
            except DataError:
                pass  # out of the proven bounds: no commitment, no proof; the aggregator leaves it out
        return s

    def start(self, session: int, members: Sequence[int], evidence: NextSessionEvidence | None = None) -> list[Message]:
        """Begin SecAgg+ session `session` among `members` (AdvertiseKeys).

        A later session re-sums the same input, so the difference of two sums over member sets that differ by
        one member is that member's input: a session after the first starts only once this member revealed in
        blame for the one before (an aggregator cannot start it unasked), and only among exactly the survivors
        of that session less the culprits blame names on their own signed messages, which this member checks
        itself by replaying the previous session's transcript (`evidence`): an aggregator that drops an honest
        member's reveal (or names it culprit without proof) cannot leave it out of the re-sum."""
        if session:
            prior = self.client
            if (session != self.session + 1 or self.session not in self.revealed or prior is None
                    or not set(members) <= set(prior.survivors)):
                raise MessageError(f"session {session} was not started by blame over session {self.session}")
            if evidence is None:
                raise MessageError(f"session {session} comes without the transcript of session {self.session}")
            expected = evidence.next_members(self.session, prior.survivors)
            if tuple(sorted(members)) != expected:
                raise MessageError(f"session {session} among {sorted(members)}: blame over session "
                                   f"{self.session} leaves {list(expected)}")
        self.session = session
        self.members_of[session] = tuple(sorted(members))
        graph = self.rules.graph(self.ctx, members, session)
        cfg = ClientConfig(self.rules.session(self.ctx, session), self.member, self.identity, self.pki,
                           self.rules.params, graph)
        self.client, out = client_start(cfg, self.wrapped, self.rand,
                                        None if self.secret is None else int(self.secret.t))
        self.mask_secrets[session] = self.client.mask_secret
        return out

    def handle(self, msg: Message) -> list[tuple[str, bytes]]:
        """A SecAgg+ message from the server: the replies, as (kind, payload)."""
        assert self.client is not None
        if (isinstance(msg, SurvivorList) and self.session
                and tuple(sorted(msg.survivors)) != self.members_of.get(self.session)):
            # a re-sum over the same inputs: any member left out of it (called a dropout, or unproved) would make
            # the difference of the two sums its input, so this member releases nothing for a short list
            raise MessageError(f"session {self.session} lists survivors {sorted(msg.survivors)}, not every one "
                               f"of {list(self.members_of.get(self.session, ()))}")
        if isinstance(msg, SurvivorList) and len(msg.survivors) < self.rules.plan.min_survivors:
            # the noise is sized for min_survivors members: a smaller sum would be released with less noise than
            # the task's privacy plan says. Not signing (nor revealing shares) is this member's own check; the
            # aggregator's is in the aggregator's code path and protects nobody from it
            raise MessageError(f"a survivor list of {len(msg.survivors)} members: the noise is sized for "
                               f"{self.rules.plan.min_survivors}")
        self.client, replies = client_handle(self.client, msg, self.rand)
        out: list[tuple[str, bytes]] = [(SECAGG, r.to_bytes()) for r in replies]
        for r in replies:
            if isinstance(r, MaskedInput) and self.secret is not None and self.posted is not None:
                p = self.rules.params
                z = unpack(r.payload, p.length, p.bits)
                u = decode_element(r.blinding)
                record = self.client.record
                assert record is not None and self.proved is not None
                w = record.carries - (self.proved < 0).astype(np.int64)
                self.carries[self.session] = w
                self.masked[self.session] = (z, u)
                out.append((POSTING, _json({"commitment": commitment_to_json(self.posted),
                                            "carry_digest": vector_digest(w).hex()})))
        return out

    def posting(self, session: int) -> bytes:
        assert self.posted is not None
        z, u = self.masked[session]
        return posting_digest(self.posted, masked_input_digest(z, u), vector_digest(self.carries[session]))

    def prove(self, session: int, body: Mapping[str, Any], round_seed: bytes,
              prover: UpdateProver) -> Callable[[], bytes]:
        """Start the proof for the challenge, after checking the challenge is derived from postings including ours;
        calling the result waits for the proof (the prover works on it meanwhile) and gives the message body."""
        if self.secret is None or self.posted is None or session in self.proved_sessions or session not in self.masked:
            raise MessageError("no proof to make for this challenge")
        postings = [bytes.fromhex(x) for x in body["postings"]]
        r = _felt(body["r"])
        if self.posting(session) not in postings or r != derive_challenge(
                self.rules.challenge_seed(round_seed, session), postings):
            raise MessageError("the challenge is not derived from the round seed and our posting")
        self.proved_sessions.add(session)
        # the proof says which challenge it answers: validators never read a proof made for an r the aggregator
        # showed only to this member as this member's fault
        pending = prover.submit_update(self.secret, self.posted, r)
        return lambda: _json({**proof_to_json(pending.result()), "r": hex(r)})

    def reveal(self, session: int, r: int) -> bytes:
        """Blame: the self-mask seed, the carries and kappa for each pair, for session `session`."""
        assert self.client is not None
        record = self.client.record
        if record is None or session in self.revealed or session not in self.carries:
            raise MessageError("nothing to reveal for this session")
        # only for the session this client ran to the end as a certified survivor: >= t of its neighbours signed
        # a survivor list naming it, so they revealed shares of its self-mask seed, never enough shares of its
        # masking key to rebuild it. A member left out (a dropout to the server) whose masking key was rebuilt
        # would otherwise hand over the other half and its input would be unmasked.
        if (session != self.session or self.client.stage != ClientStage.DONE
                or self.member not in self.client.survivors):
            raise MessageError("blame for a session this member did not finish as a survivor")
        self.revealed.add(session)
        p = self.rules.params
        kappas = {str(j): hex(kappa(r, expand_mask(seed, p.length, p.bits, b"pair"), field_mask(seed)))
                  for j, seed in record.pair_seeds.items()}
        return _json({"self_seed": record.self_seed.hex(), "carries": self.carries[session].tolist(),
                      "kappas": kappas})


    def settle(self, session: int, r: int, reports: Mapping[int, Any]) -> bytes:
        """A blame dispute: `reports` maps a neighbour to its signed reveal (the caller checked the signature).
        For each neighbour whose reported kappa of our pair differs from ours, the pair's X25519 value with a
        proof that it is right (`secagg.dleq`), which shows who lied. Only for a real contradiction: the value
        gives away the pair's mask, which only a neighbour that lied about it (and knows it anyway) can make us
        reveal; an aggregator cannot make an honest pair reveal theirs."""
        assert self.client is not None
        record = self.client.record
        if record is None or session not in self.revealed or session in self.settled or session != self.session:
            raise MessageError("no blame reveal of this session to stand by")
        p = self.rules.params
        out: dict[str, Any] = {}
        for j, body in reports.items():
            seed = record.pair_seeds.get(j)
            if seed is None or j not in self.client.roster:
                continue
            mine = kappa(r, expand_mask(seed, p.length, p.bits, b"pair"), field_mask(seed))
            try:
                theirs = _felt(body["kappas"][str(self.member)])
            except (KeyError, TypeError, ValueError, MessageError):
                theirs = None  # a malformed report contradicts ours too
            if theirs == mine:
                continue
            context = pair_context(self.rules.session(self.ctx, session), self.member, j)
            proof = prove_shared(self.mask_secrets[session], self.client.roster[j][1], context, self.rand(32))
            out[str(j)] = proof.to_json()
        if not out:
            raise MessageError("no reported kappa contradicts ours")
        self.settled.add(session)
        return _json({"pairs": out})


# -- replay: what validators and auditors recompute -------------------------------------------------


@dataclass(frozen=True)
class SessionOutcome:
    members: tuple[int, ...]
    survivors: tuple[int, ...] = ()
    total: np.ndarray | None = None  # None: not released (too few kept to unmask)
    blinding: int | None = None
    r: int | None = None
    s: Mapping[int, int] = field(default_factory=dict)
    invalid: tuple[int, ...] = ()  # members whose own signed proof failed verification
    unproved: tuple[int, ...] = ()  # masked an input but posted or proved nothing: left out, not faulty
    culprits: tuple[int, ...] = ()  # blame: their own revealed values contradict their masked input
    disputed: tuple[tuple[int, int], ...] = ()  # blame: pairs whose ends report different kappas, not settled
    silent: tuple[int, ...] = ()  # did not reveal in blame: not faulty, and kept in the next session (`next_members`)
    linear_check: bool | None = None
    secagg_faulty: tuple[int, ...] = ()  # named by SecAgg+ itself on their own signed messages (bad key, share)


@dataclass(frozen=True)
class Replayed:
    sessions: tuple[SessionOutcome, ...]

    @property
    def final(self) -> SessionOutcome:
        return self.sessions[-1]

    @property
    def unmasked(self) -> bool:
        """Whether any session's sum was unmasked (released to the aggregator), the final one or not."""
        return any(s.total is not None for s in self.sessions)

    @property
    def faulty(self) -> tuple[int, ...]:
        out: set[int] = set()
        for s in self.sessions:
            out |= set(s.invalid) | set(s.culprits) | set(s.secagg_faulty)
        return tuple(sorted(out))


@dataclass
class _Parsed:
    secagg: dict[int, list[tuple[int, Message]]] = field(default_factory=dict)  # session -> [(member, msg)]
    postings: dict[int, dict[int, tuple[UpdateCommitment, bytes]]] = field(default_factory=dict)
    proofs: dict[int, dict[int, UpdateProof]] = field(default_factory=dict)
    answers: dict[int, dict[int, int | None]] = field(default_factory=dict)  # the challenge each proof says it answers
    reveals: dict[int, dict[int, Mapping[str, Any]]] = field(default_factory=dict)
    shared: dict[int, dict[int, Any]] = field(default_factory=dict)  # session -> member -> its dispute answer


def parse_transcript(transcript: Sequence[bytes], registry: Registry, base: Context,
                     members: Mapping[str, int]) -> _Parsed:
    """Verify and sort the transcript's messages; raise `IntegrityError` on any message that does not check."""
    out = _Parsed()
    seen: set[bytes] = set()
    by_addr = {a.lower(): m for a, m in members.items()}
    for raw in transcript:
        try:
            msg = Signed.from_bytes(raw)
            kind, session = parse_topic(msg.context.topic)
            if msg.context.with_topic("") != base.with_topic("") or kind not in TRAINER_TOPICS:
                raise MessageError(f"a message for {msg.context}")
            member = by_addr.get(msg.sender.lower())
            if member is None:
                raise MessageError(f"{msg.sender} is not in the round's cohort")
            registry.verify(msg)
        except MessageError as e:
            raise IntegrityError(f"transcript: {e}") from None
        if msg.digest in seen:
            raise IntegrityError("transcript: a message appears twice")
        seen.add(msg.digest)
        try:
            if kind == SECAGG:
                inner = decode(msg.payload)
                if inner.header.sender != member:
                    raise MessageError("the SecAgg+ message names another sender than its signer")
                out.secagg.setdefault(session, []).append((member, inner))
            elif kind == POSTING:
                body = _load(msg.payload)
                out.postings.setdefault(session, {})[member] = (commitment_from_json(body["commitment"]),
                                                                 bytes.fromhex(body["carry_digest"]))
            elif kind == PROOF:
                body = _load(msg.payload)
                out.proofs.setdefault(session, {})[member] = proof_from_json(body)
                out.answers.setdefault(session, {})[member] = proof_answers(body)
            elif kind == SHARED:
                out.shared.setdefault(session, {})[member] = _load(msg.payload)
            else:
                out.reveals.setdefault(session, {})[member] = _load(msg.payload)
        except (MessageError, ProtocolViolation, SecAggAbort, KeyError, TypeError, ValueError) as e:
            raise IntegrityError(f"transcript: a {kind} message of member {member} is malformed: {e}") from None
    return out


_STAGES: tuple[tuple[ServerStage, type[Message]], ...] = (
    (ServerStage.ADVERTISE, AdvertiseKeys), (ServerStage.SHARE, ShareKeys), (ServerStage.MASKED, MaskedInput),
    (ServerStage.CONSISTENCY, SurvivorSignature), (ServerStage.UNMASK, UnmaskShares))


def replay(transcript: Sequence[bytes], *, rules: SecureRules, registry: Registry, base: Context,
           members: Mapping[str, int], round_seed: bytes) -> Replayed:
    """Recompute the round from the transcript alone. Raises `IntegrityError` if it does not recompute."""
    parsed = parse_transcript(transcript, registry, base, members)
    pki = {m: registry.key(a) for a, m in members.items()}
    cohort = tuple(sorted(members.values()))
    sessions: list[SessionOutcome] = []
    current = cohort
    for session in range(MAX_SESSIONS):
        outcome = _replay_session(parsed, rules, pki, base, current, session, round_seed)
        sessions.append(outcome)
        if outcome.linear_check is not False:
            break
        current = next_members(outcome)
        if not outcome.culprits:
            raise IntegrityError("the linear check failed and blame names nobody: the round has no valid sum")
    else:
        raise IntegrityError("the linear check failed in every session")
    unused = set(parsed.secagg) - set(range(len(sessions)))
    if unused:
        raise IntegrityError(f"transcript holds messages of sessions {sorted(unused)} that never ran")
    return Replayed(tuple(sessions))


class Aborted(IntegrityError):
    """The transcript stops where SecAgg+ aborts naming nobody: too few members answered a stage (`replay`)."""


def replay_abort(transcript: Sequence[bytes], *, rules: SecureRules, registry: Registry, base: Context,
                 members: Mapping[str, int], round_seed: bytes) -> str:
    """Check an aborted attempt's evidence: the trainers' signed messages the aggregator received must replay
    (every signature, context and SecAgg+ check as in `replay`) up to a stage where SecAgg+ aborts naming
    nobody, because fewer members answered than its threshold. Returns why; raises `IntegrityError` if the
    transcript does not replay, or replays to a result or to an abort naming members (then the aggregator had a
    result to post: a round not released, with those members named)."""
    try:
        replay(transcript, rules=rules, registry=registry, base=base, members=members, round_seed=round_seed)
    except Aborted as e:
        return str(e)
    raise IntegrityError("the transcript replays to a result: the attempt did not abort")


def next_members(outcome: SessionOutcome) -> tuple[int, ...]:
    """Who the session after a failed linear check re-sums: every survivor but the culprits blame named on their
    own signed messages. Nobody else may be left out (a member silent in blame included): the two sums' difference
    is the input of whoever is left out, which is harmless only for the culprits (trainers check it, `start`)."""
    return tuple(m for m in outcome.survivors if m not in outcome.culprits)


@dataclass(frozen=True)
class NextSessionEvidence:
    """What a trainer checks before it joins a re-sum: the aggregator's transcript so far, replayed by the
    trainer itself exactly as validators will (`_replay_session`), against the chain's keys."""

    transcript: tuple[bytes, ...]
    rules: SecureRules
    registry: Registry
    base: Context
    members: Mapping[str, int]  # the cohort: trainer address -> member number
    round_seed: bytes

    def next_members(self, session: int, survivors_seen: Sequence[int]) -> tuple[int, ...]:
        """The members of session `session + 1`; raises `MessageError` unless the transcript shows session
        `session` ending with `survivors_seen` (the list this member signed), a failed linear check and blame
        naming a culprit."""
        try:
            parsed = parse_transcript(self.transcript, self.registry, self.base, self.members)
            pki = {m: self.registry.key(a) for a, m in self.members.items()}
            current = tuple(sorted(self.members.values()))
            for s in range(session + 1):
                outcome = _replay_session(parsed, self.rules, pki, self.base, current, s, self.round_seed)
                if outcome.linear_check is not False or not outcome.culprits:
                    raise MessageError(f"the transcript shows no blame naming a culprit in session {s}")
                current = next_members(outcome)
        except (IntegrityError, *SecAggError) as e:
            raise MessageError(f"the transcript of session {session} does not replay: {e}") from None
        if tuple(outcome.survivors) != tuple(sorted(survivors_seen)):
            raise MessageError(f"the transcript's survivors {list(outcome.survivors)} are not the ones signed")
        return current


def _replay_session(parsed: _Parsed, rules: SecureRules, pki: Mapping[int, PublicIdentity], base: Context,
                    members: tuple[int, ...], session: int, round_seed: bytes) -> SessionOutcome:
    graph = rules.graph(base, members, session)
    server = server_start(ServerConfig(rules.session(base, session), pki, rules.params, graph))
    msgs = parsed.secagg.get(session, [])
    outcome = SessionOutcome(members)
    try:
        for stage, kind in _STAGES:
            if server.stage != stage:
                raise IntegrityError(f"SecAgg+ session {session} is at {server.stage.name}, not {stage.name}")
            for _member, msg in msgs:
                if isinstance(msg, kind):
                    server, _ = server_handle(server, msg)
            if stage is ServerStage.MASKED:
                outcome = _screen(parsed, rules, base, server, session, round_seed, outcome)
                server = server_exclude(server, set(outcome.invalid) | set(outcome.unproved))
                if len(server.masked) < rules.plan.min_survivors:
                    return replace(outcome, survivors=tuple(sorted(server.masked)))  # not released
            server, _ = server_advance(server)
    except SecAggAbort as e:
        if not e.faulty:
            raise Aborted(f"SecAgg+ session {session} does not replay: {e}") from None
        # stopped on members named with their own signed messages: not released, and they are faulty
        return replace(outcome, survivors=(), total=None, secagg_faulty=tuple(sorted(e.faulty)))
    except SecAggError as e:
        raise IntegrityError(f"SecAgg+ session {session} does not replay: {e}") from None
    assert server.result is not None
    outcome = replace(outcome, survivors=server.survivors, total=server.result, blinding=server.blinding_result,
                      secagg_faulty=tuple(sorted(server.faulty)))
    if not rules.proofs:
        return outcome
    assert outcome.r is not None and server.blinding_result is not None
    try:
        check_aggregate(outcome.r, {_key(m): outcome.s[m] for m in server.survivors},
                        lift(server.result, rules.plan.bits), server.blinding_result)
        return replace(outcome, linear_check=True)
    except LinearCheckFailed:
        pass
    return _blame(parsed, rules, base, server, session, replace(outcome, linear_check=False))


def _screen(parsed: _Parsed, rules: SecureRules, base: Context, server: ServerState, session: int,
            round_seed: bytes, outcome: SessionOutcome) -> SessionOutcome:
    """Postings -> challenge -> proof verification, over the members whose masked input is in."""
    if not rules.proofs:
        return outcome
    assert rules.spec is not None and rules.keys is not None
    postings = parsed.postings.get(session, {})
    proofs = parsed.proofs.get(session, {})
    r, posted_by, _ = _screen_challenge(parsed, rules, server, session, round_seed)
    unproved = [m for m in sorted(server.masked) if m not in posted_by]
    s: dict[int, int] = {}
    invalid: list[int] = []
    for m in posted_by:
        commitment = postings[m][0]
        if m not in proofs or parsed.answers.get(session, {}).get(m) != r:
            # no proof, or one for another challenge than the postings give (the aggregator showed this member
            # another r, or the member answered another): left out, never named faulty on it
            unproved.append(m)
            continue
        try:
            if commitment.ctx != rules.proof_context(base, m).element:
                raise InvalidProof("the commitment is bound to another task, round or member")
            verify_update(rules.keys, rules.spec, commitment, proofs[m], r)
        except InvalidProof:
            invalid.append(m)
        else:
            s[m] = proofs[m].s
    return replace(outcome, r=r, s=s, invalid=tuple(sorted(invalid)), unproved=tuple(sorted(unproved)))


def _blame(parsed: _Parsed, rules: SecureRules, base: Context, server: ServerState, session: int,
           outcome: SessionOutcome) -> SessionOutcome:
    """Each survivor's revealed seed, carries and kappas against its own masked input (`zk.binding.blame`)."""
    assert outcome.r is not None
    p = rules.params
    r = outcome.r
    context = rules.session(base, session)
    reveals = parsed.reveals.get(session, {})
    postings = parsed.postings.get(session, {})
    evidence: dict[str, MemberEvidence] = {}
    reports: dict[tuple[str, str], int] = {}
    graph: dict[str, list[str]] = {}
    silent, culprits = [], []
    for m in server.survivors:
        body = reveals.get(m)
        if body is None:
            silent.append(m)
            continue
        try:
            if not isinstance(body, Mapping) or not isinstance(body.get("kappas"), Mapping):
                raise MessageError("a reveal is an object with an object of kappas")
            seed = bytes.fromhex(body["self_seed"])
            carries = np.asarray(body["carries"], dtype=np.int64)
            kappas = {int(j): _felt(v) for j, v in body["kappas"].items()}
        except (KeyError, TypeError, ValueError, OverflowError, MessageError):
            culprits.append(m)  # its own signed reveal is malformed (whatever JSON it holds: never a crash)
            continue
        if seed_commitment(context, m, seed) != server.shared[m].seed_commitment:
            culprits.append(m)
            continue
        z = unpack(server.masked[m], p.length, p.bits)
        self_mask = expand_mask(seed, p.length, p.bits, b"self")
        evidence[_key(m)] = MemberEvidence(
            s=outcome.s[m], masked=z, masked_blinding=server.masked_blinding[m],
            self_projection=(project(r, self_mask) + field_mask(seed)) % P,
            carries=carries, carry_digest=postings[m][1])
        graph[_key(m)] = [_key(j) for j in sorted(kappas)]
        for j, k in kappas.items():
            reports[(_key(m), _key(j))] = k
    report = blame(r, p.bits, evidence, reports, graph)
    culprits += [int(k) for k in report.culprits]
    # a disputed pair: one end lied about its kappa (to fix its own equation). Either end's proof of the pair's
    # X25519 value gives the true kappa, and names whoever reported another one (on its own signed reveal)
    answers = parsed.shared.get(session, {})
    open_pairs: list[tuple[int, int]] = []
    for a, b in report.disputed:
        i, j = int(a), int(b)
        true = None
        for end, other in ((i, j), (j, i)):
            try:
                proof = SharedProof.from_json(answers[end]["pairs"][str(other)])
                shared = verify_shared(proof, server.advertised[end].mask_public, server.advertised[other].mask_public,
                                       pair_context(context, i, j))
            except (KeyError, TypeError, ProtocolViolation):
                continue  # no answer, or one that does not verify: the other end's may
            seed = pairwise_seed_from_shared(shared, context, i, j)
            true = kappa(r, expand_mask(seed, p.length, p.bits, b"pair"), field_mask(seed))
            break
        if true is None:
            open_pairs.append((i, j))
        else:
            culprits += [int(k) for k in adjudicate((a, b), true, reports)]
    return replace(outcome, culprits=tuple(sorted(set(culprits))), silent=tuple(silent), disputed=tuple(open_pairs))


# -- from the sum to the model ---------------------------------------------------------------------


@dataclass(frozen=True)
class Recomputed:
    model: torch.Tensor
    state: SecureState  # after this round
    released: bool


def recompute(rules: SecureRules, previous: torch.Tensor, before: SecureState, final: SessionOutcome,
              round_id: int, attempt: int = 0, *, unmasked: bool = False, round_seed: bytes = b"") -> Recomputed:
    """Decode the released sum, apply the strategy: the model the round must have posted.

    Every earlier attempt of the round counts as a release (its sum may have been unmasked before it was
    rejected or reopened; the noise of a new attempt is fresh, so each one is accounted), whether or not
    this attempt's sum is released. `unmasked`: an earlier session of this attempt had its sum unmasked
    (blame's second session then re-sums the same noisy inputs); that sum was released to the aggregator, so
    the attempt is accounted even if the final session is not released."""
    if attempt:
        before = SecureState(before.clip_norm, before.released + attempt, before.strategy_state)
    plan = rules.plan
    if final.total is None:
        if not unmasked:
            return Recomputed(previous.clone(), before, released=False)
        if before.released >= plan.rounds:
            raise IntegrityError(f"all {plan.rounds} planned releases are already spent")
        return Recomputed(previous.clone(), SecureState(before.clip_norm, before.released + 1, before.strategy_state),
                          released=False)
    if before.released >= plan.rounds:
        raise IntegrityError(f"all {plan.rounds} planned releases are already spent")
    k = len(final.survivors)
    dec = decode_sum(plan, final.total, before.clip_norm, rules.rotation(round_id, round_seed))
    nxt = before.clip_norm
    if plan.adaptive and dec.unclipped_count is not None:
        nxt = adaptive_clip_update(before.clip_norm, dec.unclipped_count / k, rules.target_quantile)
    strategy = load_strategy(rules, before.strategy_state)
    model = strategy.step(previous, RoundUpdates((dec.total / k)[None, :], np.ones(1), np.ones(1)))
    return Recomputed(model, SecureState(nxt, before.released + 1, strategy_state_bytes(strategy)), released=True)


def privacy_spent(rules: SecureRules, released: int) -> float:
    """The member-level epsilon spent after `released` releases; 0 when nothing is accounted (SecAgg+ without
    DP, whose plan has no finite epsilon: the task's budget is not drawn on)."""
    eps = rules.plan.epsilon_after(released)
    return eps if math.isfinite(eps) else 0.0


# -- aggregator side -------------------------------------------------------------------------------

Outbound = tuple[int, str, bytes]  # (member, topic, payload)


@dataclass
class AggregatorSession:
    """The aggregator's state for one attempt: the SecAgg+ server, the screen, blame; and the transcript."""

    ctx: Context
    rules: SecureRules
    pki: Mapping[int, PublicIdentity]
    cohort: tuple[int, ...]
    round_seed: bytes
    session: int = 0
    members: tuple[int, ...] = ()
    server: ServerState | None = None
    stage: str = "secagg"  # secagg | prove | blame | done | failed
    transcript: list[bytes] = field(default_factory=list)
    parsed: _Parsed = field(default_factory=_Parsed)
    outcome: SessionOutcome | None = None
    r: int | None = None
    reason: str = ""
    outcomes: list[SessionOutcome] = field(default_factory=list)  # of the sessions that ended
    aborted: bool = False  # failed where SecAgg+ aborts naming nobody (too few answered): `replay_abort` holds
    raw_reveals: dict[int, bytes] = field(default_factory=dict)  # the current session's signed reveals
    disputants: set[int] = field(default_factory=set)  # asked to settle a dispute in the current session

    @property
    def replayed(self) -> Replayed:
        """The round as the aggregator computed it (what `replay` recomputes from the transcript)."""
        if self.stage != "done":
            raise IntegrityError(f"the round has no result ({self.stage}: {self.reason})")
        return Replayed(tuple(self.outcomes))

    def __post_init__(self) -> None:
        self._open(0, self.cohort)

    def _open(self, session: int, members: Sequence[int]) -> None:
        self.session, self.members = session, tuple(sorted(members))
        graph = self.rules.graph(self.ctx, self.members, session)
        self.server = server_start(ServerConfig(self.rules.session(self.ctx, session), self.pki, self.rules.params,
                                                graph))
        self.stage, self.r, self.outcome = "secagg", None, None
        self.raw_reveals, self.disputants = {}, set()

    # inbound ---------------------------------------------------------------------------------------
    def accept(self, member: int, kind: str, session: int, raw: bytes, payload: bytes) -> bool:
        """One verified trainer message; kept in the transcript only if the protocol takes it now."""
        if session != self.session or self.stage in ("done", "failed") or member not in self.members:
            return False
        assert self.server is not None
        try:
            if kind == SECAGG and self.stage == "secagg":
                inner = decode(payload)
                if inner.header.sender != member:
                    return False
                self.server, _ = server_handle(self.server, inner)
                self.parsed.secagg.setdefault(session, []).append((member, inner))
            elif kind == POSTING and self.stage == "secagg" and self.server.stage == ServerStage.MASKED:
                body = _load(payload)
                self.parsed.postings.setdefault(session, {})[member] = (
                    commitment_from_json(body["commitment"]), bytes.fromhex(body["carry_digest"]))
            elif kind == PROOF and self.stage == "prove" and member in self._expected():
                body = _load(payload)
                self.parsed.proofs.setdefault(session, {})[member] = proof_from_json(body)
                self.parsed.answers.setdefault(session, {})[member] = proof_answers(body)
            elif kind == REVEAL and self.stage == "blame" and member in self._expected():
                self.parsed.reveals.setdefault(session, {})[member] = _load(payload)
                self.raw_reveals[member] = raw
            elif kind == SHARED and self.stage == "dispute" and member in self._expected():
                self.parsed.shared.setdefault(session, {})[member] = _load(payload)
            else:
                return False
        except (MessageError, *SecAggError, KeyError, TypeError, ValueError):
            return False
        self.transcript.append(raw)
        return True

    def _expected(self) -> set[int]:
        """Who the current stage waits for."""
        assert self.server is not None
        s, session = self.server, self.session
        if self.stage == "prove":
            return set(self.parsed.postings.get(session, {})) & set(s.masked)
        if self.stage == "blame":
            return set(s.survivors)
        if self.stage == "dispute":
            return set(self.disputants)
        if s.stage == ServerStage.ADVERTISE:
            return set(self.members)
        if s.stage == ServerStage.SHARE:
            return set(s.advertised)
        if s.stage == ServerStage.MASKED:
            return set(s.shared)
        if s.stage == ServerStage.CONSISTENCY:
            return set(s.survivors)
        return set(s.list_signatures)

    def _received(self) -> set[int]:
        assert self.server is not None
        s, session = self.server, self.session
        if self.stage == "prove":
            return set(self.parsed.proofs.get(session, {}))
        if self.stage == "blame":
            return set(self.parsed.reveals.get(session, {}))
        if self.stage == "dispute":
            return set(self.parsed.shared.get(session, {}))
        if s.stage == ServerStage.ADVERTISE:
            return set(s.advertised)
        if s.stage == ServerStage.SHARE:
            return set(s.shared)
        if s.stage == ServerStage.MASKED:
            got = set(s.masked)
            return got & set(self.parsed.postings.get(session, {})) if self.rules.proofs else got
        if s.stage == ServerStage.CONSISTENCY:
            return set(s.list_signatures)
        return set(s.unmask)

    # progress --------------------------------------------------------------------------------------
    def advance(self, idle: bool) -> list[Outbound]:
        """Close the current stage if everyone it waits for answered (or the deadline passed: `idle`)."""
        if self.stage in ("done", "failed") or not (idle or self._expected() <= self._received()):
            return []
        try:
            return self._close()
        except SecAggAbort as e:
            if not e.faulty:
                # fewer members answered than SecAgg+ needs: silence proves nothing against anyone, and the
                # aggregator reports the abort with what it received (`replay_abort`), not a missed deadline
                self.stage, self.reason, self.aborted = "failed", str(e), True
                return []
            # SecAgg+ stopped on members its own state names with their own signed messages (a dealer whose
            # shares do not rebuild its committed secret, ...): nothing is released, and the round is posted as
            # such with them named, as validators replay it (`_replay_session`); else one member's bad dealing
            # would leave the round without a result and the aggregator slashed for the missed deadline
            self.outcomes.append(replace(self.outcome or SessionOutcome(self.members), survivors=(), total=None,
                                         secagg_faulty=tuple(sorted(e.faulty))))
            self.stage, self.reason = "done", str(e)
            return []
        except (*SecAggError, IntegrityError) as e:
            self.stage, self.reason = "failed", str(e)
            return []

    def _close(self) -> list[Outbound]:
        assert self.server is not None
        s, session = self.server, self.session
        if self.stage == "secagg" and s.stage == ServerStage.MASKED and self.rules.proofs:
            self.r, posted_by, postings = _screen_challenge(self.parsed, self.rules, s, session, self.round_seed)
            self.stage = "prove"
            body = _json({"r": hex(self.r), "postings": [p.hex() for p in postings]})
            if not posted_by:
                return self._close()
            return [(m, topic(CHALLENGE, session), body) for m in posted_by]
        if (self.stage == "prove") or (self.stage == "secagg" and s.stage == ServerStage.MASKED):
            outcome = _screen(self.parsed, self.rules, self.ctx, s, session, self.round_seed,
                              SessionOutcome(self.members))
            self.outcome = outcome
            self.server = server_exclude(s, set(outcome.invalid) | set(outcome.unproved))
            self.stage = "secagg"
            if len(self.server.masked) < self.rules.plan.min_survivors:
                self.stage = "done"  # too few to release: nothing is unmasked
                self.outcomes.append(replace(outcome, survivors=tuple(sorted(self.server.masked))))
                return []
            return self._advance_server()
        if self.stage in ("blame", "dispute"):
            assert self.outcome is not None and self.r is not None
            outcome = _blame(self.parsed, self.rules, self.ctx, s, session, self.outcome)
            if outcome.disputed and self.stage == "blame":
                # ask both ends of each contradicted pair to settle it, each with the other end's signed reveal
                self.stage = "dispute"
                partners: dict[int, set[int]] = {}
                for i, j in outcome.disputed:
                    partners.setdefault(i, set()).add(j)
                    partners.setdefault(j, set()).add(i)
                self.disputants = set(partners)
                return [(m, topic(DISPUTE, session), _json({"r": hex(self.r), "reveals": [
                    self.raw_reveals[j].hex() for j in sorted(others)]})) for m, others in sorted(partners.items())]
            self.outcomes.append(outcome)
            nxt = next_members(outcome)
            if not outcome.culprits or session + 1 >= MAX_SESSIONS:
                self.stage, self.reason = "failed", "the linear check failed and blame named nobody"
                return []
            # every trainer of the next session replays this session from these messages before it joins
            evidence = [raw.hex() for raw in self.transcript]
            self._open(session + 1, nxt)
            body = _json({"members": list(nxt), "transcript": evidence})
            return [(m, topic(SESSION, session + 1), body) for m in nxt]
        return self._advance_server()

    def _advance_server(self) -> list[Outbound]:
        assert self.server is not None
        self.server, out = server_advance(self.server)
        if self.server.result is None:
            return [(int(msg.header.recipient), topic(SECAGG, self.session), msg.to_bytes()) for msg in out]
        done = replace(self.outcome or SessionOutcome(self.members), survivors=self.server.survivors,
                       total=self.server.result, blinding=self.server.blinding_result,
                       secagg_faulty=tuple(sorted(self.server.faulty)))
        self.outcome = done
        if not self.rules.proofs:
            self.stage = "done"
            self.outcomes.append(done)
            return []
        assert self.r is not None and self.outcome is not None and self.server.blinding_result is not None
        try:
            check_aggregate(self.r, {_key(m): self.outcome.s[m] for m in self.server.survivors},
                            lift(self.server.result, self.rules.plan.bits), self.server.blinding_result)
        except (LinearCheckFailed, KeyError):
            self.stage = "blame"
            self.outcome = replace(done, linear_check=False)
            body = _json({"r": hex(self.r)})
            return [(m, topic(BLAME, self.session), body) for m in self.server.survivors]
        self.stage = "done"
        self.outcomes.append(replace(done, linear_check=True))
        return []


def _screen_challenge(parsed: _Parsed, rules: SecureRules, server: ServerState, session: int,
                      round_seed: bytes) -> tuple[int, list[int], list[bytes]]:
    """The challenge r from the round seed and every posting whose masked input is in (as `_screen` derives it)."""
    p = rules.params
    postings = parsed.postings.get(session, {})
    posted_by = [m for m in sorted(server.masked) if m in postings and m in server.masked_blinding]
    digests = []
    for m in posted_by:
        commitment, carry = postings[m]
        z = unpack(server.masked[m], p.length, p.bits)
        digests.append(posting_digest(commitment, masked_input_digest(z, server.masked_blinding[m]), carry))
    return derive_challenge(rules.challenge_seed(round_seed, session), digests), posted_by, digests
