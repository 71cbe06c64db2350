"""The own-data example runs end to end, from the command line and from Python, as its README says."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fedledger
from fedledger.cli.main import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "own_data"


@pytest.mark.slow
def test_own_data_example_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = tmp_path / "own_data"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns("patients.csv", "__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(Path(fedledger.__file__).parents[1])}
    subprocess.run([sys.executable, str(example / "make_data.py")], check=True, env=env, capture_output=True)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--plain", "--config", str(example / "fedledger.toml"), "--quiet"]) == 0
    results = json.loads((tmp_path / "runs" / "own_data" / "results.json").read_text())
    assert [m for m in results["config"]["data"].values() if m == "hospital"] and results["final_accuracy"] > 0.9
    assert main(["export", "runs/own_data", "--format", "onnx"]) == 0
    model, prep = fedledger.load_model("runs/own_data/export")
    assert model.class_names == ("benign", "malignant") and prep is not None
    assert dict(prep.categorical) == {"referral": ("gp", "screening", "specialist")}

    api = subprocess.run([sys.executable, str(example / "api_example.py"), str(tmp_path / "api")], check=True,
                         env=env, capture_output=True, text=True)
    assert "final accuracy" in api.stdout and "predicted" in api.stdout
    assert (tmp_path / "api" / "model" / "model.onnx").is_file()
