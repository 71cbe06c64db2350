"""Models out of a run: `export_run(DIR, DEST, fmt)` and `load_model(DEST)`.

A run saves `DIR/model.json` when it starts (the architecture reference, the class names and the
preprocessing fitted on the members' training data) and `DIR/checkpoint.pt` after every round (the global
model). `export_run` checks that the run finished and that the checkpoint's model is the one its last round
recorded (by content hash), then writes an export directory (`fedledger.models.export`).
`load_model` returns the torch module and the preprocessing that turns raw examples into its inputs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fedledger import __version__
from fedledger.core.errors import ConfigError, DataError, IntegrityError
from fedledger.data.types import Standardization
from fedledger.models.export import FORMATS, content_hash, load_export, write_export

if TYPE_CHECKING:
    from fedledger.sim.federation import Simulation

MODEL_RECORD = "model.json"
CHECKPOINT = "checkpoint.pt"


def model_record(sim: Simulation) -> dict[str, Any]:
    """What rebuilds the run's model and prepares its inputs: saved with the run, carried by an export."""
    return record_of(sim.cfg, sim.data)


def record_of(cfg: Any, data: Any) -> dict[str, Any]:
    """`model_record` of a run with configuration `cfg` on `data` (a testnet has no Simulation)."""
    std = data.standardization
    return {
        "architecture": {"model": cfg.model, "input_shape": list(data.input_shape),
                         "num_classes": data.num_classes, "seed": cfg.seed,
                         "signature": "factory(input_shape, num_classes) -> torch.nn.Module"},
        "preprocessing": std.to_json() if std is not None else None,
        "class_names": list(data.class_names) or [str(c) for c in range(data.num_classes)],
        "dataset": cfg.dataset,
        "data_source": cfg.data.path or cfg.data.factory or cfg.dataset,
        "label": cfg.data.label if cfg.data.path else None,
        "rounds": cfg.rounds,
    }


def save_model_record(out: Path, sim: Simulation) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (MODEL_RECORD + ".tmp")
    tmp.write_text(json.dumps(model_record(sim), indent=2))
    os.replace(tmp, out / MODEL_RECORD)


def final_model(run_dir: Path | str) -> tuple[torch.Tensor, dict[str, Any], list[dict[str, Any]]]:
    """(the global model's parameters, the run's model record, its round records) of a finished run.

    DataError if there is no finished run at `run_dir`; IntegrityError if its files do not agree.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"no run at {run_dir}: not a directory")
    checkpoint, record_path = run_dir / CHECKPOINT, run_dir / MODEL_RECORD
    if not checkpoint.is_file():
        raise DataError(f"{run_dir} has no final model (no {CHECKPOINT}): run it to the end first")
    if not record_path.is_file():
        raise DataError(f"{run_dir} has no {MODEL_RECORD} (the run predates it): run it again to export it")
    try:
        record = json.loads(record_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IntegrityError(f"{record_path} is not valid JSON: {e}") from None
    try:
        state = torch.load(checkpoint, weights_only=True)
        flat, rounds = state["global"], list(state["rounds"])
    except Exception as e:  # a truncated or foreign file: torch raises many types
        raise IntegrityError(f"{checkpoint} cannot be read (truncated or not a fedledger checkpoint): "
                             f"{type(e).__name__}") from None
    if not isinstance(flat, torch.Tensor) or not rounds:
        raise DataError(f"{run_dir} has no trained model yet: run it first")
    planned = int(record.get("rounds", len(rounds)))
    if len(rounds) < planned:
        raise DataError(f"{run_dir} stopped after round {len(rounds)} of {planned}: run the same command again to "
                        "finish it, then export")
    if content_hash(flat) != rounds[-1].get("model_hash"):
        raise IntegrityError(f"{checkpoint} does not hold the model its last round recorded (hash mismatch)")
    return flat, record, rounds


def export_run(run_dir: Path | str, dest: Path | str, fmt: str = "safetensors") -> Path:
    """Export the final global model of the finished run at `run_dir` into `dest` (see fedledger.models.export).
    Returns the manifest's path."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    flat, record, rounds = final_model(run_dir)
    manifest = {
        "fedledger_version": __version__,
        "preprocessing": record.get("preprocessing"),
        "class_names": record.get("class_names"),
        "dataset": record.get("dataset"),
        "data_source": record.get("data_source"),
        "label": record.get("label"),
        "input": {"name": "input", "shape": ["batch", *record["architecture"]["input_shape"]], "dtype": "float32",
                  "preprocessed": record.get("preprocessing") is not None},
        "output": {"name": "logits", "shape": ["batch", record["architecture"]["num_classes"]]},
        "run": {"directory": str(Path(run_dir).resolve()), "rounds": len(rounds),
                "test_accuracy": rounds[-1].get("accuracy")},
    }
    return write_export(Path(dest), flat, record["architecture"], manifest, fmt)


def load_model(directory: Path | str) -> tuple[nn.Module, Standardization | None]:
    """A ready torch module (eval mode, exported weights) and the preprocessing its inputs need.

    `preprocessing.transform(raw_features)` (or `.transform_frame(table)` for tables with categorical
    columns) turns raw examples into the model's input; None when the data came already prepared from a data
    factory. `model(x).argmax(1)` is the predicted class index; the manifest's `class_names` name it.
    """
    model, manifest = load_export(directory)
    model.class_names = tuple(manifest.get("class_names") or ())  # type: ignore[assignment]
    prep = manifest.get("preprocessing")
    return model, Standardization.from_json(prep) if prep is not None else None
