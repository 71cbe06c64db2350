"""`fedledger zk setup|prove|verify` through argparse, as the lead's main() wires it."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from fedledger.cli.zk_cmd import register
from fedledger.core.errors import FedLedgerError
from fedledger.zk.errors import InvalidProof, SetupRequired

pytestmark = pytest.mark.filterwarnings("ignore::fedledger.zk.backend.DevelopmentSetupWarning")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fedledger")
    register(p.add_subparsers(dest="command", required=True))
    return p


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


SMALL_FLAGS = ["--chunk-size", "16", "--bound2x", "10000000", "--bound2e", "1000000"]


def test_setup_prove_verify_roundtrip(backend, tmp_path, capsys) -> None:
    cache = ["--cache", str(backend.cache_dir)]
    assert _run(["zk", "setup", *SMALL_FLAGS, *cache, "--vyper", str(tmp_path / "v.vy")]) == 0
    out = capsys.readouterr().out
    assert "DEVELOPMENT-ONLY" in out
    record = json.loads(out[out.index("{") :])
    assert record["development_only"] is True and record["kind"] == "single-party-dev"
    assert "def verifyProof" in (tmp_path / "v.vy").read_text()

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "u.npz", x=rng.integers(-100, 100, 20), e=rng.integers(-10, 10, 20))
    bundle = tmp_path / "b.json"
    assert (
        _run(
            [
                "zk",
                "prove",
                *SMALL_FLAGS,
                *cache,
                "--update",
                str(tmp_path / "u.npz"),
                "--task",
                "t",
                "--round",
                "1",
                "--member",
                "m",
                "--challenge",
                "0x1234",
                "--out",
                str(bundle),
            ]
        )
        == 0
    )
    assert _run(["zk", "verify", *cache, str(bundle)]) == 0
    assert "ok: 2 chunk proof(s)" in capsys.readouterr().out

    raw = json.loads(bundle.read_text())
    raw["proof"]["s"] = hex(int(raw["proof"]["s"], 16) ^ 1)
    bundle.write_text(json.dumps(raw))
    with pytest.raises(InvalidProof) as exc:
        _run(["zk", "verify", *cache, str(bundle)])
    assert exc.value.exit_code == 5
    raw["extra"] = 1
    bundle.write_text(json.dumps(raw))
    with pytest.raises(InvalidProof, match="not an update-proof bundle"):
        _run(["zk", "verify", *cache, str(bundle)])


def test_verify_never_creates_keys(tmp_path) -> None:
    from fedledger.zk.update import ChunkProof, UpdateCommitment, UpdateProof, UpdateSpec, bundle_to_json

    spec = UpdateSpec(chunk_size=8)
    bundle = bundle_to_json(spec, UpdateCommitment(1, 4, (2,), 3), UpdateProof(4, (ChunkProof(0, 5, b"\0" * 256),)), 7)
    (tmp_path / "b.json").write_text(json.dumps(bundle))
    with pytest.raises(SetupRequired):
        _run(["zk", "verify", "--cache", str(tmp_path / "empty"), str(tmp_path / "b.json")])


def test_bad_update_file_is_a_user_error(backend, tmp_path) -> None:
    (tmp_path / "u.npz").write_bytes(b"not a zip")
    with pytest.raises(FedLedgerError):
        _run(
            [
                "zk",
                "prove",
                *SMALL_FLAGS,
                "--cache",
                str(backend.cache_dir),
                "--update",
                str(tmp_path / "u.npz"),
                "--task",
                "t",
                "--round",
                "1",
                "--member",
                "m",
                "--challenge",
                "5",
                "--out",
                str(tmp_path / "o"),
            ]
        )


def test_dev_keys_warn_loudly_and_are_cached(backend) -> None:
    from zk_support import SMALL

    from fedledger.zk.backend import DevelopmentSetupWarning

    with pytest.warns(DevelopmentSetupWarning, match="DEVELOPMENT-ONLY"):
        first = backend.keys(SMALL.circuit)
    with pytest.warns(DevelopmentSetupWarning):
        again = backend.keys(SMALL.circuit)
    assert first.directory == again.directory
    assert first.record.created_unix == again.record.created_unix  # loaded, not set up again
    assert first.record.development_only and first.record.kind == "single-party-dev"
    other = type(SMALL)(chunk_size=8)
    assert other.circuit.digest != SMALL.circuit.digest


def test_proof_stats_for_results_json() -> None:
    from fedledger.zk import ProofStats

    stats = ProofStats()
    stats.record_made(1.25)
    stats.record_made(0.5)
    stats.record_verdict("a", None)
    stats.record_verdict("b", InvalidProof("chunk 0 does not verify"))
    assert stats.to_json() == {"made": 2, "verified": 1, "rejected": 1, "prove_seconds": 1.75}
    assert stats.rejected_members == ["b"]
