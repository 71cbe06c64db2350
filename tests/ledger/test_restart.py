"""A stopped (or killed) run restarts on the same directory and finds everything finalized."""

from __future__ import annotations

import json
import os
import signal

import pytest
from ledger_fed import TEST_PARAMS, build_fed, needs_anvil

from fedledger.ledger import Ledger, RoundStatus
from fedledger.ledger.errors import DeploymentError

pytestmark = [pytest.mark.anvil, pytest.mark.slow, needs_anvil]


def test_restart_finds_deployment_rounds_and_index(tmp_path) -> None:
    run = tmp_path / "run"
    with Ledger.connect("auto", run, params=TEST_PARAMS) as ledger:
        fed = build_fed(ledger)
        info, tree = fed.full_round()
        addresses = dict(ledger.deployment.addresses)
        events = ledger.index.count()
        last_block = ledger.block_number
        node_pid = ledger.backend.node.proc.pid  # type: ignore[attr-defined]
    with pytest.raises(ProcessLookupError):  # the node stopped with the session
        os.kill(node_pid, 0)
    assert (run / "chain" / "anvil-state.json").exists()
    assert json.loads((run / "chain" / "deployment.json").read_text())["addresses"] == addresses

    with Ledger.connect("auto", run) as again:
        assert again.deployment.addresses == addresses
        assert again.block_number == last_block
        # the index was reopened, not rebuilt: it already stands at the last block
        assert again.index.last_block == last_block and again.index.count() == events
        rec = again.round(fed.task_id, info.round_id)
        assert rec.status is RoundStatus.FINALIZED and rec.reward_root == tree.root
        assert again.task(fed.task_id).finalized_rounds == 1
        again.verify_selection(fed.task_id, info.round_id)
        # and the run continues: the next round opens, finalizes, and pays out
        fed = fed.rebind(again)
        fed.trainers[0].claim_reward(fed.task_id, info.round_id, 20 * 10**18, tree.proof(fed.trainers[0].address))
        info2, _ = fed.full_round(privacy=2.0)
        assert again.round(fed.task_id, info2.round_id).status is RoundStatus.FINALIZED


def test_finalized_round_survives_a_killed_node(tmp_path) -> None:
    run = tmp_path / "run"
    ledger = Ledger.connect("auto", run, params=TEST_PARAMS)
    fed = build_fed(ledger)
    info, _ = fed.full_round()  # finalize() made the state durable
    node = ledger.backend.node  # type: ignore[attr-defined]
    os.killpg(node.proc.pid, signal.SIGKILL)  # no clean shutdown, no dump on exit
    node.proc.wait()
    ledger.close()
    with Ledger.connect("auto", run) as again:
        assert again.round(fed.task_id, info.round_id).status is RoundStatus.FINALIZED
        assert again.task(fed.task_id).finalized_rounds == 1


def test_second_process_attaches_to_the_running_node(tmp_path) -> None:
    run = tmp_path / "run"
    with Ledger.connect("auto", run, params=TEST_PARAMS) as first, Ledger.connect("auto", run) as second:
        assert not second.backend.owner  # type: ignore[attr-defined]
        assert second.backend.url == first.backend.url  # type: ignore[attr-defined]
        assert second.deployment.addresses == first.deployment.addresses
        second.close()
        assert first.block_number >= 1  # closing an attachment leaves the node running


def test_a_deployment_from_other_sources_is_refused(tmp_path) -> None:
    run = tmp_path / "run"
    with Ledger.connect("auto", run, params=TEST_PARAMS):
        pass
    path = run / "chain" / "deployment.json"
    dep = json.loads(path.read_text())
    dep["abi_hashes"]["task_manager"] = "0" * 64
    path.write_text(json.dumps(dep))
    with pytest.raises(DeploymentError, match="other sources"):
        Ledger.connect("auto", run)
    with Ledger.connect("auto", run, force_deploy=True) as fresh:
        assert fresh.deployment.addresses["task_manager"] != dep["addresses"]["task_manager"]


def test_sigterm_stops_the_managed_node(tmp_path) -> None:
    import subprocess
    import sys
    import urllib.error

    from fedledger.ledger.anvil import rpc

    script = (
        "import sys, time\n"
        "from fedledger.ledger import Ledger\n"
        f"ledger = Ledger.connect('auto', {str(tmp_path / 'run')!r})\n"
        "print(ledger.backend.url, flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:")
        rpc(url, "eth_chainId")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) != 0
    finally:
        proc.kill()
    with pytest.raises((OSError, urllib.error.URLError)):
        rpc(url, "eth_chainId", timeout=2.0)
    assert (tmp_path / "run" / "chain" / "anvil-state.json").exists()
    assert not (tmp_path / "run" / "chain" / "node.json").exists()


def test_the_chain_clock_never_goes_back_across_a_restart(tmp_path) -> None:
    """anvil does not save the offset `evm_increaseTime` set: found when a withdrawal two days after an unbond,
    made across two commands, reverted because the restarted node's next block was two days older."""
    run = tmp_path / "run"
    with Ledger.connect("auto", run, params=TEST_PARAMS) as ledger:
        ledger.advance_time(5 * 86_400)
        ahead = ledger.timestamp
    with Ledger.connect("auto", run) as again:
        again.backend.mine()
        assert again.timestamp > ahead
