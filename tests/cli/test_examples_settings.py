"""The article's settings (examples/*.toml), each run end to end through the command line as the README says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedledger.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def _run(name: str, out: Path) -> dict:
    assert main(["run", "--plain", "--config", str(EXAMPLES / f"{name}.toml"), "--quiet", "--out", str(out)]) == 0
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_healthcare_sites_with_record_level_dp(tmp_path: Path) -> None:
    res = _run("healthcare", tmp_path)
    assert res["config"]["dataset"] == "randhie" and res["config"]["partition"] == "natural"
    assert len(res["rounds"]) == 5 and all(r["participants"] == 6 for r in res["rounds"])  # the 6 sites
    assert res["privacy"]["unit"] == "record"
    eps = [r["epsilon_spent"] for r in res["rounds"]]
    assert eps == sorted(eps) and 0 < eps[-1] <= 3.0 + 1e-6


@pytest.mark.slow
def test_finance_states(tmp_path: Path) -> None:
    res = _run("finance", tmp_path)
    assert res["config"]["dataset"] == "lending_club" and res["config"]["partition"] == "natural"
    assert all(r["participants"] == 10 for r in res["rounds"])
    assert res["rounds"][-1]["loss"] < res["rounds"][0]["loss"]  # it learns (accuracy sits at the majority class)


@pytest.mark.slow
@pytest.mark.skipif(not FMNIST.exists(), reason="Debian's dataset-fashion-mnist is not installed (make setup)")
def test_device_fleet_of_a_thousand_with_member_level_dp(tmp_path: Path) -> None:
    res = _run("device_fleet", tmp_path)
    assert res["config"]["clients"] == 1000
    assert all(r["participants"] + r["dropped"] == 100 for r in res["rounds"])  # 10% sampled per round
    p = res["privacy"]
    assert p["unit"] == "member" and p["secure_aggregation"]["protocol"] == "SecAgg+"
    assert p["secure_aggregation"]["n"] == 100 and 0 < p["epsilon_spent"] <= 8.0 + 1e-6
    assert res["final_accuracy"] > 0.3  # 10 classes: chance is 0.1


@pytest.mark.slow
def test_transformer_through_the_own_model_path(tmp_path: Path) -> None:
    res = _run("transformer", tmp_path)
    assert res["config"]["model"] == f"{EXAMPLES / 'transformer' / 'model.py'}:build"  # relative to the config
    assert len(res["rounds"]) == 10 and res["final_accuracy"] > 0.5  # digits: chance is 0.1
