"""`fedledger watch DIR`: follows a real run's results.json as its rounds finish."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedledger.cli.main import main as fedledger_main
from fedledger.cli.watch_cmd import dashboard, status

ROOT = Path(__file__).resolve().parents[2]
RUN = ["run", "--plain", "--dataset", "digits", "--clients", "3", "--model", "logreg", "--max-samples", "300",
       "--quiet"]


def test_once_shows_the_finished_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert fedledger_main([*RUN, "--rounds", "2", "--baseline", "--out", str(out)]) == 0
    capsys.readouterr()
    res = json.loads((out / "results.json").read_text())
    assert fedledger_main(["watch", str(out), "--once"]) == 0
    shown = capsys.readouterr().out
    assert "status complete" in shown and "rounds 2 / 2" in shown
    assert f"accuracy {res['final_accuracy']:.4f}" in shown
    assert f"centralized {res['centralized_accuracy']:.4f}" in shown
    for r in res["rounds"]:
        assert f"{r['accuracy']:.4f}" in shown and f"{r['loss']:.4f}" in shown
    assert "no ledger" in shown and "no DP" in shown


@pytest.mark.slow
def test_follows_a_run_started_after_it(tmp_path: Path) -> None:
    """The watcher starts on an empty directory, prints each round once as the run writes it, and exits when the
    run has done its planned rounds."""
    out = tmp_path / "live"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    watcher = subprocess.Popen([sys.executable, "-m", "fedledger.cli.main", "watch", str(out), "--interval", "0.1",
                                "--timeout", "600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(1.0)
        assert watcher.poll() is None  # waiting for the run, not failing on the missing directory
        assert fedledger_main([*RUN, "--rounds", "3", "--out", str(out)]) == 0
        stdout, stderr = watcher.communicate(timeout=120)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, stderr
    res = json.loads((out / "results.json").read_text())
    lines = stdout.splitlines()
    rounds = [line for line in lines if line.startswith("round ")]
    assert [line.split()[1] for line in rounds] == ["1/3", "2/3", "3/3"]
    for line, r in zip(rounds, res["rounds"], strict=True):
        assert f"accuracy {r['accuracy']:.4f}" in line and f"{r['participants']} took part" in line
    assert lines[-1] == f"complete: 3 rounds, final accuracy {res['rounds'][-1]['accuracy']:.4f}"


def test_estimate_and_dashboard_of_a_run_in_progress() -> None:
    res = {"config": {"rounds": 5, "model": "mlp", "dataset": "digits", "clients": 10, "strategy": "fedavg"},
           "privacy": {"epsilon_budget": 8.0},
           "ledger": {"finalized_rounds": 2, "slashed": [{"round": 2}]},
           "rounds": [{"round": 1, "accuracy": 0.5, "loss": 1.2, "seconds": 10.0, "epsilon_spent": 1.5,
                       "participants": 10, "dropped": 0, "finalized": True, "attempts": 1,
                       "stages": {"training": 2.0, "proofs": 7.0}},
                      {"round": 2, "accuracy": 0.75, "loss": 0.9, "seconds": 20.0, "epsilon_spent": 2.5,
                       "participants": 9, "dropped": 1, "finalized": True, "attempts": 2, "stages": {}}]}
    s = status(res)
    assert (s["done"], s["planned"], s["complete"]) == (2, 5, False)
    assert s["left"] == pytest.approx(45.0)  # 3 rounds left at the mean 15 s
    assert s["accuracy"] == 0.75 and s["best"] == 0.75 and s["epsilon"] == 2.5 and s["slashed"] == 1
    from rich.console import Console

    console = Console(record=True, width=140)
    console.print(dashboard(res, Path("runs/x")))
    text = console.export_text()
    assert "status running" in text and "rounds 2 / 5" in text and "left ~45 s" in text
    assert "epsilon 2.500 of 8.000" in text and "2 finalized on chain, 1 slashed" in text
    assert "finalized, 2 att." in text and "proofs 7.0 s" in text


def test_bad_directories_end_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fedledger_main(["watch", str(tmp_path / "missing"), "--once"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has the run started?" in err[0]
    file = tmp_path / "file"
    file.write_text("x")
    assert fedledger_main(["watch", str(file)]) == 3
    assert "is not a directory" in capsys.readouterr().err
    assert fedledger_main(["watch", str(tmp_path), "--timeout", "0.3", "--interval", "0.1"]) == 3
    assert "did not finish its planned rounds within 0.3 s" in capsys.readouterr().err
