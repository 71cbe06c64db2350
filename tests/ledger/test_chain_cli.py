"""`fedledger chain up|status|deploy` as a user meets them."""

from __future__ import annotations

import argparse
import json

import pytest
from ledger_fed import needs_anvil

from fedledger.cli import chain_cmd
from fedledger.core.errors import FedLedgerError

pytestmark = [pytest.mark.anvil, pytest.mark.slow, needs_anvil]


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="fedledger")
    chain_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except FedLedgerError as e:  # what fedledger.cli.main does with user errors
        print(f"fedledger: error: {e}")
        return e.exit_code


def test_up_then_status_then_deploy(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert run("chain", "up", "--out", str(out), "--once") == 0
    text = capsys.readouterr().out
    assert "task_manager" in text and "tasks     none" in text
    dep = json.loads((out / "chain" / "deployment.json").read_text())
    assert set(dep["addresses"]) == {
        "utility_token",
        "reward_token",
        "staking",
        "reputation",
        "rewards",
        "blockhash_randomness",
        "registry",
        "task_manager",
        "governance",
        "scores",
    }
    assert run("chain", "status", "--out", str(out), "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["contracts"] == dep["addresses"] and status["chain_id"] == 31337 and status["block"] >= 12
    assert run("chain", "deploy", "--out", str(out), "--force") == 0
    assert "deployment file" in capsys.readouterr().out
    assert json.loads((out / "chain" / "deployment.json").read_text())["addresses"] != dep["addresses"]


def test_status_without_a_deployment_is_one_clear_line(tmp_path, capsys) -> None:
    assert run("chain", "status", "--out", str(tmp_path / "empty")) == 3  # no chain state: nothing is created
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no chain state" in out[0] and not (tmp_path / "empty").exists()
    (tmp_path / "bare" / "chain").mkdir(parents=True)  # a chain directory without contracts
    assert run("chain", "status", "--out", str(tmp_path / "bare")) == 6
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "fedledger chain deploy" in out[0]


def test_status_on_memory_deploys_in_process(capsys) -> None:
    assert run("chain", "status", "--chain", "memory", "--json") == 0
    assert json.loads(capsys.readouterr().out)["chain"] == "memory"
