"""Attacks on a round under SecAgg+ (with member-level DP, and without DP), against the real roles on a real chain.

Validators recompute the round from the signed transcript in the evidence (`fedledger.protocol.secure.replay`):
a tampered model, a framed trainer and an under-reported privacy spend are each rejected and the aggregator
slashed. Messages are signed: forged, replayed and inflated updates are refused. What reaches the aggregator
is masked inputs, shares and proofs, never a member's update or seed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from fedledger.core.blobstore import BlobStore
from fedledger.core.config import build_config
from fedledger.ledger import Ledger, SlashReason
from fedledger.ledger.anvil import find_anvil
from fedledger.protocol.evidence import Evidence, RoundManifest
from fedledger.protocol.signing import Signed
from fedledger.protocol.transport import InProcessTransport
from fedledger.secagg.messages import AdvertiseKeys, MaskedInput, ShareKeys, SurvivorSignature, UnmaskShares, decode
from fedledger.secagg.packing import pack
from fedledger.sim import Simulation
from fedledger.sim.attacks import INFLATED_EXAMPLES

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed")]

SECURE = {"dataset": "digits", "partition": "iid", "clients": 6, "model": "logreg", "rounds": 2, "lr": 0.1,
          "proofs": "none", "privacy": {"dp": "member", "secagg": True, "epsilon": 8.0, "bits": 20},
          "ledger": {"enabled": True, "chain": "auto", "committee": 3}}


def _evidence(out: Path, task: int, round_id: int) -> Evidence:
    blobs = BlobStore(out / "blobs")
    with Ledger.connect("auto", out, deploy_if_missing=False) as ledger:
        root = ledger.round(task, round_id).evidence_root
    return Evidence.from_bytes(blobs.get(RoundManifest.find(blobs, root).evidence))


def _run(out: Path, **changes: object) -> Simulation:
    sim = Simulation(build_config({**SECURE, **changes}))
    sim.result = sim.run(out)  # type: ignore[attr-defined]
    return sim


def _slashed_only_the_aggregator(sim: Simulation) -> None:
    """The aggregator is slashed for a rejected result in round 1 (and any later round it is drawn for), and
    nobody is slashed for anything else."""
    slashes = sim.result.ledger["slashed"]  # type: ignore[attr-defined]
    rejected = SlashReason.REJECTED_RESULT.name.lower()
    assert {s["reason"] for s in slashes} == {rejected} and 1 in {s["round"] for s in slashes}
    aggregators = {a.address for a in sim.chain.aggregators}
    assert {s["member"] for s in slashes} <= aggregators and len({s["member"] for s in slashes}) == 1


#: SecAgg+ with member-level DP, and SecAgg+ alone (issue 17, item 2: clipped, quantized updates, no noise)
PIPELINES = pytest.mark.parametrize("privacy", [SECURE["privacy"], {"dp": "none", "secagg": True, "bits": 20}],
                                    ids=["member-dp", "no-dp"])


@PIPELINES
def test_a_tampered_aggregate_under_secure_aggregation_is_rejected_and_slashed(tmp_path: Path, reasons: list[str],
                                                                              privacy: dict[str, object]) -> None:
    sim = _run(tmp_path, attack="malicious_aggregator", privacy=privacy)
    res = sim.result  # type: ignore[attr-defined]
    _slashed_only_the_aggregator(sim)
    assert res.rounds[0].attempts >= 2 and all(r.finalized for r in res.rounds)
    assert reasons and all("not the one the transcript's sum gives" in r for r in reasons)
    ev = _evidence(tmp_path, res.ledger["task_id"], 1)
    # the rejected attempt's sum was unmasked too: every attempt of the round is accounted as a release
    assert ev.transcript and ev.deltas is None and ev.state is not None
    assert ev.state["released"] == res.rounds[0].attempts


@PIPELINES
def test_an_aggregator_that_frames_an_honest_trainer_is_rejected_and_slashed(tmp_path: Path, reasons: list[str],
                                                                            privacy: dict[str, object]) -> None:
    sim = _run(tmp_path, attack="framing_aggregator", privacy=privacy)
    res = sim.result  # type: ignore[attr-defined]
    _slashed_only_the_aggregator(sim)  # the framed trainer is never slashed
    assert reasons and all("named as faulty" in r for r in reasons)
    for rnd in (1, 2):
        ev = _evidence(tmp_path, res.ledger["task_id"], rnd)
        assert ev.settlement.faulty == ()


def test_a_privacy_spent_below_the_true_value_is_rejected_and_slashed(tmp_path: Path, reasons: list[str]) -> None:
    sim = _run(tmp_path, attack="privacy_underreport")
    res = sim.result  # type: ignore[attr-defined]
    _slashed_only_the_aggregator(sim)
    assert reasons and all(re.search(r"privacy spent \d+ is not the recomputed", r) for r in reasons)
    assert res.ledger["privacy_spent"] == pytest.approx(res.privacy["epsilon_spent"], rel=1e-9)


def test_forged_replayed_and_inflated_updates_are_refused(tmp_path: Path) -> None:
    attack = "inflate:0.2,impersonate:0.2,replay:0.2"
    sim = _run(tmp_path, attack=attack, privacy={"dp": "none"}, rounds=2)
    res = sim.result  # type: ignore[attr-defined]
    assert all(r.finalized and r.attempts == 1 for r in res.rounds) and res.ledger["slashed"] == []
    refused = [r for agg in sim.chain.aggregators for r in agg.refused]
    assert any("bad signature" in r for r in refused)  # impersonation
    assert any("replayed or misdirected" in r for r in refused)  # last round's message
    assert any(f"{INFLATED_EXAMPLES} examples, more than member" in r for r in refused)
    inflaters = {sim.chain.fed.trainers[m].address for m in sim.attacks.members_doing("inflate")}
    with Ledger.connect("auto", tmp_path, deploy_if_missing=False) as ledger:
        for rnd in (1, 2):
            ev = _evidence(tmp_path, res.ledger["task_id"], rnd)
            contributors = ev.settlement.contributors
            assert not set(contributors) & inflaters and len(set(contributors)) == len(contributors) > 0
            senders = [Signed.from_bytes(raw).sender for raw in ev.transcript]
            assert senders == list(contributors)
            for raw in ev.transcript:  # every weight is bounded by what its member committed to on chain
                msg = Signed.from_bytes(raw)
                from fedledger.protocol.messages import UpdateMessage
                meta = ledger.member(msg.sender).metadata
                assert UpdateMessage.from_bytes(msg.payload).num_examples <= int.from_bytes(meta[:8], "big")


def test_only_masked_inputs_shares_and_proofs_reach_the_aggregator(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str, bytes]] = []
    send = InProcessTransport.send

    def recording(self: InProcessTransport, envelope: object) -> None:
        seen.append((envelope.recipient, envelope.topic, envelope.payload))  # type: ignore[attr-defined]
        send(self, envelope)  # type: ignore[arg-type]

    monkeypatch.setattr(InProcessTransport, "send", recording)
    sim = _run(tmp_path, rounds=1, clients=5, proofs="update")
    chain = sim.chain
    aggregators = {a.address for a in chain.aggregators}
    trainers = chain.trainers
    to_agg = [(t, p) for r, t, p in seen if r in aggregators]
    kinds = {t.split("/")[0] for t, _ in to_agg}
    assert kinds == {"secagg", "posting", "proof"}
    inner = {type(decode(Signed.from_bytes(p).payload)) for t, p in to_agg if t.startswith("secagg")}
    assert inner == {AdvertiseKeys, ShareKeys, MaskedInput, SurvivorSignature, UnmaskShares}
    blob = b"".join(p for _, p in to_agg)
    key = (1, 0)
    for trainer in trainers:
        session = trainer._sessions[key]
        update = sim._work.result(trainer.member, key)
        assert update is not None
        secrets = [update.update.astype("<f4").tobytes(),  # the trained update
                   pack(session.wrapped, sim.ddp.plan.bits),  # the noisy input before masking
                   np.asarray(session.proved, dtype="<i8").tobytes()]
        for secret in secrets:
            assert secret[:64] not in blob
        assert session.client is not None and session.client.record is not None
        for seed in (session.client.record.self_seed, *session.client.record.pair_seeds.values()):
            assert seed not in blob and seed.hex().encode() not in blob


@pytest.fixture
def masked_attempts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The attempt of every masked input a member sends (recorded on the real transport)."""
    seen: list[int] = []
    send = InProcessTransport.send

    def recording(self: InProcessTransport, envelope: object) -> None:
        if envelope.topic.startswith("secagg"):  # type: ignore[attr-defined]
            msg = decode(Signed.from_bytes(envelope.payload).payload)  # type: ignore[attr-defined]
            if isinstance(msg, MaskedInput):
                seen.append(msg.header.session.attempt)
        send(self, envelope)  # type: ignore[arg-type]

    monkeypatch.setattr(InProcessTransport, "send", recording)
    return seen


def test_an_attempt_past_the_planned_releases_stops_before_any_member_masks_an_input(
        tmp_path: Path, masked_attempts: list[int]) -> None:
    """Each rejected attempt was a release (the aggregator saw its sum). With no spare release planned, the
    attempt after round 1's rejection would pass the budget: the run stops with the reason before that attempt
    starts, not at the contract's check when its result is posted."""
    from fedledger.core.errors import PrivacyBudgetExceeded

    sim = Simulation(build_config({**SECURE, "rounds": 1, "attack": "malicious_aggregator",
                                   "privacy": {**SECURE["privacy"], "spare_releases": 0}}))
    with pytest.raises(PrivacyBudgetExceeded, match=r"round 1 attempt 2: .*spare releases"):
        sim.run(tmp_path)
    assert masked_attempts and set(masked_attempts) == {0}


@pytest.mark.slow
def test_one_spare_release_pays_for_one_redone_attempt_within_the_budget(
        tmp_path: Path, masked_attempts: list[int]) -> None:
    """The demo keeps one spare release (examples/demo.toml): a round the committee rejects once is redone with
    fresh noise, both attempts are accounted, and the total stays within the task's epsilon (never over it)."""
    sim = Simulation(build_config({**SECURE, "rounds": 1, "attack": "malicious_aggregator",
                                   "privacy": {**SECURE["privacy"], "spare_releases": 1}}))
    result = sim.run(tmp_path)
    assert set(masked_attempts) == {0, 1}  # the rejected attempt and the redone one, nothing more
    assert sim.ddp is not None and sim.ddp.plan.rounds == 2
    spent = result.privacy["epsilon_spent"]
    assert spent == pytest.approx(sim.ddp.plan.epsilon_after(2)) and spent <= SECURE["privacy"]["epsilon"] + 1e-9
