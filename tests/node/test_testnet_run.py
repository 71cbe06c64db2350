"""A federation of real `fedledger node` processes on loopback (fedledger.node.testnet), on a real anvil:
the task runs to the end and audits clean; it reaches the same model as `fedledger run` with the same seed and
configuration in deterministic mode; and killing any one node at each stage of a round does not stop it, and
the restarted node takes part again."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fedledger.cli.main import build_parser, main
from fedledger.core.config import WHOLE_SYSTEM, load_config
from fedledger.ledger.anvil import find_anvil
from fedledger.node.testnet import Testnet

SMALL = {"dataset": "digits", "model": "logreg", "partition": "iid", "seed": 11, "fraction": 1.0, "proofs": "none",
         "max_samples": 600, "local_steps": 5, "ledger.chain": "auto", "ledger.enabled": True}


def _has_daemon() -> bool:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {"node", "task"} <= set(sub.choices)


pytestmark = [
    pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed (make node)"),
    pytest.mark.skipif(not _has_daemon(), reason="`fedledger node` / `fedledger task` are not built in this checkout"),
]


def config(**kw: Any) -> Any:
    return load_config(None, {**SMALL, **kw}, base=WHOLE_SYSTEM)


def audit_clean(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["audit", str(out)]) == 0, capsys.readouterr().err
    assert "audit ok" in capsys.readouterr().out


def test_a_small_testnet_runs_its_task_to_the_end_and_audits_clean(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(rounds=1, **{"ledger.committee": 3, "privacy.dp": "none", "privacy.secagg": False})
    payload = Testnet(tmp_path).up(cfg, 2, aggregators=1, stall=5.0, timeout=900)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(payload))
    assert len(saved["rounds"]) == 1 and saved["rounds"][0]["finalized"] and saved["rounds"][0]["participants"] == 2
    assert saved["final_model_hash"].startswith("0x") and 0.0 < saved["final_accuracy"] <= 1.0
    nodes = {n["name"]: n for n in saved["testnet"]["nodes"] if "role" in n}
    assert set(nodes) == {"owner", "agg1", "val1", "val2", "val3", "m01", "m02"}
    assert all(n["rounds_acted"] >= 1 for n in nodes.values())
    assert nodes["m01"]["bytes_sent"] > 0 and nodes["m02"]["bytes_sent"] > 0  # the updates went over gRPC
    assert nodes["agg1"]["bytes_received"] >= nodes["m01"]["bytes_sent"] + nodes["m02"]["bytes_sent"]
    assert all(n["peak_rss"] and n["processes"] == 1 for n in nodes.values())
    audit_clean(tmp_path, capsys)
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 0
    status = Testnet(tmp_path).status()
    assert all(n["state"] == "down" for n in status["nodes"])  # the run stopped every node; the state is kept
    assert (tmp_path / "chain" / "anvil-state.json").exists()


@pytest.mark.slow
def test_a_ten_node_testnet_reaches_the_model_fedledger_run_reaches(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Same role code, another transport: ten processes (owner, 3 aggregators, 3 validators, 3 trainers) in
    deterministic test mode finish on the model hash the one-process run with the same seed and configuration
    finishes on."""
    cfg = config(rounds=2, deterministic=True, **{"ledger.committee": 3, "privacy.dp": "none", "privacy.secagg": False})
    net_dir, run_dir = tmp_path / "testnet", tmp_path / "run"
    payload = Testnet(net_dir).up(cfg, 3, stall=3.0, timeout=1800)
    assert payload["testnet"]["processes"] == 10
    argv = ["run", "--dataset", "digits", "--model", "logreg", "--partition", "iid", "--seed", "11", "--fraction",
            "1.0", "--proofs", "none", "--max-samples", "600", "--local-steps", "5", "--chain", "auto",
            "--committee", "3", "--clients", "3", "--rounds", "2", "--deterministic", "--dp", "none",
            "--out", str(run_dir), "--quiet"]
    assert main(argv) == 0
    ran = json.loads((run_dir / "results.json").read_text())
    assert [r["model_hash"] for r in payload["rounds"]] == [r["model_hash"] for r in ran["rounds"]]
    assert payload["final_model_hash"] == ran["final_model_hash"]
    assert payload["final_accuracy"] == pytest.approx(ran["final_accuracy"])
    audit_clean(net_dir, capsys)


def _victim(stage: str) -> Callable[[Testnet, dict[str, Any]], str | None]:
    """The node to kill when the round is at `stage` (None: not yet)."""

    def pick(net: Testnet, status: dict[str, Any]) -> str | None:
        cur = (status.get("task") or {}).get("current_round") or {}
        m = net.manifest
        if stage == "owner" and cur.get("round") == 1:
            return "owner"
        if cur.get("round") != 1 or cur.get("status") not in ("open", "submitted"):
            return None
        if stage == "trainer" and cur["status"] == "open":
            return "m01"
        if stage == "aggregator" and cur["status"] == "open":
            spec = m.named(cur["aggregator"])
            return spec.name if spec is not None else None
        if stage == "validator" and cur["status"] == "submitted" and cur.get("committee"):
            spec = m.named(cur["committee"][0])
            return spec.name if spec is not None else None
        return None

    return pick


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["trainer", "aggregator", "validator", "owner"])
def test_killing_one_node_at_each_stage_does_not_stop_the_federation(stage: str, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """SIGKILL one node while its role is at work in round 1, start it again a few seconds later: every round is
    finalized (redone where it has to be), the audit is clean, and the restarted process acts in a later round."""
    cfg = config(rounds=3, **{"ledger.committee": 3, "privacy.dp": "none", "privacy.secagg": False})
    net = Testnet(tmp_path)
    pick = _victim(stage)
    killed: dict[str, Any] = {}

    def chaos(status: dict[str, Any]) -> None:
        if "name" not in killed:
            name = pick(net, status)
            if name is not None:
                net.kill(name)
                killed.update(name=name, at=time.monotonic(), round=status["task"]["current_round"])
        elif "restarted" not in killed and time.monotonic() - killed["at"] > 4.0:
            net.start(killed["name"])
            killed["restarted"] = time.monotonic()

    payload = net.up(cfg, 4, stall=3.0, timeout=2400, on_status=chaos)
    assert "restarted" in killed, f"the {stage} was never killed: the run did not reach its stage"
    assert len(payload["rounds"]) == 3 and all(r["finalized"] for r in payload["rounds"])
    node = next(n for n in payload["testnet"]["nodes"] if n["name"] == killed["name"])
    assert node["processes"] == 2  # the killed process and its restart
    assert node["rounds_acted"] >= 1  # counted by the restarted process: it took part again
    audit_clean(tmp_path, capsys)
