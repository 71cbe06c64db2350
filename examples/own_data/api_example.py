"""fedledger from Python: your own table, your own model, a run, an export, and predictions on raw rows.

    python examples/own_data/api_example.py [OUT_DIR]

The same task as fedledger.toml beside this file, built in Python instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import torch

import fedledger

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_data import main as make_data  # noqa: E402
from model import build  # noqa: E402


def main(out: Path) -> float:
    table = HERE / "patients.csv"
    if not table.exists():
        make_data()

    # 1. build: a config (here a dict; a TOML path works too), the data source, the model factory
    fed = fedledger.Federation(
        {"partition": "natural", "clients": 4, "rounds": 10, "lr": 0.1, "batch_size": 16, "seed": 0,
         "data": {"label": "diagnosis", "key": "hospital"}},
        data=table,          # or a factory(clients, seed) returning one (X, y) / torch Dataset per member
        model=build,         # factory(input_shape, num_classes) -> torch.nn.Module
    )
    print(fed.data)          # the members (one per hospital), their train/held-out splits, the test set

    # 2. run, and read the results
    result = fed.run(out / "run", on_round=lambda r: print(f"round {r.round}: accuracy {r.accuracy:.3f}"))
    print(f"final accuracy {result.final_accuracy:.4f}, model {result.final_model_hash[:16]}...")

    # 3. models out: safetensors + ONNX, the architecture reference and the fitted preprocessing
    fed.export(out / "model", format="onnx")
    model, preprocessing = fedledger.load_model(out / "model")

    # 4. predict on raw rows, as they come from the hospital's system
    rows = pd.read_csv(table).head(5)
    with torch.no_grad():
        logits = model(torch.from_numpy(preprocessing.transform_frame(rows)))
    for truth, guess in zip(rows["diagnosis"], logits.argmax(1).tolist(), strict=True):
        print(f"  {truth:>9} -> predicted {model.class_names[guess]}")
    return result.final_accuracy


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/own_data_api"))
