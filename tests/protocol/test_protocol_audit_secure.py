"""`fedledger audit` under member-level DP and SecAgg+: it recomputes every round from the chain and the signed
transcripts, and trusts nothing else in the run directory (not federation.json, not the cached event index)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from fedledger.cli.main import main
from fedledger.core.config import build_config
from fedledger.core.errors import IntegrityError
from fedledger.ledger.anvil import find_anvil
from fedledger.protocol.audit import audit_run
from fedledger.sim import Simulation

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed")]

SECURE = {"dataset": "digits", "partition": "iid", "clients": 5, "model": "logreg", "rounds": 2, "lr": 0.1,
          "proofs": "update", "privacy": {"dp": "member", "secagg": True, "epsilon": 8.0, "bits": 20},
          "ledger": {"enabled": True, "chain": "auto", "committee": 3}}


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("honest")
    Simulation(build_config(SECURE)).run(out)
    return out


@pytest.fixture(scope="module")
def lazy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lazy")
    cfg = {**SECURE, "proofs": "none", "attack": "malicious_aggregator,lazy_validator:3"}
    res = Simulation(build_config(cfg)).run(out)
    assert all(r.attempts == 1 for r in res.rounds)  # nobody checked: the tampered rounds went through
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("anvil.lock"))
    return dst


def _mislead(run: Path) -> None:
    """Edit what a run directory caches: the task named in federation.json and the event index."""
    fed = run / "chain" / "federation.json"
    fed.write_text(json.dumps({**json.loads(fed.read_text()), "task_id": 7}))
    with sqlite3.connect(run / "chain" / "index.sqlite") as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
            db.execute(f"DELETE FROM {table}")


def test_an_honest_secure_run_is_recomputed_in_every_round(honest: Path, tmp_path: Path) -> None:
    report = audit_run(_copy(honest, tmp_path / "run"))
    assert report.rounds == [1, 2] and report.recomputed == [1, 2] and report.privacy_spent > 0


def test_a_lazy_committee_and_a_malicious_aggregator_fail_the_audit_at_round_1(lazy: Path, tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match=r"^round 1: evidence: the model is not the one the transcript's sum"):
        audit_run(_copy(lazy, tmp_path / "run"))


def test_edited_caches_do_not_change_the_verdict(honest: Path, lazy: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    good = _copy(honest, tmp_path / "good")
    bad = _copy(lazy, tmp_path / "bad")
    _mislead(good)
    _mislead(bad)
    assert audit_run(good).recomputed == [1, 2]
    with pytest.raises(IntegrityError, match=r"^round 1: "):
        audit_run(bad)
    assert main(["audit", str(good)]) == 0
    assert "aggregates recomputed in 2 rounds" in capsys.readouterr().out
    assert main(["audit", "--task", "1", str(bad)]) == IntegrityError.exit_code
