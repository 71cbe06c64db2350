"""Red-team attacks on the secure round (member-level DP through SecAgg+) that the integrated code still lets
through, each run against the real roles on a real chain (anvil), with the attack injected as a wrapper around
the real aggregator role.

Each test asserts the security property. The three here were found open on the integrated code (issues 11/12)
and are fixed beside them (`protocol/secure.py`): a trainer reveals in blame only for a session it finished as a
certified survivor; it starts a second SecAgg+ session only after revealing in blame over the first, among that
session's survivors; a proof message names the challenge it answers, and a proof for another challenge than the
transcript's postings give leaves its member out, never names it faulty. A sum unmasked in blame's first session
is accounted even when the second session is not released (found: privacy spent stayed 0). A malformed blame
reveal names its sender (found: a list of kappas or an int64 overflow crashed the aggregator and validators). A
member whose dealt shares do not rebuild its committed secret is named and the round posted as not released (found:
SecAgg+ aborted, nothing was posted and each honest aggregator was slashed for the missed deadline). A trainer signs
no survivor list shorter than the noise is sized for (found: only the aggregator's own code refused to unmask a sum
of fewer members). Blame's re-sum leaves out only proven culprits, which every trainer of it checks by replaying
session 0 itself, and no member may be left out of session 1 (found: an aggregator that dropped an honest member's
reveal isolated its input as sum0 - sum1). A false kappa in blame is settled by the honest end's proof of the pair's
X25519 value and names the liar (found: blame named nobody and the honest aggregator was slashed); an aggregator
cannot make an honest pair reveal that value. Members silent beyond the SecAgg+ threshold let the aggregator report
the abort without a slash, and a false abort report is slashed (found: the honest aggregator was slashed for the
missed deadline).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedledger.core.config import build_config
from fedledger.ledger import SlashReason
from fedledger.ledger.anvil import find_anvil
from fedledger.protocol.roles import Aggregator, RoundView, Trainer, _drain
from fedledger.protocol.secure import PROOF, _json, topic
from fedledger.secagg.channel import pairwise_seed
from fedledger.secagg.errors import ProtocolViolation, SecAggAbort
from fedledger.secagg.messages import MaskedInput, ShareType, decode
from fedledger.secagg.packing import unpack
from fedledger.secagg.prg import expand_mask
from fedledger.secagg.server import (
    ServerConfig,
    ServerStage,
    ServerState,
    _reconstruct,
    server_advance,
    server_handle,
    server_start,
)
from fedledger.sim import Simulation
from fedledger.sim.attacks import _rewrap
from fedledger.sim.federation import Simulation as _Sim
from fedledger.sim.onchain import ChainRounds
from fedledger.zk.binding import derive_challenge

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed")]

BASE = {"dataset": "digits", "partition": "iid", "clients": 6, "model": "logreg", "rounds": 1, "lr": 0.1,
        "proofs": "none", "privacy": {"dp": "member", "secagg": True, "epsilon": 8.0, "bits": 20},
        "ledger": {"enabled": True, "chain": "auto", "committee": 3}}
# dropout > 0 only sizes the noise for fewer survivors (min_survivors < cohort); nobody actually drops
# (`no_drops`), so every member left out below is left out by the attacker
WITH_MARGIN = {"dropout": 0.1}


@pytest.fixture
def no_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_Sim, "_drops", lambda self, chain, member, key: False)


def _arm(monkeypatch: pytest.MonkeyPatch, make: Any) -> list[Aggregator]:
    """Every aggregator of the run becomes the attacking wrapper `make(role)` (so whoever is drawn attacks)."""
    armed: list[Aggregator] = []

    def arm(self: ChainRounds, cohort_size: int) -> None:
        self.aggregators = [make(a) for a in self.aggregators]
        armed.extend(self.aggregators)

    monkeypatch.setattr(ChainRounds, "_arm_aggregator_attacks", arm)
    return armed


def _run(out: Path, **changes: Any) -> Simulation:
    sim = Simulation(build_config({**BASE, **changes}))
    sim.result = sim.run(out)  # type: ignore[attr-defined]
    return sim


def _mask_bits(v: np.ndarray, bits: int) -> np.ndarray:
    return (v.astype(np.uint64) & np.uint64((1 << bits) - 1)).astype(np.uint32)


# -- 1. blame reveal of a member the aggregator left out: its exact input ---------------------------------------


class ExposingAggregator(Aggregator):
    """Leaves the cohort's lowest member out of the sum by ignoring its proof (it counts as 'unproved', a dropout:
    its neighbours reveal shares of its masking key), then sends it `blame/0` with the round's r. The trainer
    answers any blame whose r matches its challenge with its self-mask seed, so the aggregator holds both of the
    member's mask secrets and unmasks its input."""

    victim: int | None
    asked: set[tuple[int, int]]
    stolen: dict[tuple[int, int], np.ndarray]

    @classmethod
    def wrapping(cls, role: Aggregator) -> ExposingAggregator:
        out = _rewrap(cls, role)
        out.victim, out.asked, out.stolen = None, set(), {}
        return out

    def admit(self, member: int, kind: str, session: int) -> bool:
        return not (kind == PROOF and member == self.victim)

    def step(self, view: RoundView, idle: bool) -> bool:
        assert self.net is not None and self.rules is not None
        key = view.key
        if view.record.aggregator == self.address and view.cohort:
            self.victim = min(self.net.cohort_members(view).values())
        victim_addr = next((a for a, m in self.net.members.items() if m == self.victim), None)
        keep = []
        for env in _drain(self.transport, self.address):
            if env.topic == topic("reveal", 0) and env.sender == victim_addr and key in self.asked:
                body = json.loads(self.open(env, key, [victim_addr]).payload)
                self.stolen[key] = self._unmask(key, bytes.fromhex(body["self_seed"]))
            else:
                keep.append(env)
        for env in keep:
            self.transport.send(env)
        progressed = super().step(view, idle)
        session = self._sessions.get(key)
        if session is not None and session.stage == "done" and key not in self.asked and victim_addr is not None:
            self.asked.add(key)
            assert session.r is not None
            self.send(victim_addr, key, topic("blame", 0), _json({"r": hex(session.r)}))
            progressed = True
        return progressed

    def _unmask(self, key: tuple[int, int], self_seed: bytes) -> np.ndarray:
        assert self.rules is not None and self.victim is not None
        session = self._sessions[key]
        server = session.server
        assert server is not None and session.session == 0 and server.stage == ServerStage.DONE
        p, v = self.rules.params, self.victim
        masked = next(m for mem, m in session.parsed.secagg[0] if mem == v and isinstance(m, MaskedInput))
        y = unpack(masked.payload, p.length, p.bits).astype(np.int64)
        y -= expand_mask(self_seed, p.length, p.bits, b"self")
        keys, _ = _reconstruct(server, [v], ShareType.MASK_KEY)  # its neighbours' shares of its masking key
        secret = X25519PrivateKey.from_private_bytes(keys[v])
        for k in server.cfg.graph.neighbours(v):
            if k == v or k not in server.shared:
                continue
            mask = expand_mask(pairwise_seed(secret, server.advertised[k].mask_public, server.cfg.session, v, k),
                               p.length, p.bits, b"pair").astype(np.int64)
            y = y - mask if v < k else y + mask
        return (y % (1 << p.bits)).astype(np.uint32)


def test_a_member_left_out_of_the_sum_never_reveals_its_self_mask_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                        no_drops: None) -> None:
    armed = _arm(monkeypatch, ExposingAggregator.wrapping)
    sim = _run(tmp_path, proofs="update", **WITH_MARGIN)
    res = sim.result  # type: ignore[attr-defined]
    assert all(r.finalized and r.attempts == 1 for r in res.rounds) and res.ledger["slashed"] == []
    assert any(a.asked for a in armed)  # type: ignore[attr-defined]  # the attack ran: blame/0 went to the victim
    stolen = {k: v for a in armed for k, v in a.stolen.items()}  # type: ignore[attr-defined]
    for key, recovered in stolen.items():
        victim = min(sim.chain.cohort_members_at(key))
        wrapped = sim.chain.trainers[int(victim)]._sessions[key].wrapped
        # the security property: what the aggregator unmasked is not the member's noisy input
        assert not np.array_equal(recovered, _mask_bits(wrapped, sim.ddp.plan.bits)), \
            f"the aggregator recovered member {victim}'s exact input (update + its own small noise share)"


# -- 2. an unsolicited second SecAgg+ session over the same inputs: a difference of two sums ------------------


@dataclass
class _Session1:
    server: ServerState
    sum0: np.ndarray
    victim: int
    pending: tuple[Any, ...]
    done: bool = False


class DifferencingAggregator(Aggregator):
    """After session 0's sum (everyone), sends `session/1` to everyone but the cohort's lowest member without any
    blame. The trainers start a second SecAgg+ session over the same noisy inputs; its sum lacks the victim, and
    sum0 - sum1 is the victim's input. The honest session-0 transcript is then posted (validators accept)."""

    runs: dict[tuple[int, int], _Session1]
    stolen: dict[tuple[int, int], np.ndarray]

    @classmethod
    def wrapping(cls, role: Aggregator) -> DifferencingAggregator:
        out = _rewrap(cls, role)
        out.runs, out.stolen = {}, {}
        return out

    def _submit(self, view: RoundView, output: Any, transcript: tuple[bytes, ...] = (),
                state: dict[str, object] | None = None) -> None:
        key = view.key
        if key in self.runs and self.runs[key].done:
            return super()._submit(view, output, transcript, state)
        assert self.rules is not None and self.net is not None
        session = self._sessions[key]
        assert session.server is not None and session.server.result is not None
        survivors = session.server.survivors
        victim = min(survivors)
        members = tuple(m for m in survivors if m != victim)
        ctx = self.net.context(self.task_id, key)
        server = server_start(ServerConfig(self.rules.session(ctx, 1), self.net.pki(view), self.rules.params,
                                           self.rules.graph(ctx, members, 1)))
        self.runs[key] = _Session1(server, session.server.result.copy(), victim, (view, output, transcript, state))
        body = _json({"members": list(members)})
        for m in members:
            self.send(next(a for a, n in self.net.members.items() if n == m), key, topic("session", 1), body)

    def step(self, view: RoundView, idle: bool) -> bool:
        run = self.runs.get(view.key)
        if run is None or run.done:
            return super().step(view, idle)
        assert self.net is not None and self.rules is not None
        for env in _drain(self.transport, self.address):
            if env.topic != topic("secagg", 1):
                continue
            try:
                run.server, _ = server_handle(run.server, decode(self.open(env, view.key, view.cohort).payload))
            except ProtocolViolation:
                continue
        s = run.server
        expected = {ServerStage.ADVERTISE: set(s.cfg.graph.position), ServerStage.SHARE: set(s.advertised),
                    ServerStage.MASKED: set(s.shared), ServerStage.CONSISTENCY: set(s.survivors),
                    ServerStage.UNMASK: set(s.list_signatures)}[s.stage]
        received = {ServerStage.ADVERTISE: set(s.advertised), ServerStage.SHARE: set(s.shared),
                    ServerStage.MASKED: set(s.masked), ServerStage.CONSISTENCY: set(s.list_signatures),
                    ServerStage.UNMASK: set(s.unmask)}[s.stage]
        if not (expected <= received or idle):
            return False
        try:
            run.server, out = server_advance(s)
        except SecAggAbort:
            run.done = True
            super()._submit(*run.pending)
            return True
        for msg in out:
            recipient = next(a for a, n in self.net.members.items() if n == int(msg.header.recipient))
            self.send(recipient, view.key, topic("secagg", 1), msg.to_bytes())
        if run.server.result is not None:
            diff = run.sum0.astype(np.int64) - run.server.result.astype(np.int64)
            self.stolen[view.key] = (diff % (1 << self.rules.params.bits)).astype(np.uint32)
            run.done = True
            super()._submit(*run.pending)  # the honest session-0 round: validators accept it
        return True


def test_a_second_session_over_the_same_inputs_does_not_isolate_a_member(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    armed = _arm(monkeypatch, DifferencingAggregator.wrapping)
    sim = _run(tmp_path)
    res = sim.result  # type: ignore[attr-defined]
    assert all(r.finalized and r.attempts == 1 for r in res.rounds) and res.ledger["slashed"] == []
    assert any(a.runs for a in armed)  # type: ignore[attr-defined]  # the attack ran: session/1 went out unasked
    stolen = {k: (a.runs[k].victim, v) for a in armed for k, v in a.stolen.items()}  # type: ignore[attr-defined]
    for key, (victim, recovered) in stolen.items():
        wrapped = sim.chain.trainers[victim]._sessions[key].wrapped
        assert not np.array_equal(recovered, _mask_bits(wrapped, sim.ddp.plan.bits)), \
            f"sum0 - sum1 is member {victim}'s exact input (update + its own small noise share)"


# -- 3. framing by a challenge only the victim sees -----------------------------------------------------------


class ChallengeSwitchingAggregator(Aggregator):
    """Sends the cohort's lowest prover a challenge derived from the real postings plus one made-up digest. The
    trainer only checks that its own posting is in the list and that r is derived from the list, so it proves
    for that r; validators re-derive r from the transcript's postings, the victim's (honest, signed) proof fails
    for it, and the victim is named faulty, excluded, and slashed by the contract when the round finalizes."""

    framed: dict[tuple[int, int], str]

    @classmethod
    def wrapping(cls, role: Aggregator) -> ChallengeSwitchingAggregator:
        out = _rewrap(cls, role)
        out.framed = {}
        return out

    def send(self, recipient: str, key: tuple[int, int], t: str, payload: bytes) -> None:
        if t.startswith("challenge/") and key not in self.framed:
            assert self.rules is not None
            body = json.loads(payload)
            postings = [*body["postings"], secrets.token_bytes(32).hex()]
            seed = self.rules.challenge_seed(self._sessions[key].round_seed, int(t.split("/")[1]))
            r = derive_challenge(seed, [bytes.fromhex(p) for p in postings])
            payload = _json({"r": hex(r), "postings": postings})
            self.framed[key] = recipient
        super().send(recipient, key, t, payload)


def test_an_honest_trainer_is_never_slashed_for_a_challenge_the_aggregator_switched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_drops: None) -> None:
    armed = _arm(monkeypatch, ChallengeSwitchingAggregator.wrapping)
    sim = _run(tmp_path, proofs="update", **WITH_MARGIN)
    res = sim.result  # type: ignore[attr-defined]
    framed = {v for a in armed for v in a.framed.values()}  # type: ignore[attr-defined]
    assert framed and all(r.finalized for r in res.rounds)
    faulty = SlashReason.FAULTY_UPDATE.name.lower()
    # the security property: nobody here misbehaved but the aggregator, so no trainer is slashed
    assert not [s for s in res.ledger["slashed"] if s["reason"] == faulty], \
        f"honest trainer(s) {sorted(framed)} slashed as faulty: {res.ledger['slashed']}"


# -- 4. blame's re-sum with an honest member declared silent: the difference of two released sums -------------


class SilencingAggregator(Aggregator):
    """Colludes with a trainer that masks another vector than it proved (`mask_swap`): the linear check fails,
    blame names the colluder, and the aggregator drops the lowest honest member's blame reveal so that member
    counts as 'silent' and is left out of session 1 too. Session 0's sum (everyone) and session 1's sum (all
    but the colluder and the victim) are both unmasked; their difference less the colluder's own input is the
    victim's input. Validators replay the same transcript and accept: a silent member is not faulty."""

    colluders: frozenset[int]
    victims: dict[tuple[int, int], int]
    stolen: dict[tuple[int, int], np.ndarray]
    colluder_inputs: Any  # (member, key) -> the colluder's SecAgg+ input (it hands it to the aggregator)

    @classmethod
    def wrapping(cls, role: Aggregator, colluders: frozenset[int], inputs: Any) -> SilencingAggregator:
        out = _rewrap(cls, role)
        out.colluders, out.victims, out.stolen, out.colluder_inputs = colluders, {}, {}, inputs
        return out

    def step(self, view: RoundView, idle: bool) -> bool:
        assert self.net is not None
        if view.record.aggregator == self.address and view.cohort and view.key not in self.victims:
            self.victims[view.key] = min(m for m in self.net.cohort_members(view).values() if m not in self.colluders)
        self._key = view.key
        return super().step(view, idle)

    def admit(self, member: int, kind: str, session: int) -> bool:
        return not (kind == "reveal" and member == self.victims.get(self._key))

    def publish(self, view: RoundView, output: Any) -> Any:
        assert self.rules is not None and self.last_session is not None
        outcomes = self.last_session.outcomes
        if len(outcomes) == 2 and outcomes[0].total is not None and outcomes[1].total is not None:
            bits = self.rules.params.bits
            diff = outcomes[0].total.astype(np.int64) - outcomes[1].total.astype(np.int64)
            for c in outcomes[0].culprits:
                diff -= self.colluder_inputs(c, view.key).astype(np.int64)
            self.stolen[view.key] = (diff % (1 << bits)).astype(np.uint32)
        return output


def test_blames_second_session_does_not_isolate_an_honest_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  no_drops: None) -> None:
    from fedledger.sim.attacks import AttackPlan

    spec = "mask_swap:0.1"
    cfg = build_config({**BASE, "proofs": "update", "attack": spec, **WITH_MARGIN})
    colluders = AttackPlan.parse(spec, cfg.clients, cfg.seed).members_doing("mask_swap")
    holder: dict[str, Simulation] = {}

    def inputs(member: int, key: tuple[int, int]) -> np.ndarray:  # the colluding trainer's own input
        return _mask_bits(holder["sim"].chain.trainers[member]._sessions[key].wrapped, cfg.privacy.bits)

    armed = _arm(monkeypatch, lambda a: SilencingAggregator.wrapping(a, colluders, inputs))
    sim = Simulation(cfg)
    holder["sim"] = sim
    res = sim.run(tmp_path)
    assert all(r.finalized and r.attempts == 1 for r in res.rounds)
    stolen = {(k, a.victims[k]): v for a in armed for k, v in a.stolen.items()}  # type: ignore[attr-defined]
    assert stolen  # blame ran and both sums were released
    for (key, victim), recovered in stolen.items():
        wrapped = _mask_bits(sim.chain.trainers[victim]._sessions[key].wrapped, cfg.privacy.bits)
        assert not np.array_equal(recovered, wrapped), \
            f"sum0 - sum1 - (colluder's input) is honest member {victim}'s exact input"


class ForcingAggregator(SilencingAggregator):
    """As `SilencingAggregator`, but it does not rely on the protocol's own choice of the re-sum's members (a
    check in the aggregator's code protects nobody): it starts session 1 itself without the victim (whose blame
    reveal it dropped), as if the victim were silent or a culprit. Only the trainers' own check stands between it
    and sum0 - sum1."""

    forced: set[tuple[int, int]]

    @classmethod
    def wrapping(cls, role: Aggregator, colluders: frozenset[int], inputs: Any) -> ForcingAggregator:
        out = super().wrapping(role, colluders, inputs)
        assert isinstance(out, ForcingAggregator)
        out.forced = set()
        return out

    def send(self, recipient: str, key: tuple[int, int], t: str, payload: bytes) -> None:
        if t == topic("session", 1):
            assert self.net is not None
            victim = self.victims[key]
            if self.net.members[recipient] == victim:
                return
            body = json.loads(payload)
            members = [m for m in body["members"] if m != victim]
            session = self._sessions[key]
            if key not in self.forced:
                self.forced.add(key)
                session._open(1, members)  # its own server state for the re-sum without the victim
            payload = _json({**body, "members": members})
        super().send(recipient, key, t, payload)


def test_trainers_refuse_a_second_session_that_leaves_out_a_member_blame_did_not_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_drops: None) -> None:
    import contextlib

    from fedledger.core.errors import IntegrityError, PrivacyBudgetExceeded
    from fedledger.sim.attacks import AttackPlan

    spec = "mask_swap:0.1"
    cfg = build_config({**BASE, "proofs": "update", "attack": spec, **WITH_MARGIN})
    colluders = AttackPlan.parse(spec, cfg.clients, cfg.seed).members_doing("mask_swap")
    holder: dict[str, Simulation] = {}

    def inputs(member: int, key: tuple[int, int]) -> np.ndarray:
        return _mask_bits(holder["sim"].chain.trainers[member]._sessions[key].wrapped, cfg.privacy.bits)

    armed = _arm(monkeypatch, lambda a: ForcingAggregator.wrapping(a, colluders, inputs))
    sim = Simulation(cfg)
    holder["sim"] = sim
    with contextlib.suppress(IntegrityError, PrivacyBudgetExceeded):  # every attempt's aggregator attacks
        sim.run(tmp_path)
    forced = {k for a in armed for k in a.forced}  # type: ignore[attr-defined]
    assert forced  # the attack ran: session 1 went out without the victim
    stolen = {k for a in armed for k in a.stolen}  # type: ignore[attr-defined]
    resummed = [k for a in armed for k, s in a._sessions.items()
                if s.session == 1 and s.server is not None and s.server.result is not None
                and a.victims[k] not in s.members]  # type: ignore[attr-defined]
    # the security property: no second sum without the victim is ever unmasked, so no difference isolates it
    assert not stolen and not resummed, f"session 1 without the victim was unmasked in attempts {resummed}"


# -- 5. an unmasked sum that is never accounted: blame, then a second session below min_survivors -------------


class UnaccountedAggregator(Aggregator):
    """Colludes with a `mask_swap` trainer so the linear check of session 0 fails after session 0's sum was
    unmasked; then ignores every session-1 proof, so session 1 keeps fewer members than the noise is sized for
    and is 'not released'. The round finalizes as not released: privacy spent does not move, though the
    aggregator holds session 0's sum."""

    seen: dict[tuple[int, int], np.ndarray]

    @classmethod
    def wrapping(cls, role: Aggregator) -> UnaccountedAggregator:
        out = _rewrap(cls, role)
        out.seen = {}
        return out

    def admit(self, member: int, kind: str, session: int) -> bool:
        return not (kind == PROOF and session == 1)

    def publish(self, view: RoundView, output: Any) -> Any:
        assert self.last_session is not None
        first = self.last_session.outcomes[0]
        if first.total is not None:
            self.seen[view.key] = first.total
        return output


def test_every_unmasked_sum_is_accounted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_drops: None) -> None:
    armed = _arm(monkeypatch, UnaccountedAggregator.wrapping)
    sim = _run(tmp_path, proofs="update", attack="mask_swap:0.1", **WITH_MARGIN)
    res = sim.result  # type: ignore[attr-defined]
    seen = {k for a in armed for k in a.seen}  # type: ignore[attr-defined]
    assert res.rounds[0].finalized and (1, res.rounds[0].attempts - 1) in seen  # the finalized attempt unmasked a sum
    from fedledger.protocol.secure import privacy_spent
    rules = sim._secure
    assert rules is not None
    # the security property: the chain accounts at least one release for a round whose sum was unmasked
    assert res.ledger["privacy_spent"] >= privacy_spent(rules, res.rounds[0].attempts) - 1e-12, \
        f"privacy spent {res.ledger['privacy_spent']} though {res.rounds[0].attempts} sum(s) were unmasked"


# -- 6. one trainer's malformed blame reveal crashes the aggregator (and every validator) ---------------------


def _malformed_reveals(monkeypatch: pytest.MonkeyPatch, body: dict[str, Any]) -> None:
    """The `mask_swap` trainers (their swap makes the linear check fail: blame) answer blame with `body`'s fields
    replacing theirs, signed with their own key: their own fault, which blame must name, not crash on."""
    from fedledger.sim.attacks import MaskSwapTrainer

    send = Trainer.send

    def malformed(self: Trainer, recipient: str, key: tuple[int, int], t: str, payload: bytes) -> None:
        if t.startswith("reveal/"):
            payload = _json({**json.loads(payload), **body})
        send(self, recipient, key, t, payload)

    monkeypatch.setattr(MaskSwapTrainer, "send", malformed)


@pytest.mark.parametrize("body", [{"kappas": []}, {"carries": [2**70]}], ids=["kappas-list", "carry-overflow"])
def test_a_malformed_reveal_names_its_sender_and_never_crashes_the_round(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_drops: None, body: dict[str, Any]) -> None:
    _malformed_reveals(monkeypatch, body)
    sim = _run(tmp_path, proofs="update", attack="mask_swap:0.1", **WITH_MARGIN)
    res = sim.result  # type: ignore[attr-defined]
    cheaters = {sim.chain.fed.trainers[m].address for m in sim.attacks.members_doing("mask_swap")}
    assert all(r.finalized and r.attempts == 1 for r in res.rounds)
    assert {s["member"] for s in res.ledger["slashed"]} == cheaters


# -- 7. a trainer that deals shares of another self-mask seed than it committed to: the round aborts ---------


class MisdealingTrainer(Trainer):
    """Deals its neighbours Shamir shares of a random seed, not of the self-mask seed it commits to and masks
    with. Every share opens the salted commitment it signed, so every holder accepts it; at unmasking the
    rebuilt seed does not match the seed commitment and SecAgg+ aborts (`server._unmask`: 'dealt shares that do
    not rebuild their committed secrets'). Found: the aggregator's session failed, nothing was posted, and the
    owner's reopen slashed the aggregator for the missed deadline; the cheater was named nowhere on chain."""

    dealing = False

    @classmethod
    def wrapping(cls, role: Trainer) -> MisdealingTrainer:
        return _rewrap(cls, role)

    def step(self, view: RoundView, idle: bool) -> bool:
        MisdealingTrainer.dealing = True
        try:
            return super().step(view, idle)
        finally:
            MisdealingTrainer.dealing = False


def test_a_member_that_deals_bad_shares_is_named_and_the_round_completes(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from fedledger.core.errors import IntegrityError, PrivacyBudgetExceeded
    from fedledger.ledger import Ledger
    from fedledger.secagg import client as secagg_client

    split = secagg_client.shamir.split_many

    def misdeal(secrets_: np.ndarray, xs: np.ndarray, t: int, rng: Any) -> np.ndarray:
        if MisdealingTrainer.dealing:
            secrets_ = secrets_.copy()
            secrets_[0] = np.frombuffer(secrets.token_bytes(secrets_.shape[1]), dtype=np.uint8)
        return split(secrets_, xs, t, rng)

    monkeypatch.setattr(secagg_client.shamir, "split_many", misdeal)
    build = ChainRounds.build_roles

    def build_roles(self: ChainRounds, **kw: Any) -> None:
        build(self, **kw)
        self.trainers[0] = MisdealingTrainer.wrapping(self.trainers[0])

    monkeypatch.setattr(ChainRounds, "build_roles", build_roles)
    import contextlib
    sim = Simulation(build_config(BASE))
    with contextlib.suppress(IntegrityError, PrivacyBudgetExceeded):  # the round is redone until the driver gives up
        sim.run(tmp_path)
    reasons = [s.reason for a in sim.chain.aggregators for s in a._sessions.values() if s.reason]
    assert reasons and all("do not rebuild their committed secrets" in r for r in reasons)  # the misdealing
    with Ledger.connect("auto", tmp_path, deploy_if_missing=False) as ledger:
        slashes = ledger.slashes()
        finalized = ledger.task(1).finalized_rounds
    missed = [s for s in slashes if s.reason is SlashReason.MISSED_DEADLINE]
    # the security property: one member's bad dealing neither stops the round nor costs the aggregator its stake
    assert finalized == 1 and not missed, f"{len(missed)} honest aggregator(s) slashed, {finalized} rounds final"
    cheater = sim.chain.fed.trainers[0].address
    assert [(s.member, s.reason) for s in slashes] == [(cheater, SlashReason.FAULTY_UPDATE)]  # named on its own


# -- 8. a mask-swapper that lies about one pairwise kappa: blame names nobody, the round fails -----------------


class KappaLyingTrainer(Trainer):
    """Proves its honest input, masks another (`mask_swap`), and in blame reports one pairwise kappa off by
    exactly what makes its own equation hold. `zk.binding.blame` then names nobody: the lie only shows as a
    pair of disagreeing kappas (`disputed`), which the protocol never settles (`adjudicate` is not called). The
    aggregator's session fails ('the linear check failed and blame named nobody'), nothing is posted, and the
    owner's reopen slashes the honest aggregator for the missed deadline."""

    proof_s: dict[tuple[tuple[int, int], int], int]

    @classmethod
    def wrapping(cls, role: Trainer) -> KappaLyingTrainer:
        out = _rewrap(cls, role)
        out.proof_s = {}
        return out

    def prepare_input(self, session: Any) -> Any:
        assert self.rules is not None
        session.wrapped[0] = (int(session.wrapped[0]) + 1) % (1 << self.rules.plan.bits)
        return session

    def send(self, recipient: str, key: tuple[int, int], t: str, payload: bytes) -> None:
        kind, _, s = t.partition("/")
        if kind == "proof":
            self.proof_s[(key, int(s))] = int(json.loads(payload)["s"], 16)
        elif kind == "reveal":
            payload = self._lie(key, int(s), json.loads(payload))
        super().send(recipient, key, t, payload)

    def _lie(self, key: tuple[int, int], s: int, body: dict[str, Any]) -> bytes:
        from fedledger.zk.binding import field_mask, project
        from fedledger.zk.field import P

        assert self.rules is not None
        p, r = self.rules.params, self._challenges[(key, s)]
        session = self._sessions[key]
        z, u = session.masked[s]
        seed = bytes.fromhex(body["self_seed"])
        self_projection = (project(r, expand_mask(seed, p.length, p.bits, b"self")) + field_mask(seed)) % P
        kappas = {int(j): int(v, 16) for j, v in body["kappas"].items()}
        sigma = {j: 1 if self.member < j else -1 for j in kappas}
        lhs = (self.proof_s[(key, s)] + self_projection + sum(sigma[j] * k for j, k in kappas.items())) % P
        rhs = (project(r, z) + u + pow(2, p.bits, P) * project(r, session.carries[s])) % P
        j = min(kappas)
        body["kappas"][str(j)] = hex((kappas[j] + sigma[j] * (rhs - lhs)) % P)  # now its own equation holds
        return _json(body)


def test_a_false_kappa_in_blame_names_its_sender(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 no_drops: None) -> None:
    from fedledger.ledger import Ledger

    build = ChainRounds.build_roles

    def build_roles(self: ChainRounds, **kw: Any) -> None:
        build(self, **kw)
        self.trainers[0] = KappaLyingTrainer.wrapping(self.trainers[0])

    monkeypatch.setattr(ChainRounds, "build_roles", build_roles)
    sim = Simulation(build_config({**BASE, "proofs": "update", **WITH_MARGIN}))
    res = sim.run(tmp_path)
    liar = sim.chain.trainers[0]
    assert isinstance(liar, KappaLyingTrainer) and liar.proof_s  # the attack ran: it proved, then lied in blame
    blamed = [o for a in sim.chain.aggregators for s in a._sessions.values() for o in s.outcomes
              if o.linear_check is False]
    assert blamed and all(o.culprits == (0,) and not o.disputed for o in blamed)  # the dispute named the liar
    with Ledger.connect("auto", tmp_path, deploy_if_missing=False) as ledger:
        slashes = ledger.slashes()
        finalized = ledger.task(1).finalized_rounds
    # the security property: the liar is named (and slashed), the round completes, nobody honest pays for it
    assert finalized == 1 and all(r.finalized and r.attempts == 1 for r in res.rounds)
    assert [(s.member, s.reason) for s in slashes] == [(sim.chain.fed.trainers[0].address,
                                                         SlashReason.FAULTY_UPDATE)]


class PairProbingAggregator(Aggregator):
    """Colludes with a `mask_swap` trainer so blame runs, then asks an honest member to 'settle a dispute' with an
    honest neighbour whose (genuine, signed) reveal does not contradict it: a pair's X25519 value gives away the
    pair's mask, and with the self-mask seed revealed in blame, every pair's value would unmask the member."""

    colluders: frozenset[int]
    reveals: dict[tuple[int, int], dict[int, bytes]]
    probed: set[tuple[int, int]]
    answers: list[bytes]

    @classmethod
    def wrapping(cls, role: Aggregator, colluders: frozenset[int]) -> PairProbingAggregator:
        out = _rewrap(cls, role)
        out.colluders, out.reveals, out.probed, out.answers = colluders, {}, set(), []
        return out

    def step(self, view: RoundView, idle: bool) -> bool:
        assert self.net is not None
        key = view.key
        got = self.reveals.setdefault(key, {})
        for env in _drain(self.transport, self.address):
            if env.topic == topic("shared", 0):
                self.answers.append(env.payload)  # what an honest member gave away
                continue
            if env.topic == topic("reveal", 0):
                got[self.net.members[env.sender]] = env.payload
            self.transport.send(env)
        honest = sorted(m for m in got if m not in self.colluders)
        session = self._sessions.get(key)
        if len(honest) >= 2 and key not in self.probed and session is not None and session.r is not None:
            self.probed.add(key)
            victim, neighbour = honest[0], honest[1]
            body = _json({"r": hex(session.r), "reveals": [got[neighbour].hex()]})
            self.send(_address(self.net, victim), key, topic("dispute", 0), body)
        return super().step(view, idle)


def _address(net: Any, member: int) -> str:
    return next(a for a, m in net.members.items() if m == member)


def test_an_honest_member_reveals_no_pair_value_without_a_contradicting_reveal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_drops: None) -> None:
    from fedledger.sim.attacks import AttackPlan

    spec = "mask_swap:0.1"
    cfg = build_config({**BASE, "proofs": "update", "attack": spec, **WITH_MARGIN})
    colluders = AttackPlan.parse(spec, cfg.clients, cfg.seed).members_doing("mask_swap")
    armed = _arm(monkeypatch, lambda a: PairProbingAggregator.wrapping(a, colluders))
    sim = Simulation(cfg)
    res = sim.run(tmp_path)
    assert any(a.probed for a in armed)  # type: ignore[attr-defined]  # the attack ran
    # the security property: no pair value leaves an honest member unless the other end's own report contradicts it
    assert not [x for a in armed for x in a.answers], "an honest member revealed a pair's X25519 value"  # type: ignore[attr-defined]
    assert all(r.finalized for r in res.rounds)


# -- 9. members that go silent mid-protocol beyond the threshold: the honest aggregator pays -----------------


def test_members_going_silent_beyond_the_threshold_do_not_cost_the_aggregator_its_stake(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # four of six trainers (colluding, or simply offline) go silent after their masked input, in the first attempt
    send = Trainer.send

    def silent_after_masking(self: Trainer, recipient: str, key: tuple[int, int], t: str, payload: bytes) -> None:
        if key == (1, 0) and self.member < 4 and t.startswith("secagg/"):
            inner = decode(payload)
            if type(inner).__name__ in ("SurvivorSignature", "UnmaskShares"):
                return
        send(self, recipient, key, t, payload)

    monkeypatch.setattr(Trainer, "send", silent_after_masking)
    sim = _run(tmp_path)
    res = sim.result  # type: ignore[attr-defined]
    reasons = [s.reason for a in sim.chain.aggregators for s in a._sessions.values() if s.stage == "failed"]
    assert reasons and all("secure aggregation aborted" in r for r in reasons)
    missed = [s for s in res.ledger["slashed"] if s["reason"] == SlashReason.MISSED_DEADLINE.name.lower()]
    # the security property: the aggregator did nothing wrong, so it keeps its stake
    assert not missed, f"the honest aggregator was slashed for a deadline the silent members made it miss: {missed}"
    # its abort report was accepted (silence is nobody's proven fault: nobody is slashed) and the round redrawn
    assert res.ledger["slashed"] == [] and all(r.finalized and r.attempts == 2 for r in res.rounds)


class FalseAbortAggregator(Aggregator):
    """A lazy aggregator: in the first attempt it has every message of a complete round, yet reports an abort
    (the no-fault path) with all of them as evidence, to skip the work of posting a result without a slash."""

    reported: set[tuple[int, int]]

    @classmethod
    def wrapping(cls, role: Aggregator) -> FalseAbortAggregator:
        out = _rewrap(cls, role)
        out.reported = set()
        return out

    def _submit(self, view: RoundView, output: Any, transcript: tuple[bytes, ...] = (),
                state: dict[str, object] | None = None) -> None:
        if view.key != (1, 0):
            return super()._submit(view, output, transcript, state)
        self.reported.add(view.key)
        self._report_abort(view, self._sessions[view.key])


def test_an_abort_report_over_a_complete_transcript_is_rejected_and_slashed(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    armed = _arm(monkeypatch, FalseAbortAggregator.wrapping)
    sim = _run(tmp_path)
    res = sim.result  # type: ignore[attr-defined]
    liars = {a.address for a in armed if a.reported}  # type: ignore[attr-defined]
    assert len(liars) == 1  # the attack ran: the first attempt's aggregator reported an abort
    # the security property: an abort the evidence does not show costs its reporter as any rejected result
    assert [(s["member"], s["reason"]) for s in res.ledger["slashed"]] == [
        (a, SlashReason.REJECTED_RESULT.name.lower()) for a in liars]
    assert all(r.finalized and r.attempts == 2 for r in res.rounds)


# -- 10. a sum over fewer members than the noise is sized for ---------------------------------------------------


class ShortSumAggregator(Aggregator):
    """Drops two of six members after their key shares (dropouts to SecAgg+; four survivors are still above the
    SecAgg+ threshold) and unmasks the other four's sum, though the noise is sized for six survivors
    (`plan.min_survivors`): the check that refuses such a release is in the aggregator's own code
    (`AggregatorSession`), so the attacker runs it with its own bound."""

    dropped: frozenset[int] = frozenset({0, 1})

    @classmethod
    def wrapping(cls, role: Aggregator) -> ShortSumAggregator:
        out = _rewrap(cls, role)
        assert out.rules is not None
        out.rules = replace(out.rules, plan=replace(out.rules.plan, min_survivors=1))  # its own copy of the rule
        return out

    def admit(self, member: int, kind: str, session: int) -> bool:
        sessions = [s for s in self._sessions.values() if s.server is not None]
        past_shares = any(member in s.server.shared for s in sessions)
        return member not in self.dropped or (kind == "secagg" and not past_shares)


def test_no_sum_over_fewer_members_than_the_noise_is_sized_for_is_unmasked(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib

    from fedledger.core.errors import IntegrityError, PrivacyBudgetExceeded

    armed = _arm(monkeypatch, ShortSumAggregator.wrapping)
    sim = Simulation(build_config(BASE))
    # its results are rejected until the planned releases run out: it does not care, it has the sum
    with contextlib.suppress(IntegrityError, PrivacyBudgetExceeded):
        sim.run(tmp_path)
    assert sim.ddp is not None
    need = sim.ddp.plan.min_survivors
    assert any(s.server is not None and s.server.survivors for a in armed for s in a._sessions.values())  # it tried
    short = [(k, s.server.survivors) for a in armed for k, s in a._sessions.items()
             if s.server is not None and s.server.result is not None and len(s.server.survivors) < need]
    # the security property: the aggregator never holds a sum over fewer members than the noise is sized for
    assert not short, f"sums unmasked over {[len(v) for _, v in short]} members; the noise is sized for {need}"
