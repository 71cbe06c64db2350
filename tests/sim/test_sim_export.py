"""Models out: a finished run exported as safetensors and ONNX, reloaded, and predicting what the run measured."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import fedledger
from fedledger.cli.main import main
from fedledger.core.config import build_config
from fedledger.core.errors import ConfigError, DataError, IntegrityError
from fedledger.data import load_data, load_raw
from fedledger.learning import evaluate
from fedledger.learning.local import probabilities
from fedledger.models import build_model
from fedledger.models.export import MANIFEST, WEIGHTS

RUN = ["run", "--plain", "--dataset", "digits", "--model", "logreg", "--rounds", "2", "--clients", "5", "--quiet"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "run"
    assert main([*RUN, "--out", str(out)]) == 0
    return out


def _test_split(run: Path):
    cfg = build_config(json.loads((run / "results.json").read_text())["config"])
    return load_data(cfg).test


@pytest.mark.parametrize("fmt", ["safetensors", "onnx"])
def test_exported_model_predicts_what_the_run_measured(finished_run: Path, tmp_path: Path, fmt: str) -> None:
    dest = tmp_path / "model"
    assert main(["export", str(finished_run), "--format", fmt, "--out", str(dest)]) == 0
    model, prep = fedledger.load_model(dest)
    assert isinstance(model, torch.nn.Module) and not model.training and prep is not None
    assert model.class_names == tuple(str(d) for d in range(10))

    # the saved preprocessing turns the raw pixel counts of the test rows into exactly the run's test inputs
    test = _test_split(finished_run)
    raw = load_raw("digits").features[test.index]
    X = prep.transform(raw)
    assert np.array_equal(X, test.X)
    with torch.no_grad():
        logits = model(torch.from_numpy(X))
    accuracy = float((logits.argmax(1).numpy() == test.y).mean())
    results = json.loads((finished_run / "results.json").read_text())
    assert accuracy == results["final_accuracy"]
    # example by example, the same predictions as the run's own evaluation of its final model
    flat = torch.load(finished_run / "checkpoint.pt", weights_only=True)["global"]
    run_probabilities = probabilities(build_model("logreg", (64,), 10), flat, torch.from_numpy(test.X))
    assert torch.equal(run_probabilities.argmax(1), logits.argmax(1))
    assert evaluate(build_model("logreg", (64,), 10), flat, torch.from_numpy(test.X),
                    torch.from_numpy(test.y))[0] == accuracy
    manifest = json.loads((dest / MANIFEST).read_text())
    assert manifest["model_hash"] == results["final_model_hash"]
    assert manifest["architecture"] == {"model": "logreg", "input_shape": [64], "num_classes": 10, "seed": 0,
                                        "signature": "factory(input_shape, num_classes) -> torch.nn.Module"}
    if fmt == "onnx":
        import onnx
        from onnx.reference import ReferenceEvaluator

        graph = onnx.load(str(dest / "model.onnx"))
        onnx.checker.check_model(graph, full_check=True)
        meta = {p.key: json.loads(p.value) for p in graph.metadata_props}
        assert meta["fedledger.preprocessing"] == manifest["preprocessing"]
        (ref,) = ReferenceEvaluator(graph).run(None, {"input": X})
        assert float((ref.argmax(1) == test.y).mean()) == accuracy
        np.testing.assert_allclose(ref, logits.numpy(), rtol=1e-5, atol=1e-5)
    else:
        assert not (dest / "model.onnx").exists()


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime is a dev dependency")
def test_onnx_export_runs_in_onnxruntime(finished_run: Path, tmp_path: Path) -> None:
    import onnxruntime

    dest = tmp_path / "model"
    fedledger.export_run(finished_run, dest, "onnx")
    session = onnxruntime.InferenceSession(str(dest / "model.onnx"), providers=["CPUExecutionProvider"])
    test = _test_split(finished_run)
    (logits,) = session.run(None, {"input": test.X})
    results = json.loads((finished_run / "results.json").read_text())
    assert float((logits.argmax(1) == test.y).mean()) == results["final_accuracy"]


def test_changed_weights_are_refused_on_load(finished_run: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    dest = tmp_path / "model"
    fedledger.export_run(finished_run, dest)
    tensors = load_file(str(dest / WEIGHTS))
    tensors["1.bias"][0] += 1.0  # a backdoored bias
    save_file(tensors, str(dest / WEIGHTS))
    with pytest.raises(IntegrityError, match="does not match the manifest's model hash"):
        fedledger.load_model(dest)
    (dest / WEIGHTS).write_bytes(b"\x00" * 7)
    with pytest.raises(IntegrityError, match="cannot be read"):
        fedledger.load_model(dest)


def test_export_refuses_runs_without_a_final_model(finished_run: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no run at"):
        fedledger.export_run(tmp_path / "nothing", tmp_path / "m")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="has no final model"):
        fedledger.export_run(empty, tmp_path / "m")
    with pytest.raises(ConfigError, match="unknown export format 'pickle'"):
        fedledger.export_run(finished_run, tmp_path / "m", "pickle")
    # a run stopped early (fewer rounds than planned) is not final
    partial = tmp_path / "partial"
    assert main([*RUN[:-1], "--rounds", "1", "--out", str(partial)]) == 0
    record = json.loads((partial / "model.json").read_text())
    (partial / "model.json").write_text(json.dumps({**record, "rounds": 3}))
    with pytest.raises(DataError, match="stopped after round 1 of 3"):
        fedledger.export_run(partial, tmp_path / "m")
    # a truncated checkpoint is named, not a traceback
    blob = (finished_run / "checkpoint.pt").read_bytes()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text((finished_run / "model.json").read_text())
    (broken / "checkpoint.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(IntegrityError, match="cannot be read"):
        fedledger.export_run(broken, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_export_of_a_model_the_checkpoint_does_not_match(finished_run: Path, tmp_path: Path) -> None:
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / "model.json").write_text((finished_run / "model.json").read_text())
    state = torch.load(finished_run / "checkpoint.pt", weights_only=True)
    state["global"] = state["global"] + 0.5
    torch.save(state, forged / "checkpoint.pt")
    with pytest.raises(IntegrityError, match="hash mismatch"):
        fedledger.export_run(forged, tmp_path / "m")


def test_user_model_file_travels_with_the_export(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text(
        "import math\nfrom torch import nn\n"
        "def build(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 16), nn.Tanh(),\n"
        "                         nn.Linear(16, num_classes))\n"
    )
    out = tmp_path / "run"
    assert main(["run", "--plain", "--dataset", "breast_cancer", "--clients", "3", "--rounds", "1", "--quiet",
                 "--model", f"{tmp_path / 'net.py'}:build", "--out", str(out)]) == 0
    dest = tmp_path / "elsewhere" / "model"
    fedledger.export_run(out, dest, "onnx")
    (tmp_path / "net.py").unlink()  # the export carries its own copy of the factory
    model, prep = fedledger.load_model(dest)
    assert (dest / "net.py").is_file() and json.loads((dest / MANIFEST).read_text())["architecture"]["model"] == \
        "net.py:build"
    assert model[1].out_features == 16 and prep is not None and len(prep.numeric_names) == 30
