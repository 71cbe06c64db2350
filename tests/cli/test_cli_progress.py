"""Progress as a user sees it (issue 16, item 1): one flushed line per round when stdout is not a terminal,
a bar with the running stage on one, "resumed after round N" before any work, and results.json rewritten
atomically after every round."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedledger.cli.progress import RunProgress, round_line
from fedledger.core.config import FederationConfig
from fedledger.sim import Simulation
from fedledger.sim.federation import RoundRecord

ARGV = ["run", "--plain", "--dataset", "digits", "--model", "logreg", "--clients", "3"]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("FEDLEDGER_KILL_AT", None)
    return env


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fedledger.cli", *args], capture_output=True, text=True,
                          env=env or _env(), check=False, timeout=600)


def test_one_line_per_round_when_stdout_is_a_pipe_and_resume_is_said_first(tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    first = _cli(*ARGV, "--rounds", "2", "--out", out)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == f"run: 2 rounds of digits / logreg / fedavg, 3 members, no chain, dp none, proofs none -> {out}"
    assert lines[1].startswith("round 1/2 ") and lines[2].startswith("round 2/2 ")
    for line in lines[1:3]:
        assert " acc 0." in line and " loss " in line
        if float(line.split()[2]) >= 0.1:  # stages under 0.05 s are not listed; a round this fast may have none
            assert "[training " in line
    again = _cli(*ARGV, "--rounds", "3", "--out", out)
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert lines[1] == "resumed after round 2" and lines[2].startswith("round 3/3 ")  # before any round's work
    assert "resumed" not in "".join(lines[3:])


class _Recorder(io.StringIO):
    """A stream that records what had been written at each flush."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []

    def flush(self) -> None:
        self.flushed.append(self.getvalue())

    def isatty(self) -> bool:
        return False


def _record(rnd: int, **kw: object) -> RoundRecord:
    base = dict(round=rnd, accuracy=0.9, loss=0.3, participants=3, dropped=0, bytes_up=1, bytes_down=1,
                seconds=12.5, train_loss=0.3, model_hash="0x00", stages={"proofs": 9.0, "training": 1.5})
    return RoundRecord(**{**base, **kw})  # type: ignore[arg-type]


def test_each_round_line_is_flushed_as_the_round_ends() -> None:
    stream = _Recorder()
    progress = RunProgress(2, stream=stream)
    progress.stage("training")  # no bar off a terminal
    assert stream.getvalue() == ""
    progress.round_done(_record(1, epsilon_spent=1.25, finalized=True, attempts=1, chain_txs=7,
                                proofs={"made": 3, "verified": 3}))
    assert stream.flushed and stream.flushed[-1].count("\n") == 1
    line = stream.flushed[-1].strip()
    assert line == ("round 1/2  12.5 s  acc 0.9000  loss 0.3000  eps 1.25  chain finalized (attempt 1, 7 txs)  "
                    "proofs 3/3 verified  [training 1.5 s, proofs 9.0 s]")
    progress.close()


def test_quiet_prints_nothing() -> None:
    stream = _Recorder()
    progress = RunProgress(2, stream=stream, quiet=True)
    progress.resumed(1)
    progress.round_done(_record(2))
    progress.close()
    assert stream.getvalue() == ""


def test_on_a_terminal_the_bar_names_the_running_stage() -> None:
    stream = io.StringIO()
    progress = RunProgress(3, stream=stream, terminal=True)
    progress.round_done(_record(1))
    progress.stage("proofs")
    assert "rounds 1/3 |" in stream.getvalue() and stream.getvalue().rstrip().endswith("| round 2: proofs")
    assert round_line(_record(1), 3) in stream.getvalue()  # finished rounds stay above the bar
    progress.close()


def test_results_json_is_rewritten_after_every_round_with_the_final_schema(tmp_path: Path) -> None:
    cfg = FederationConfig(dataset="digits", model="logreg", clients=3, rounds=2, max_samples=400)
    seen: list[dict[str, object]] = []

    def after(record: RoundRecord) -> None:  # called once the round's files are in place
        assert not (tmp_path / "results.json.tmp").exists()
        seen.append(json.loads((tmp_path / "results.json").read_text()))

    result = Simulation(cfg).run(tmp_path, on_round=after)
    final = result.to_json()
    assert [len(s["rounds"]) for s in seen] == [1, 2]  # type: ignore[arg-type]
    assert all(set(s) == set(final) for s in seen)
    assert seen[0]["final_accuracy"] == seen[0]["rounds"][0]["accuracy"]  # type: ignore[index]
    assert seen[1]["rounds"] == json.loads(json.dumps(final["rounds"]))
    assert seen[1]["final_model_hash"] == final["final_model_hash"]


@pytest.mark.slow
def test_a_run_killed_in_round_2_leaves_round_1_in_results_json(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**_env(), "FEDLEDGER_KILL_AT": "2:open"}  # SIGKILL as round 2 opens on the chain
    done = _cli(*ARGV, "--rounds", "2", "--chain", "memory", "--out", str(out), env=env)
    assert done.returncode == -9
    assert done.stdout.splitlines()[1].startswith("round 1/2 ")
    saved = json.loads((out / "results.json").read_text())
    assert [r["round"] for r in saved["rounds"]] == [1]
    assert saved["config"]["rounds"] == 2 and saved["rounds"][0]["finalized"] is True
    assert saved["ledger"]["finalized_rounds"] == 1  # the chain's view so far, in the final schema
