"""A simulation whose rounds are opened, validated, voted and finalized on a real chain."""

from __future__ import annotations

import pytest

from fedledger.core.config import build_config
from fedledger.core.errors import ConfigError, IntegrityError
from fedledger.ledger import RoundStatus
from fedledger.ledger.anvil import find_anvil
from fedledger.sim import Simulation

CFG = {"dataset": "digits", "partition": "iid", "clients": 6, "model": "logreg", "rounds": 3, "lr": 0.1,
       "ledger": {"enabled": True, "chain": "auto", "committee": 3}}

needs_anvil = pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed (make node)")


def _sim(**changes) -> Simulation:
    return Simulation(build_config({**CFG, **changes}))


def _stop_after_round(n: int):
    def hook(record) -> None:
        if record.round == n:
            raise KeyboardInterrupt

    return hook


@pytest.mark.slow
@needs_anvil
def test_rounds_are_finalized_with_constant_transactions_and_survive_a_restart(tmp_path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _sim().run(tmp_path, on_round=_stop_after_round(1))
    res = _sim().run(tmp_path)  # a new process would do the same: anvil restarts from its state file
    assert res.resumed_from == 1
    assert [r.finalized for r in res.rounds] == [True, True, True]
    # open, seal, publish scoring, submit, finalize + per committee member a score commit, reveal and vote
    assert {r.chain_txs for r in res.rounds[1:]} == {5 + 3 * 3}
    assert res.ledger is not None and res.ledger["finalized_rounds"] == 3
    # the chain records exactly the models the simulation produced
    from fedledger.ledger import Ledger

    with Ledger.connect("auto", tmp_path) as ledger:
        last = ledger.round(res.ledger["task_id"], 3)
        assert last.status is RoundStatus.FINALIZED
        assert "0x" + last.model_hash.hex() == res.final_model_hash
        assert last.survivor_count == 6


@pytest.mark.slow
@needs_anvil
def test_a_chain_run_cannot_be_extended_past_its_task(tmp_path) -> None:
    _sim(rounds=1).run(tmp_path)
    with pytest.raises(ConfigError, match="different configuration"):
        _sim(rounds=2).run(tmp_path)


@pytest.mark.slow
def test_memory_chain_runs_and_refuses_to_resume_without_state(tmp_path) -> None:
    res = _sim(rounds=1, ledger={"enabled": True, "chain": "memory", "committee": 3}).run(tmp_path)
    assert res.rounds[0].finalized and res.rounds[0].chain_txs == 5 + 3 * 3
    (tmp_path / "checkpoint.pt").unlink()
    with pytest.raises(IntegrityError, match="in-memory chain"):
        _sim(rounds=1, ledger={"enabled": True, "chain": "memory", "committee": 3}).run(tmp_path)


def test_a_ledger_run_needs_an_output_directory() -> None:
    with pytest.raises(ConfigError, match="--out"):
        _sim().run(None)


@pytest.mark.slow
@needs_anvil
def test_member_level_dp_on_chain_uses_the_registered_keys_and_records_privacy(tmp_path) -> None:
    cfg = {**CFG, "rounds": 2, "clients": 6,
           "privacy": {"dp": "member", "secagg": True, "epsilon": 8.0, "bits": 20}}
    sim = Simulation(build_config(cfg))
    res = sim.run(tmp_path)
    assert all(r.finalized for r in res.rounds)
    assert res.ledger is not None
    assert res.ledger["privacy_spent"] == pytest.approx(res.rounds[-1].epsilon_spent, rel=1e-6)
    assert sim.ddp is not None and sim.ddp.pki is not None  # secure aggregation keyed from the chain registry
    from fedledger.protocol.audit import audit_run

    assert audit_run(tmp_path).rounds == [1, 2]
