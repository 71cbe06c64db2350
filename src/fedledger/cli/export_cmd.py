"""`fedledger export DIR --format safetensors|onnx`: the final global model of a run, ready to load elsewhere.

    fedledger export runs/digits                            # runs/digits/export/model.safetensors + manifest
    fedledger export runs/digits --format onnx --out model/ # also model/model.onnx

The export holds the weights, the architecture reference that rebuilds the model (its factory spec, input
shape, number of classes; a user's factory file is copied along), the preprocessing fitted on the members'
training data, and the class names. In Python: `model, preprocessing = fedledger.load_model(DEST)`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a run's final model (safetensors or ONNX) with its architecture and preprocessing",
        description="Export the final global model of the finished run in DIR: model.safetensors (and model.onnx "
                    "with --format onnx) and fedledger_model.json (architecture reference, fitted preprocessing, "
                    "class names, content hash). Load it with fedledger.load_model(DEST).",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="the run's output directory (holds checkpoint.pt)")
    p.add_argument("--format", default="safetensors", metavar="safetensors|onnx", dest="fmt",
                   help="safetensors: weights only (default); onnx: also the graph, for onnxruntime and others")
    p.add_argument("--out", type=Path, metavar="DEST", help="where to write the export (default DIR/export)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from fedledger.sim.export import export_run

    dest = args.out if args.out is not None else args.dir / "export"
    manifest = export_run(args.dir, dest, args.fmt)
    files = sorted(p.name for p in manifest.parent.iterdir() if p.is_file())
    print(f"exported {args.dir} to {manifest.parent}: {', '.join(files)}")
    return 0
