"""`fedledger account` and `fedledger gov` against a simulated run's managed anvil.

One run (4 trainers, 2 rounds, rewards left unclaimed) is shared by the module: the tests claim its rewards,
move stake, and pass a governance proposal through quorum and timelock from the command line, reading the
results back from the chain.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedledger.cli.main import main
from fedledger.core.config import build_config
from fedledger.ledger import Ledger, Role
from fedledger.ledger.anvil import find_anvil
from fedledger.sim import Simulation
from fedledger.sim.onchain import TRAINER_BASE, VALIDATOR_BASE

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed")]

RUN = {"dataset": "digits", "partition": "iid", "clients": 4, "model": "logreg", "rounds": 2, "lr": 0.1,
       "proofs": "none", "privacy": {"dp": "none"},
       "ledger": {"enabled": True, "chain": "auto", "committee": 3, "claim_rewards": False}}
TOKEN = 10**18
DAY = 86_400


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("account") / "run"
    res = Simulation(build_config(RUN)).run(out)
    assert all(r.finalized for r in res.rounds)
    return out


def cli(argv: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capfd.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capfd.readouterr()
    return code, out, err


def chain(run_dir: Path) -> Ledger:
    return Ledger.connect("auto", run_dir, deploy_if_missing=False)


def test_a_trainer_claims_its_rewards_once(run_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with chain(run_dir) as ledger:
        trainer = ledger.dev(TRAINER_BASE).address
        before = ledger.reward_balance(trainer)
    code, out, err = cli(["account", "claim", "--out", str(run_dir), "--task", "1", "--as", "trainer:0"], capfd)
    assert code == 0, err
    assert f"{trainer} claimed" in out
    with chain(run_dir) as ledger:
        gained = ledger.reward_balance(trainer) - before
        claimed_for_others = [ledger.reward_balance(ledger.dev(TRAINER_BASE + i).address) for i in (1, 2, 3)]
    assert gained > 0 and claimed_for_others == [0, 0, 0]  # only the signer's reward, unless --all
    code, out, _ = cli(["account", "claim", "--out", str(run_dir), "--task", "1", "--as", "trainer:0"], capfd)
    assert code == 0 and "nothing to claim" in out
    code, out, _ = cli(["account", "balance", "--out", str(run_dir), "--as", "trainer:0", "--json"], capfd)
    payload = json.loads(out)
    assert payload["role"] == "trainer" and payload["reward"] == gained / TOKEN and payload["reputation"] > 0


def test_claim_all_pays_exactly_the_round_rewards(run_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(["account", "claim", "--out", str(run_dir), "--task", "1", "--all"], capfd)
    assert code == 0, err
    with chain(run_dir) as ledger:
        paid = sum(ledger.reward_balance(ledger.dev(TRAINER_BASE + i).address) for i in range(4))
        pools = sum(ledger.reward_pool(1, r)[1] for r in (1, 2))
    assert 0 < paid <= pools  # every contributor's share of both rounds; nothing beyond the posted pools


def test_stake_unbond_and_withdraw_after_the_delay(run_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    base = ["--out", str(run_dir), "--as", "validator:2"]
    with chain(run_dir) as ledger:
        v = ledger.dev(VALIDATOR_BASE + 2)
        ledger.transfer_utility(v.address, 5 * TOKEN)
        staked = v.stake_of()
    assert cli(["account", "stake", "5", *base], capfd)[0] == 0
    code, out, err = cli(["account", "unbond", "2.5", *base], capfd)
    assert code == 0, err
    code, _, err = cli(["account", "withdraw", *base], capfd)
    assert code != 0 and err.count("\n") == 1 and "unbond at" in err  # one line: not yet
    assert cli(["chain", "advance", str(2 * DAY + 1), "--out", str(run_dir)], capfd)[0] == 0
    code, out, err = cli(["account", "withdraw", *base], capfd)
    assert code == 0 and "withdrew 2.5" in out, err
    with chain(run_dir) as ledger:
        assert ledger.stake_of(v.address) == staked + 5 * TOKEN - 5 * TOKEN // 2
        assert ledger.unbonding_of(v.address)[0] == 0


def test_a_parameter_changes_only_after_quorum_and_timelock(run_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out_dir = ["--out", str(run_dir)]
    code, out, err = cli(["gov", "propose", "min-stake", "--key", str(int(Role.TRAINER)), "--value", "12",
                          *out_dir, "--as", "validator:0"], capfd)
    assert code == 0, err
    pid = out.split("#")[1].split(":")[0]
    code, _, err = cli(["gov", "execute", pid, *out_dir, "--as", "validator:0"], capfd)
    assert code != 0 and "voting" in err  # still voting: nothing happens
    for v in (0, 1):
        assert cli(["gov", "vote", pid, "--for", *out_dir, "--as", f"validator:{v}"], capfd)[0] == 0
    code, _, err = cli(["gov", "vote", pid, "--for", *out_dir, "--as", "validator:1"], capfd)
    assert code != 0 and "already voted" in err and err.count("\n") == 1
    assert cli(["chain", "advance", str(3 * DAY + 1), *out_dir], capfd)[0] == 0
    code, out, err = cli(["gov", "execute", pid, *out_dir, "--as", "validator:0"], capfd)
    assert code == 0 and "queued" in out, err
    with chain(run_dir) as ledger:
        assert ledger.params()["min_stake_trainer"] != 12 * TOKEN  # queued, not executed: the timelock runs
    code, _, err = cli(["gov", "execute", pid, *out_dir, "--as", "validator:0"], capfd)
    assert code != 0 and "executable from" in err
    assert cli(["chain", "advance", str(2 * DAY + 1), *out_dir], capfd)[0] == 0
    code, out, err = cli(["gov", "execute", pid, *out_dir, "--as", "validator:0"], capfd)
    assert code == 0 and "executed" in out, err
    with chain(run_dir) as ledger:
        assert ledger.params()["min_stake_trainer"] == 12 * TOKEN
    code, out, _ = cli(["gov", "list", *out_dir, "--json"], capfd)
    assert {r["id"]: r["state"] for r in json.loads(out)}[int(pid)] == "executed"


def test_a_defeated_proposal_is_never_executed(run_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out_dir = ["--out", str(run_dir)]
    code, out, _ = cli(["gov", "propose", "slash-bps", "--value", "9000", *out_dir, "--as", "validator:0"], capfd)
    pid = out.split("#")[1].split(":")[0]
    with chain(run_dir) as ledger:
        before = ledger.params()["slash_bps"]
    assert cli(["gov", "vote", pid, "--against", *out_dir, "--as", "validator:1"], capfd)[0] == 0
    assert cli(["gov", "vote", pid, "--against", *out_dir, "--as", "validator:2"], capfd)[0] == 0
    assert cli(["chain", "advance", str(6 * DAY), *out_dir], capfd)[0] == 0
    code, _, err = cli(["gov", "execute", pid, *out_dir, "--as", "validator:0"], capfd)
    assert code != 0 and "defeated" in err
    with chain(run_dir) as ledger:
        assert ledger.params()["slash_bps"] == before


@pytest.mark.parametrize("argv, message", [
    (["account", "stake", "-1"], "positive number of tokens"),
    (["account", "stake", "1e-19"], "at most 18 decimals"),
    (["account", "balance", "0x12"], "not an address"),
    (["account", "claim", "--task", "9"], "the chain has tasks"),
    (["gov", "propose", "slash-bps", "--value", "1.5"], "whole number"),
    (["gov", "propose", "treasury-grant", "--value", "1"], "needs --to"),
    (["gov", "vote", "99", "--for"], "unknown proposal"),
    (["account", "stake", "1", "--as", "miner:1"], "--as 'miner:1'"),
])
def test_bad_input_ends_with_one_line(run_dir: Path, capfd: pytest.CaptureFixture[str], argv: list[str],
                                      message: str) -> None:
    code, _, err = cli([*argv, "--out", str(run_dir)], capfd)
    assert code != 0 and message in err and err.strip().count("\n") <= 1, err


def test_a_directory_without_a_chain_is_refused(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(["account", "balance", "--out", str(tmp_path)], capfd)
    assert code != 0 and "no chain state" in err and not (tmp_path / "chain").exists()
