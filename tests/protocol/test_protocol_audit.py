"""`fedledger audit`: an honest run verifies; one tampered blob fails at its round and names the item."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fedledger.cli.main import main
from fedledger.core.blobstore import BlobStore
from fedledger.core.config import build_config
from fedledger.core.errors import DataError, IntegrityError
from fedledger.ledger import Ledger
from fedledger.ledger.anvil import find_anvil
from fedledger.protocol.audit import audit_run
from fedledger.protocol.evidence import RoundManifest
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
    assert report.checks == 6 * 3


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
