"""Secrets of a simulated run: from the OS by default, from the seed only in deterministic mode.

The attack (issue 11, item 6): every secret derived from the public seed in the task spec, so anyone could
rebuild the members' keys, strip the noise and open the commitments. Two runs with the same --seed must
therefore differ in every secret (identity keys registered on chain, noise shares, SecAgg+ masked inputs,
commitment randomness and blindings) while their public choices (data, model init, cohort) stay the same;
deterministic mode reproduces them all and says so in results.json and in each round's evidence. And an
attempt that is redone may have been unmasked by its aggregator, so it is accounted: the privacy spent counts
every attempt.
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedledger.core.blobstore import BlobStore
from fedledger.core.config import build_config
from fedledger.core.errors import IntegrityError
from fedledger.ledger import Ledger
from fedledger.ledger.anvil import find_anvil
from fedledger.protocol.evidence import Evidence, RoundManifest
from fedledger.sim import Simulation

needs_anvil = pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed (make node)")
pytestmark = [pytest.mark.slow, needs_anvil]

WHOLE = {"dataset": "digits", "partition": "iid", "clients": 5, "model": "logreg", "rounds": 1, "lr": 0.1,
         "seed": 4, "proofs": "update", "privacy": {"dp": "member", "secagg": True, "epsilon": 8.0, "bits": 20},
         "ledger": {"enabled": True, "chain": "auto", "committee": 3}}


@dataclass
class Observed:
    """What the run's own code drew, read back through the objects it used (no component replaced)."""

    out: Path
    result: Any
    registered: dict[int, bytes] = field(default_factory=dict)
    noise: list[np.ndarray] = field(default_factory=list)
    masked: list[dict[int, bytes]] = field(default_factory=list)
    blindings: list[dict[int, tuple[int, tuple[int, ...], tuple[int, ...]]]] = field(default_factory=list)


def _observe(out: Path, **changes: Any) -> Observed:
    """Run, then read what each trainer role drew for round 1's finalized attempt from its own session (the
    trainers hold these secrets; nothing is replaced or spied on)."""
    sim = Simulation(build_config({**WHOLE, **changes}))
    seen = Observed(out, sim.run(out))
    assert sim.ddp is not None and sim.ddp.pki is not None and sim.chain is not None
    seen.registered = {i: p.ed25519 for i, p in sim.ddp.pki.items()}
    key = (1, seen.result.rounds[0].attempts - 1)
    sessions = {t.member: t._sessions[key] for t in sim.chain.trainers if key in t._sessions}
    assert sessions and all(s.secret is not None for s in sessions.values())
    members = sorted(sessions)
    seen.noise.append(np.stack([sessions[m].secret.e for m in members]))  # type: ignore[union-attr]
    seen.masked.append({m: sessions[m].masked[0][0].tobytes() for m in members if 0 in sessions[m].masked})
    seen.blindings.append({m: (s.t, s.rhos, s.salts) for m in members
                           if (s := sessions[m].secret) is not None})
    return seen


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Observed]:
    base = tmp_path_factory.mktemp("entropy")
    return {name: _observe(base / name, deterministic=name.startswith("det")) for name in ("sys1", "sys2", "det1",
                                                                                            "det2")}


def _evidence(run: Observed) -> Evidence:
    blobs = BlobStore(run.out / "blobs")
    with Ledger.connect("auto", run.out, deploy_if_missing=False) as ledger:
        root = ledger.round(run.result.ledger["task_id"], 1).evidence_root
    return Evidence.from_bytes(blobs.get(RoundManifest.find(blobs, root).evidence))


def test_two_runs_with_the_same_seed_differ_in_every_secret(runs: dict[str, Observed]) -> None:
    a, b = runs["sys1"], runs["sys2"]
    assert a.result.rounds[0].finalized and b.result.rounds[0].finalized
    # identity keys: each member registered a different key on chain, and keeps its secret in DIR/keys (0600)
    assert all(a.registered[i] != b.registered[i] for i in a.registered)
    for run in (a, b):
        files = sorted((run.out / "keys").iterdir())  # the members' keys and the other roles' signing keys
        assert len([f for f in files if f.name.startswith("member-")]) == WHOLE["clients"]
        assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    # noise shares and stochastic rounding: nothing in common beyond chance
    assert a.noise[0].shape == b.noise[0].shape
    noised = (a.noise[0] != 0) | (b.noise[0] != 0)  # the update coordinates (the extra ones carry no noise)
    assert noised.sum() > 0.9 * noised.size * (1 - 8 / noised.shape[1])
    assert (a.noise[0] != b.noise[0])[noised].mean() > 0.9
    # SecAgg+ randomness: every member's masked input differs
    assert set(a.masked[0]) == set(b.masked[0])
    assert all(a.masked[0][m] != b.masked[0][m] for m in a.masked[0])
    # commitment randomness and the linear-check blinding t, per member
    common = set(a.blindings[0]) & set(b.blindings[0])
    assert common
    for m in common:
        (ta, ra, sa), (tb, rb, sb) = a.blindings[0][m], b.blindings[0][m]
        assert ta != tb and not set(ra) & set(rb) and not set(sa) & set(sb)
    # what --seed fixes stays fixed: the data, the model it starts from, the cohort size
    assert a.result.rounds[0].participants == b.result.rounds[0].participants
    for run in (a, b):
        assert run.result.randomness["deterministic"] is False
        saved = json.loads(json.dumps(run.result.to_json()))
        assert saved["randomness"]["deterministic"] is False and saved["config"]["deterministic"] is False
        assert _evidence(run).deterministic is False


def test_deterministic_runs_reproduce_every_secret_and_say_so(runs: dict[str, Observed]) -> None:
    a, b = runs["det1"], runs["det2"]
    assert a.registered == b.registered
    assert not (a.out / "keys").exists()  # derived from the seed, nothing to keep
    assert np.array_equal(a.noise[0], b.noise[0])
    assert a.blindings[0] == b.blindings[0]
    assert a.result.final_model_hash == b.result.final_model_hash
    assert runs["sys1"].registered != a.registered  # the deterministic keys are not the system ones
    for run in (a, b):
        payload = run.result.to_json()
        assert payload["randomness"]["deterministic"] is True and payload["config"]["deterministic"] is True
        assert _evidence(run).deterministic is True


def test_every_attempt_of_a_redone_round_is_accounted(tmp_path: Path) -> None:
    # the first aggregator goes silent after the members revealed their unmasking shares: the sum was unmasked
    # (released to it) even though no result was posted, and the round is redone with fresh noise
    cfg = {**WHOLE, "proofs": "none", "rounds": 2, "clients": 6, "attack": "late_aggregator"}
    sim = Simulation(build_config(cfg))
    res = sim.run(tmp_path)
    attempts = sum(r.attempts for r in res.rounds)
    assert res.rounds[0].attempts == 2 and attempts == 3
    assert sim.ddp is not None and sim.ddp.plan.rounds == 2 + sim.cfg.privacy.spare_releases
    # every attempt's sum was unmasked: all of them are spent, on chain as in results.json
    assert res.rounds[-1].epsilon_spent == pytest.approx(sim.ddp.plan.epsilon_after(attempts))
    assert res.rounds[-1].epsilon_spent > sim.ddp.plan.epsilon_after(2)
    assert res.ledger is not None and res.ledger["privacy_spent"] == pytest.approx(res.rounds[-1].epsilon_spent,
                                                                                   rel=1e-6)
    assert res.privacy["rounds_accounted"] == attempts


def test_a_resumed_run_keeps_its_member_keys_and_refuses_keys_that_are_not_registered(tmp_path: Path) -> None:
    plain = {k: v for k, v in WHOLE.items() if k not in ("proofs", "privacy")}
    first = Simulation(build_config(plain)).run(tmp_path)
    assert first.rounds[0].finalized
    again = Simulation(build_config(plain)).run(tmp_path)  # resumes: the same keys from DIR/keys
    assert again.resumed_from == 1
    (tmp_path / "keys" / "member-0.key").write_bytes(bytes(32))  # someone swapped a member's secret
    with pytest.raises(IntegrityError, match="not the ones registered on chain"):
        Simulation(build_config(plain)).run(tmp_path)
