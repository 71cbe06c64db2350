"""The loopback testnet's own parts (fedledger.node.testnet): keys, layout, funding on a real anvil, status and
faults from the command line. The federation itself running as node processes is tests/node/test_testnet_run.py."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from eth_account import Account

from fedledger.cli.main import main
from fedledger.core.config import WHOLE_SYSTEM, load_config
from fedledger.core.errors import ConfigError
from fedledger.ledger import DeployParams, Ledger
from fedledger.ledger.anvil import find_anvil
from fedledger.ledger.backends import AnvilBackend
from fedledger.node.faults import LinkFaults
from fedledger.node.testnet import (
    MANIFEST,
    OWNER_FUNDS,
    PASSWORD_FILE,
    STAKE_FUNDS,
    Testnet,
    node_argv,
)
from fedledger.node.testnet_results import ACTED, RECEIVED, SENT, figure, parse_metrics


def config(**kw: object) -> object:
    values = {"dataset": "digits", "rounds": 2, "ledger.chain": "auto", "ledger.enabled": True, **kw}
    return load_config(None, values, base=WHOLE_SYSTEM)


def test_each_node_gets_its_own_random_key_encrypted_under_a_private_password(tmp_path: Path) -> None:
    cfg = config()
    m = Testnet(tmp_path).create(cfg, 3)
    names = [n.name for n in m.nodes]
    assert names == ["owner", "agg1", "agg2", "agg3", "val1", "val2", "val3", "m01", "m02", "m03"]
    # a member's shard is its member number (its place among trainer registrations), as in `fedledger run`
    assert [n.data for n in m.nodes if n.role == "trainer"] == ["shard", "shard", "shard"]
    pw = tmp_path / PASSWORD_FILE
    assert stat.S_IMODE(pw.stat().st_mode) == 0o600
    password = pw.read_text().strip()
    addresses = set()
    for n in m.nodes:
        ks = tmp_path / "nodes" / n.name / "keystore.json"
        assert stat.S_IMODE(ks.stat().st_mode) == 0o600
        blob = json.loads(ks.read_text())
        assert blob["crypto"]["kdf"] == "scrypt" and n.address.lower()[2:] == blob["address"].lower()
        key = Account.decrypt(blob, password)
        assert Account.from_key(key).address == n.address
        assert key.hex() not in ks.read_text()  # never in clear
        addresses.add(n.address)
    assert len(addresses) == len(m.nodes)
    ports = [p for n in m.nodes for p in (n.port, n.metrics_port)]
    assert len(set(ports)) == len(ports)
    # the task's configuration round-trips through DIR/task.toml, with the testnet's member count
    assert Testnet(tmp_path).config() == cfg.model_copy(update={"clients": 3, "out": str(tmp_path)})
    # a second `up` on the directory finds the same testnet; another size is refused
    assert Testnet(tmp_path).create(cfg, 3) == m
    with pytest.raises(ConfigError, match="3 members"):
        Testnet(tmp_path).create(cfg, 4)


def test_a_node_is_started_with_its_own_key_port_shard_and_state(tmp_path: Path) -> None:
    m = Testnet(tmp_path).create(config(), 2)
    m.chain_url, m.task_id = "http://127.0.0.1:8545", 1
    spec = m.node("m02")
    argv = node_argv(tmp_path, m, spec)
    i = argv.index("node")
    flags = dict(zip(argv[i + 1 :: 2], argv[i + 2 :: 2], strict=True))
    assert flags["--keystore"] == str(tmp_path / "nodes" / "m02" / "keystore.json")
    assert flags["--listen"] == f"127.0.0.1:{spec.port}" and flags["--data"] == "shard"
    assert flags["--roles"] == "trainer" and flags["--tasks"] == "1" and flags["--chain"] == m.chain_url
    assert flags["--state"] == str(tmp_path / "nodes" / "m02" / "state")
    assert flags["--password-file"] == str(tmp_path / PASSWORD_FILE)


def test_every_node_is_funded_for_gas_and_its_stake_by_the_dev_account(tmp_path: Path) -> None:
    if find_anvil() is None:
        pytest.skip("anvil is not installed (make node)")
    net = Testnet(tmp_path)
    m = net.create(config(), 1)
    backend = AnvilBackend(tmp_path)
    ledger = Ledger.attach(backend, params=DeployParams(), owns_backend=True)
    try:
        net.fund(ledger, m)
        net.fund(ledger, m)  # once per address: a restarted testnet does not pay twice
        for n in m.nodes:
            assert backend.w3.eth.get_balance(n.address) >= 10**18
            want = OWNER_FUNDS if n.role == "owner" else STAKE_FUNDS[n.role]
            assert ledger.utility_balance(n.address) == want
    finally:
        ledger.close()


def test_status_and_faults_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["testnet", "status", str(tmp_path / "none")]) != 0
    assert "no testnet" in capsys.readouterr().err
    m = Testnet(tmp_path).create(config(), 2)
    assert main(["testnet", "status", str(tmp_path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [n["state"] for n in status["nodes"]] == ["down"] * len(m.nodes) and status["task"] is None
    assert main(["testnet", "kill", str(tmp_path), "m01"]) != 0
    assert "not running" in capsys.readouterr().err

    assert main(["testnet", "fault", str(tmp_path), "m01", "--drop", "agg1,m02", "--delay", "0.2"]) == 0
    capsys.readouterr()
    faults = LinkFaults(tmp_path / "nodes" / "m01" / "state" / "faults.json", poll=0)
    plan = faults.current()
    assert plan.drops(m.node("agg1").address) and plan.drops(m.node("m02").address.upper())
    assert not plan.drops(m.node("agg2").address) and plan.delay == 0.2
    assert main(["testnet", "status", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nodes"][7]["fault"]["delay"] == 0.2
    assert main(["testnet", "fault", str(tmp_path), "m01", "--clear"]) == 0
    assert faults.current().healthy
    assert main(["testnet", "fault", str(tmp_path), "nobody", "--drop", "all"]) == 2
    assert (tmp_path / MANIFEST).exists()


def test_a_nodes_figures_are_read_from_its_prometheus_metrics() -> None:
    text = """# HELP fedledger_node_bytes_sent_total bytes sent
# TYPE fedledger_node_bytes_sent_total counter
fedledger_node_bytes_sent_total 1234
fedledger_node_bytes_received_total 99.0
fedledger_node_blob_bytes_fetched_total 5000
fedledger_node_rounds_acted_total 3
fedledger_node_errors_total{kind="chain"} 1
fedledger_node_errors_total{kind="transport"} 2
fedledger_node_stage_seconds_sum{stage="training"} 1.5
not a metric line
"""
    got = parse_metrics(text)
    assert got["fedledger_node_errors_total"] == 3.0
    assert (figure(got, SENT), figure(got, RECEIVED), figure(got, ACTED)) == (1234, 99, 3)
    assert figure(None, SENT) == 0


def test_a_testnet_under_member_level_dp_reports_the_plan_every_node_derives() -> None:
    """The whole-system defaults (member-level DP through SecAgg+): the results' privacy block names the plan, as
    `fedledger run` does, instead of failing once the task is done."""
    from fedledger.models import build_model
    from fedledger.node.testnet_results import run_privacy

    cfg = load_config(None, {"clients": 5, "rounds": 2, "dataset": "digits", "model": "logreg"}, base=WHOLE_SYSTEM)
    assert cfg.privacy.dp == "member"
    block = run_privacy(cfg, build_model("logreg", (1, 8, 8), 10, seed=0), 0.4, 2)
    assert block["epsilon_spent"] == 0.4 and block["rounds_accounted"] == 2
    assert "SecAgg+" in block["mechanism"] and block["parameters"]["noise_multiplier"] > 0
