"""The Python API: fedledger.Federation with a config, a data source and a model factory; run; read; export."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import fedledger
from fedledger.core.errors import ConfigError, DataError
from fedledger.sim.api import build


def tiny_net(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A module-level factory: the API records it as this file's path and name."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 8), nn.ReLU(), nn.Linear(8, num_classes))


def blobs(clients: int, seed: int) -> dict:
    """Two Gaussian blobs per member, as torch Datasets; a shared test set."""
    rng = np.random.default_rng(seed)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = rng.integers(0, 2, n)
        X = rng.normal(size=(n, 6)) + 2.0 * y[:, None]
        return torch.tensor(X, dtype=torch.float32), torch.tensor(y)

    return {"members": [TensorDataset(*make(50)) for _ in range(clients)], "test": make(80),
            "class_names": ["a", "b"]}


def test_federation_with_a_data_factory_and_a_model_factory(tmp_path: Path) -> None:
    fed = fedledger.Federation({"rounds": 3, "clients": 4, "lr": 0.5, "batch_size": 8}, data=blobs,
                               model=tiny_net)
    assert fed.config.model == f"{Path(__file__).resolve()}:tiny_net"
    assert fed.config.data.factory == f"{Path(__file__).resolve()}:blobs" and fed.config.dataset == "blobs"
    result = fed.run(tmp_path / "run")
    assert len(result.rounds) == 3 and result.final_accuracy > 0.9  # the blobs are separable
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["final_accuracy"] == result.final_accuracy
    fed.export(tmp_path / "model", format="onnx")
    model, prep = fedledger.load_model(tmp_path / "model")
    assert prep is None and model.class_names == ("a", "b")  # factory data come prepared
    test_X, test_y = blobs(4, fed.config.seed)["test"]
    with torch.no_grad():
        accuracy = int((model(test_X).argmax(1) == test_y).sum()) / len(test_y)
    assert accuracy == result.final_accuracy


def test_the_same_config_file_runs_from_python_and_resumes(tmp_path: Path) -> None:
    cfg = tmp_path / "fed.toml"
    cfg.write_text('dataset = "breast_cancer"\nclients = 3\nrounds = 2\nmodel = "logreg"\n')
    first = fedledger.Federation(cfg).run(tmp_path / "run")
    again = fedledger.Federation(cfg, rounds=3).run(tmp_path / "run")  # more rounds of a plain run: resumes
    assert again.resumed_from == 2 and [r.accuracy for r in again.rounds[:2]] == [r.accuracy for r in first.rounds]


def test_members_given_directly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    members = {f"site-{i}": (rng.normal(size=(30, 3)), rng.integers(0, 2, 30)) for i in range(3)}
    fed = fedledger.Federation({"rounds": 1, "model": "logreg"}, data=members)
    assert fed.config.clients == 3 and [m.name for m in fed.data.members] == list(members)
    assert len(fed.run(tmp_path / "run").rounds) == 1


def test_table_given_directly(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    import pandas as pd

    frame = pd.DataFrame({"a": rng.normal(size=90), "b": rng.choice(["x", "y"], 90), "site": rng.choice(["p", "q"], 90),
                          "label": rng.integers(0, 2, 90)})
    frame.to_csv(tmp_path / "t.csv", index=False)
    fed = fedledger.Federation({"clients": 2, "partition": "natural", "data": {"key": "site"}, "rounds": 1},
                               data=tmp_path / "t.csv", model="logreg")
    assert fed.config.dataset == "t" and [m.name for m in fed.data.members] == ["p", "q"]
    assert fed.data.input_shape == (3,)


def test_api_errors_are_fedledger_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="module-level function"):
        fedledger.Federation({}, model=lambda shape, classes: nn.Linear(1, 1))
    with pytest.raises(ConfigError, match="config must be"):
        build(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="call run"):
        fedledger.Federation({}).export(tmp_path / "m")

    def failing(clients: int, seed: int) -> list:
        raise RuntimeError("the hospital's database is down")

    fed = fedledger.Federation({"rounds": 1}, data=failing)
    with pytest.raises(DataError, match=r"data factory .*failing' failed: RuntimeError: the hospital's database"):
        fed.run(tmp_path / "run")
    assert isinstance(DataError("x"), fedledger.FedLedgerError)


def test_import_fedledger_stays_light() -> None:
    import subprocess
    import sys

    code = "import sys, fedledger; print('torch' in sys.modules, fedledger.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(Path(fedledger.__file__).parent.parent)})
    assert out.stdout.split() == ["False", fedledger.__version__]
