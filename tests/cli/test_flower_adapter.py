"""The Flower adapter: an unchanged Flower 1.42 ClientApp and FedAvg, wrapped in `LedgerStrategy`, finalize every
round on the managed anvil chain; `fedledger audit` and `report` work on the output directory; a ServerApp that
posts anything but the strategy's aggregate of the signed updates is rejected by the committee and slashed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

flwr = pytest.importorskip("flwr")

from fedledger.cli.main import main as cli  # noqa: E402
from fedledger.core.errors import ConfigError, IntegrityError  # noqa: E402
from fedledger.ledger.anvil import find_anvil  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "flower"
needs_anvil = pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed (make node)")
pytestmark = [pytest.mark.slow, pytest.mark.anvil, needs_anvil]


def _apps():
    sys.path.insert(0, str(EXAMPLE))
    try:
        import task  # type: ignore[import-not-found]
        from client_app import app as client_app  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(EXAMPLE))
    return client_app, task


def test_flower_example_runs_on_chain_and_audits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "flower"
    env_path = f"{ROOT / 'src'}"
    subprocess.run([sys.executable, str(EXAMPLE / "run.py"), "--out", str(out), "--nodes", "4", "--rounds", "2",
                    "--fraction-train", "0.75"], check=True, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
                   capture_output=True, timeout=600)
    res = json.loads((out / "results.json").read_text())
    assert [r["round"] for r in res["rounds"]] == [1, 2]
    assert res["config"]["fraction"] == 0.75 and "lr" not in res["config"]  # Flower's sampling; its own training
    for r in res["rounds"]:
        assert r["finalized"] and r["attempts"] == 1
        assert r["participants"] == 3 and r["dropped"] == 1 and len(r["flower"]["nodes"]) == 3
        assert 0.0 <= r["accuracy"] <= 1.0
    assert res["rounds"][-1]["accuracy"] > 0.2  # digits: 10 classes, chance is 0.1
    assert res["ledger"]["finalized_rounds"] == 2 and res["ledger"]["slashed"] == []
    paid = [b["reward"] for k, b in res["ledger"]["balances"].items() if k.startswith("trainer")]
    assert sum(paid) > 0  # the nodes that took part were paid for their rounds

    assert cli(["audit", str(out)]) == 0
    said = capsys.readouterr().out
    assert "2 finalized rounds" in said and "aggregates recomputed in 2 rounds" in said
    assert cli(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert res["rounds"][-1]["model_hash"][:12] in page

    # the audit trusts the blobs only by hash: a changed model blob fails it
    model = res["rounds"][0]["model_hash"].removeprefix("0x")
    blob = next(p for p in (out / "blobs").rglob("*") if p.is_file() and model in p.name)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    assert cli(["audit", str(out)]) != 0
    assert "round 1" in capsys.readouterr().err
    # the report still writes its page, says at the top that the audit failed and where, and exits 5
    assert cli(["report", str(out)]) == 5
    assert "the audit failed" in capsys.readouterr().err
    page = (out / "report.html").read_text()
    glance = page[page.index('id="glance"'):page.index('id="summary"')]
    assert '<div class="value">failed</div>' in glance and "round 1" in glance


@pytest.mark.parametrize("kind", ["FedAvg", "FedMedian"])
def test_serverapp_posting_another_model_is_rejected_and_slashed(tmp_path: Path, kind: str) -> None:
    """The attack: the ServerApp (the round's aggregator) changes Flower's aggregate before it is recorded. Every
    validator recomputes the strategy's aggregate of the signed updates, rejects, and the aggregator is slashed
    each attempt."""
    from flwr.app import ConfigRecord
    from flwr.serverapp import strategy as flower_strategies

    from fedledger.flower import LedgerStrategy, LocalGrid
    from fedledger.ledger import Ledger

    client_app, _ = _apps()
    inner = getattr(flower_strategies, kind)(min_available_nodes=2)
    honest = inner.aggregate_train

    def tampered(server_round, replies):  # type: ignore[no-untyped-def]
        arrays, metrics = honest(server_round, replies)
        state = arrays.to_torch_state_dict()
        first = next(iter(state))
        state[first] = state[first] + 0.05
        return flwr.app.ArrayRecord(state), metrics

    inner.aggregate_train = tampered  # the instance keeps its class: the wrapper cannot tell from the type
    out = tmp_path / "tampered"
    strategy = LedgerStrategy(inner, out, model=f"{EXAMPLE / 'task.py'}:build", input_shape=(64,), num_classes=10,
                              claim_rewards=False)
    with pytest.raises(IntegrityError, match="redone 5 times"):
        strategy.start(LocalGrid(client_app, 3), strategy.initial_arrays(), num_rounds=1,
                       train_config=ConfigRecord({"lr": 0.1}))
    with Ledger.connect("auto", out) as ledger:
        slashes = ledger.slashes(1)
        assert ledger.round(1, 1).status.name != "FINALIZED"
    assert len(slashes) == 5 and {s.reason.name.lower() for s in slashes} == {"rejected_result"}
    aggregators = {s.member for s in slashes}
    assert all(s.round_id == 1 for s in slashes) and aggregators


def test_refuses_what_it_cannot_record(tmp_path: Path) -> None:
    from flwr.serverapp.strategy import FedAdam, FedAvg

    from fedledger.flower import LedgerStrategy, LocalGrid

    client_app, _ = _apps()
    spec = {"model": f"{EXAMPLE / 'task.py'}:build", "input_shape": (64,), "num_classes": 10}
    with pytest.raises(ConfigError, match="FedAdam is not one of them"):
        LedgerStrategy(FedAdam(), tmp_path / "a", **spec)  # server optimizer state: not recomputable
    strategy = LedgerStrategy(FedAvg(), tmp_path / "b", **spec, seed=1)
    other = LedgerStrategy(FedAvg(), tmp_path / "c", **spec, seed=2).initial_arrays()
    with pytest.raises(ConfigError, match="initial_arrays are not the model"):
        strategy.start(LocalGrid(client_app, 2), other, num_rounds=1)
    assert not (tmp_path / "b" / "chain").exists()  # refused before any chain work


def test_fedmedian_rounds_are_recomputed_by_the_audit(tmp_path: Path) -> None:
    """FedMedian's coordinate-wise median is recorded under fedledger's `median` rule: validators and the audit
    recompute it from the signed updates."""
    from flwr.app import ConfigRecord
    from flwr.serverapp.strategy import FedMedian

    from fedledger.flower import LedgerStrategy, LocalGrid
    from fedledger.protocol.audit import audit_run

    client_app, _ = _apps()
    out = tmp_path / "median"
    strategy = LedgerStrategy(FedMedian(min_available_nodes=3, fraction_evaluate=0.0), out,
                              model=f"{EXAMPLE / 'task.py'}:build", input_shape=(64,), num_classes=10)
    strategy.start(LocalGrid(client_app, 3), strategy.initial_arrays(), num_rounds=2,
                   train_config=ConfigRecord({"lr": 0.1}))
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["strategy"] == "median" and [r["attempts"] for r in res["rounds"]] == [1, 1]
    # the audit checks each posted model against the median step over the signed updates (its `recomputed` list
    # counts only rounds linear in the updates; a tampered median is rejected: the test above, parametrized)
    assert audit_run(out).rounds == [1, 2]


def test_through_flowers_own_simulation_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same apps through Flower's own `run_simulation` (its LinkState, InMemoryGrid and Simulation Runtime
    workers), with only the Ray backend swapped for one that runs each ClientApp call in the worker's thread
    (Flower 1.42 offers no Ray-free backend; Ray is not installed here): the rounds finalize and audit."""
    import types

    from flwr.server.superlink.fleet.vce.backend import Backend
    from flwr.simulation import run_simulation

    from fedledger.protocol.audit import audit_run

    class InThreadBackend(Backend):
        def __init__(self, backend_config: object) -> None:
            self.app_fn = None

        def build(self, app_fn):  # type: ignore[no-untyped-def]
            self.app_fn = app_fn

        @property
        def num_workers(self) -> int:
            return 1

        def is_worker_idle(self) -> bool:
            return True

        def terminate(self) -> None:
            pass

        def process_message(self, message, context):  # type: ignore[no-untyped-def]
            return self.app_fn()(message, context), context

    shim = types.ModuleType("flwr.server.superlink.fleet.vce.backend.raybackend")
    shim.RayBackend = InThreadBackend  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, shim.__name__, shim)
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from client_app import app as client_app  # type: ignore[import-not-found]
    from flwr.app import ConfigRecord, Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg

    from fedledger.flower import LedgerStrategy

    out = tmp_path / "engine"
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = LedgerStrategy(FedAvg(min_available_nodes=3), out, model=f"{EXAMPLE / 'task.py'}:build",
                                  input_shape=(64,), num_classes=10)
        strategy.start(grid=grid, initial_arrays=strategy.initial_arrays(), num_rounds=2,
                       train_config=ConfigRecord({"lr": 0.1}))

    # any backend name but "ray" skips the check for the ray package; the runtime loads `RayBackend` (the shim)
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=3, backend_name="in-thread")
    res = json.loads((out / "results.json").read_text())
    assert [r["round"] for r in res["rounds"]] == [1, 2] and all(r["participants"] == 3 for r in res["rounds"])
    assert len(res["flower"]["nodes"]) == 3  # the Simulation Runtime's own (random) node ids
    assert audit_run(out).recomputed == [1, 2]
