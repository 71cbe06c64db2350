"""`fedledger audit`: an honest run verifies; one tampered blob fails at its round and names the item; what an edit
of the run directory can and cannot change (the anvil state file is the chain under `--chain auto`: the output says
so); a second task with the run's spec hash neither derails the audit nor makes it pick the wrong task."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from fedledger.cli.main import main
from fedledger.core.blobstore import BlobStore
from fedledger.core.config import build_config
from fedledger.core.errors import DataError, IntegrityError
from fedledger.ledger import Ledger, Role, TaskSpec
from fedledger.ledger.anvil import find_anvil
from fedledger.protocol.audit import LOCAL_CHAIN_TRUST, audit_run
from fedledger.protocol.evidence import RoundManifest
from fedledger.secagg.keys import Identity
from fedledger.sim import Simulation

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed")]


@pytest.fixture(scope="module")
def honest_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("honest")
    cfg = build_config({"dataset": "digits", "partition": "iid", "clients": 5, "model": "logreg", "rounds": 3,
                        "ledger": {"enabled": True, "chain": "auto"}})
    Simulation(cfg).run(out)
    return out


@pytest.fixture
def run_copy(honest_run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(honest_run, dst, ignore=shutil.ignore_patterns("anvil.lock"))
    return dst


def _manifest(run: Path, round_id: int) -> RoundManifest:
    with Ledger.connect("auto", run, deploy_if_missing=False) as ledger:
        record = ledger.round(1, round_id)
    return RoundManifest.find(BlobStore(run / "blobs"), record.evidence_root)


def _tamper(run: Path, address: bytes) -> None:
    path = run / "blobs" / address.hex()[:2] / address.hex()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_an_honest_run_verifies(run_copy: Path) -> None:
    report = audit_run(run_copy)
    assert report.rounds == [1, 2, 3] and report.recomputed == [1, 2, 3]
    assert report.checks == 7 * 3  # per round: selection, evidence, finality, 3 x rewards, privacy


def test_a_tampered_evidence_blob_fails_at_its_round(run_copy: Path) -> None:
    _tamper(run_copy, _manifest(run_copy, 2).evidence)
    with pytest.raises(IntegrityError, match=r"^round 2: evidence: .*does not match its content"):
        audit_run(run_copy)


def test_a_tampered_model_fails_at_the_round_that_made_it(run_copy: Path) -> None:
    _tamper(run_copy, _manifest(run_copy, 3).model)
    with pytest.raises(IntegrityError, match=r"^round 3: evidence"):
        audit_run(run_copy)


def test_cli_exit_code_and_one_line(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(run_copy)]) == 0
    _tamper(run_copy, _manifest(run_copy, 1).evidence)
    assert main(["audit", str(run_copy)]) == IntegrityError.exit_code
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "round 1" in err


def test_a_run_without_ledger_cannot_be_audited(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--chain"):
        audit_run(tmp_path)


def test_edited_federation_json_and_index_do_not_change_the_verdict(run_copy: Path) -> None:
    fed = run_copy / "chain" / "federation.json"
    fed.write_text(json.dumps({**json.loads(fed.read_text()), "task_id": 2}))
    with sqlite3.connect(run_copy / "chain" / "index.sqlite") as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
            db.execute(f"DELETE FROM {table}")
    report = audit_run(run_copy)
    assert report.task_id == 1 and report.recomputed == [1, 2, 3]
    _tamper(run_copy, _manifest(run_copy, 2).evidence)
    with pytest.raises(IntegrityError, match=r"^round 2: "):
        audit_run(run_copy)


def test_under_chain_auto_the_anvil_state_file_is_the_chain_and_the_output_says_so(
        run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Confirmed: whoever can write the run directory can rewrite the chain the audit checks against (here one stored
    evidence root in the state file). Nothing in the directory can anchor it, so the audit says what it trusts."""
    assert main(["audit", str(run_copy)]) == 0
    out = capsys.readouterr().out
    assert f"trusted: {LOCAL_CHAIN_TRUST}" in out and "task owner 0x" in out
    assert audit_run(run_copy).chain_trust == LOCAL_CHAIN_TRUST
    root = _root_of_round(run_copy, 2)
    state = run_copy / "chain" / "anvil-state.json"
    text = state.read_text()
    assert text.count(root.hex()) >= 1  # the round record's evidence root, in the task manager's storage
    state.write_text(text.replace(root.hex(), (bytes([root[0] ^ 1]) + root[1:]).hex()))
    with pytest.raises(IntegrityError, match=r"^round 2: evidence: "):
        audit_run(run_copy)


def _root_of_round(run: Path, round_id: int) -> bytes:
    with Ledger.connect("auto", run, deploy_if_missing=False) as ledger:
        return ledger.round(1, round_id).evidence_root


def test_a_deployment_file_naming_other_code_is_refused(run_copy: Path) -> None:
    """The contract addresses come from chain/deployment.json, a file in the directory (also under --chain URL): an
    address holding other code (here the utility token, named as the rewards contract the audit asks which root it
    pays against) is refused."""
    path = run_copy / "chain" / "deployment.json"
    deployment = json.loads(path.read_text())
    deployment["addresses"]["rewards"] = deployment["addresses"]["utility_token"]
    path.write_text(json.dumps(deployment))
    with pytest.raises(IntegrityError, match=r"^contracts: the rewards at 0x\w+ \(named by the run's "
                                             r"deployment.json\) is not the contract compiled from these sources"):
        audit_run(run_copy)


ATTACKER = 7  # a dev account the simulation does not use


def _duplicate_task(run: Path, spec_hash: bytes | None = None) -> int:
    """An outsider registers as a task owner and creates a task with the run's spec hash (a copy of the public spec),
    or with `spec_hash`, with real transactions on the run's chain."""
    with Ledger.connect("auto", run, deploy_if_missing=False) as ledger:
        spec_hash = spec_hash or ledger.task(1).spec_hash
        attacker = ledger.dev(ATTACKER)
        attacker.register(Role.TASK_OWNER, Identity(os.urandom(32)).public_bytes)
        ledger.transfer_utility(attacker.address, 1_000 * 10**18)
        task = attacker.create_task(TaskSpec(spec_hash=spec_hash, reward_per_round=10**18, rounds=1,
                                             privacy_budget=1, committee_size=3, quorum_bps=6_666))
        ledger.persist()
        assert ledger.task(int(task)).spec_hash == spec_hash and ledger.task(int(task)).owner == attacker.address
        return int(task)


def test_a_second_task_with_the_run_spec_hash_does_not_derail_the_audit(run_copy: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Confirmed before the fix: the audit found two tasks with the run's spec and refused to audit the honest run.
    Now it picks the run's own task (the one whose finalized rounds' evidence the directory holds)."""
    duplicate = _duplicate_task(run_copy)
    report = audit_run(run_copy)
    assert report.task_id == 1 != duplicate and report.recomputed == [1, 2, 3]
    with Ledger.connect("auto", run_copy, deploy_if_missing=False) as ledger:
        assert report.owner == ledger.task(1).owner != ledger.task(duplicate).owner
    # ...and refuses, in one line naming both tasks, when the directory cannot tell them apart
    (run_copy / "blobs" / "names" / _root_of_round(run_copy, 1).hex()).unlink()
    with pytest.raises(DataError, match=rf"^tasks 1 \(owner 0x\w+\), {duplicate} \(owner 0x\w+\) have this run's "
                                        r"spec and none of them .*: name the run's task with --task N$"):
        audit_run(run_copy)
    capsys.readouterr()
    assert main(["audit", str(run_copy)]) == DataError.exit_code
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--task N" in err


def test_audit_task_refuses_a_task_whose_spec_is_not_the_runs(run_copy: Path) -> None:
    other = _duplicate_task(run_copy, os.urandom(32))
    with pytest.raises(DataError, match=rf"^task {other}'s spec is not in this directory's blob store"):
        audit_run(run_copy, task_id=other)
    assert audit_run(run_copy).task_id == 1
