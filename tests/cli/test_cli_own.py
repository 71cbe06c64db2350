"""Own data, own model, models out, through the command line: `fedledger new`, `run --config`, `export`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import fedledger
from fedledger.cli.main import main

QUIET = ["--quiet"]


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], expected: str, code: int) -> None:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fedledger: error: ") and expected in err, err


@pytest.mark.slow
def test_new_project_runs_exports_and_loads_as_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["new", "clinic"]) == 0
    assert sorted(p.name for p in (tmp_path / "clinic").iterdir()) == ["README.md", "data.py", "fedledger.toml",
                                                                        "model.py"]
    assert "fedledger run --config clinic/fedledger.toml" in capsys.readouterr().out
    # the project runs from another working directory too: its paths are relative to its config file
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["run", "--config", "../clinic/fedledger.toml", *QUIET]) == 0
    results = json.loads((elsewhere / "runs" / "clinic" / "results.json").read_text())
    assert len(results["rounds"]) == 5 and results["final_accuracy"] > 0.9  # breast cancer, 3 sites
    assert results["config"]["ledger"]["enabled"] is False and results["config"]["privacy"]["dp"] == "none"
    assert main(["export", "runs/clinic", "--format", "onnx"]) == 0
    model, prep = fedledger.load_model("runs/clinic/export")
    assert prep is None and model.class_names == ("malignant", "benign")
    # the project's README commands are the ones that just ran
    readme = (tmp_path / "clinic" / "README.md").read_text()
    assert "fedledger run --config clinic/fedledger.toml" in readme and "fedledger export runs/clinic" in readme


def test_new_refuses_an_existing_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    _one_line_error(capsys, ["new", "taken"], "already exists and is not an empty directory", 2)
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    _one_line_error(capsys, ["new", "-bad name"], "project name", 2)


def test_model_from_a_file_without_pythonpath(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "wide.py").write_text(
        "from torch import nn\n"
        "def build(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], 48), nn.ReLU(), nn.Linear(48, num_classes))\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--plain", "--dataset", "digits", "--clients", "3", "--rounds", "1", "--model",
                 "models/wide.py:build", "--out", "run", *QUIET]) == 0
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["global"].numel() == 64 * 48 + 48 + 48 * 10 + 10


def test_help_shows_the_factory_signature(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "path/to/file.py:factory" in text and "factory(input_shape: tuple[int, ...], num_classes: int) ->" in text
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "safetensors|onnx" in capsys.readouterr().out


def test_own_csv_through_a_config_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 300
    site = rng.choice(["A", "B", "C"], n)
    x = rng.normal(size=(n, 2))
    frame = pd.DataFrame({"site": site, "x1": x[:, 0], "x2": x[:, 1], "kind": rng.choice(["u", "v"], n),
                          "y": np.where(x[:, 0] + x[:, 1] > 0, "pos", "neg")})
    (tmp_path / "proj").mkdir()
    frame.to_csv(tmp_path / "proj" / "sites.csv", index=False)
    (tmp_path / "proj" / "fed.toml").write_text(
        'partition = "natural"\nclients = 3\nrounds = 3\nmodel = "logreg"\nlr = 0.5\nbatch_size = 8\n'
        f'out = "{tmp_path / "run"}"\n[data]\npath = "sites.csv"\nlabel = "y"\nkey = "site"\n'
    )
    assert main(["run", "--plain", "--config", str(tmp_path / "proj" / "fed.toml"), *QUIET]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["config"]["dataset"] == "sites" and results["final_accuracy"] > 0.85
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "model")]) == 0
    model, prep = fedledger.load_model(tmp_path / "model")
    X = torch.from_numpy(prep.transform_frame(frame))  # raw table in, predictions out
    predicted = np.array(model.class_names)[model(X).argmax(1).numpy()]
    assert (predicted == frame["y"].to_numpy()).mean() > 0.85


@pytest.mark.parametrize(
    ("toml", "expected", "code"),
    [
        ('[data]\npath = "nowhere.csv"\n', "data file not found", 3),
        ('[data]\npath = "t.csv"\nlabel = "outcome"\n', "has no label column 'outcome'; its columns: a, y", 3),
        ('[data]\nfactory = "loader.py:broken"\n', "data factory", 3),
        ('model = "net.py:broken"\n', "model factory", 2),
        ('model = "net.py:missing"\n', "has no 'missing'", 2),
        ('model = "nothere.py:build"\n', "model factory file not found", 2),
        ('[data]\nfactory = "loader.py:broken"\npath = "t.csv"\n', "either path", 2),
    ],
)
def test_bad_own_inputs_are_one_line(tmp_path: Path, capsys, toml: str, expected: str, code: int) -> None:
    pd.DataFrame({"a": np.arange(10.0), "y": [0, 1] * 5}).to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "loader.py").write_text("def broken(clients, seed):\n    raise KeyError('site_id')\n")
    (tmp_path / "net.py").write_text("def broken(input_shape, num_classes):\n    return 1 / 0\n")
    (tmp_path / "fed.toml").write_text(f'clients = 2\nrounds = 1\nout = "{tmp_path / "run"}"\n{toml}')
    _one_line_error(capsys, ["run", "--plain", "--config", str(tmp_path / "fed.toml"), *QUIET], expected, code)


def test_bad_exports_are_one_line(tmp_path: Path, capsys) -> None:
    _one_line_error(capsys, ["export", str(tmp_path / "none")], "no run at", 3)
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, ["export", str(tmp_path / "empty")], "has no final model", 3)
    _one_line_error(capsys, ["export", str(tmp_path / "empty"), "--format", "pickle"],
                    "unknown export format 'pickle'; choose one of: safetensors, onnx", 2)
