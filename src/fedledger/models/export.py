"""A trained model on disk, outside fedledger's run directory: weights, architecture reference, manifest.

An export directory holds
- `model.safetensors`: the weights (state dict; no pickle, so loading it runs no code),
- `model.onnx` with `--format onnx`: the graph with the weights, input `input` [batch, *input_shape] float32,
  output `logits` [batch, num_classes]; the manifest rides along in its metadata,
- `fedledger_model.json`: the manifest: the architecture reference (the model spec and the arguments that
  rebuild it: `factory(input_shape, num_classes)` with the training seed), the fitted preprocessing, class
  names, the model's content hash (the one the ledger records), and where it came from,
- the model factory's source file when the model came from a user file (`path/to/model.py:factory`).

Rebuilding a user model runs its factory (Python code): load only exports you trust, as with any model code.
The weights are checked against the manifest's content hash after loading.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fedledger.core.blobstore import BlobStore
from fedledger.core.errors import ConfigError, DataError, IntegrityError
from fedledger.core.hashing import hex32
from fedledger.core.plugins import is_file_spec, split_spec
from fedledger.core.vectors import to_bytes
from fedledger.models.flat import get_flat, set_flat
from fedledger.models.zoo import build_model

MANIFEST = "fedledger_model.json"
WEIGHTS = "model.safetensors"
ONNX_FILE = "model.onnx"
FORMATS = ("safetensors", "onnx")
FORMAT_VERSION = "fedledger-model/1"


def content_hash(flat: torch.Tensor) -> str:
    """The model's content address (the hash the chain records for a finalized round)."""
    return hex32(BlobStore.address(to_bytes(flat)))


def rebuild(architecture: dict[str, Any], base: Path | None = None) -> nn.Module:
    """The untrained model the architecture reference names (`source` files are relative to `base`)."""
    try:
        spec = str(architecture["model"])
        shape = tuple(int(d) for d in architecture["input_shape"])
        classes = int(architecture["num_classes"])
        seed = int(architecture.get("seed", 0))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"architecture reference is malformed: {type(e).__name__}: {e}") from None
    if base is not None and is_file_spec(spec) and not Path(split_spec(spec, "model")[0]).is_absolute():
        module, attr = split_spec(spec, "model")
        spec = f"{base / module}:{attr}"
    return build_model(spec, shape, classes, seed=seed)


def _atomic_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_export(dest: Path, flat: torch.Tensor, architecture: dict[str, Any], manifest: dict[str, Any],
                 fmt: str = "safetensors") -> Path:
    """Write the model with parameters `flat` into `dest` as `fmt` (safetensors, or onnx, which also writes the
    safetensors weights so `load_export` can rebuild the torch module). Returns the manifest's path."""
    from safetensors.torch import save_model

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"export destination {dest} exists and is not a directory")
    architecture = dict(architecture)
    spec = str(architecture["model"])
    model = rebuild(architecture)
    set_flat(model, flat.detach().clone())
    with torch.no_grad():
        for p in model.parameters():  # set_flat leaves views into one vector; each tensor gets its own storage
            p.data = p.data.clone()
    model.eval()
    dest.mkdir(parents=True, exist_ok=True)
    if is_file_spec(spec):  # carry the user's factory file so the export rebuilds anywhere
        source = Path(split_spec(spec, "model")[0])
        shutil.copyfile(source, dest / source.name)
        architecture["model"] = f"{source.name}:{split_spec(spec, 'model')[1]}"
        architecture["source"] = source.name
    weights = dest / WEIGHTS
    save_model(model, str(weights), metadata={"format": FORMAT_VERSION})
    files = {WEIGHTS: _sha256(weights)}
    if fmt == "onnx":
        files[ONNX_FILE] = _write_onnx(dest / ONNX_FILE, model, tuple(architecture["input_shape"]), manifest)
    full = {"format": FORMAT_VERSION, **manifest, "architecture": architecture, "model_hash": content_hash(flat),
            "files": files, "exported_as": fmt}
    _atomic_json(dest / MANIFEST, full)
    return dest / MANIFEST


def _write_onnx(path: Path, model: nn.Module, input_shape: tuple[int, ...], manifest: dict[str, Any]) -> str:
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is a dependency
        raise ConfigError("ONNX export needs the onnx package (pip install onnx)") from None
    example = torch.zeros((2, *input_shape), dtype=torch.float32)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with warnings.catch_warnings():
            # the TorchScript-based exporter: no onnxscript needed; torch warns it is no longer the default
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(tmp), dynamo=False, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        graph = onnx.load(str(tmp))
        for key in ("preprocessing", "class_names"):
            entry = graph.metadata_props.add()
            entry.key, entry.value = f"fedledger.{key}", json.dumps(manifest.get(key))
        onnx.checker.check_model(graph, full_check=True)
        onnx.save(graph, str(tmp))
    except Exception as e:  # the exporter's many failure types for an unsupported model
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"the model cannot be exported to ONNX: {type(e).__name__}: {str(e).splitlines()[0]}") \
            from None
    os.replace(tmp, path)
    return _sha256(path)


def read_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not Path(directory).is_dir():
        raise DataError(f"no exported model at {directory}: not a directory")
    if not path.is_file():
        raise DataError(f"{directory} is not a fedledger export (no {MANIFEST}); make one with fedledger export")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IntegrityError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        raise DataError(f"{path} is not a {FORMAT_VERSION} manifest")
    return manifest


def load_export(directory: Path | str) -> tuple[nn.Module, dict[str, Any]]:
    """(the model in eval mode with the exported weights, the manifest); the weights are checked against the
    manifest's content hash."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    directory = Path(directory)
    manifest = read_manifest(directory)
    model = rebuild(manifest.get("architecture", {}), base=directory)
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise DataError(f"{directory} has no {WEIGHTS}")
    try:
        missing, unexpected = load_model(model, str(weights), strict=False)
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise IntegrityError(f"{weights} cannot be read: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    if missing or unexpected:
        raise IntegrityError(f"{weights} does not fit the architecture: missing {sorted(missing)}, "
                             f"unexpected {sorted(unexpected)}")
    if content_hash(get_flat(model)) != manifest.get("model_hash"):
        raise IntegrityError(f"{weights} does not match the manifest's model hash (changed after export?)")
    model.eval()
    return model, manifest
