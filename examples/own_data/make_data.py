"""Write patients.csv beside this file: a small hospital table made from scikit-learn's bundled breast cancer
data (569 cases, no download), as a stand-in for your own CSV.

Columns: 30 numeric measurements (a few values blanked out, as real exports have), `referral` (text: a
categorical column), `hospital` (which of four hospitals holds the record: the natural partition, with a
different case mix at each), and `diagnosis` (the label: malignant or benign).

    python examples/own_data/make_data.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer

HERE = Path(__file__).resolve().parent


def make_table(seed: int = 0):
    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.drop(columns="target")
    rng = np.random.default_rng(seed)
    malignant = bunch.target.to_numpy() == 0
    # four hospitals with different case mixes: the referral centre sees most malignant cases
    p_malignant = np.array([0.55, 0.2, 0.15, 0.1])
    p_benign = np.array([0.1, 0.3, 0.3, 0.3])
    names = np.array(["st-mary", "north-general", "lakeside", "riverview"])
    frame["hospital"] = [names[rng.choice(4, p=p_malignant if m else p_benign)] for m in malignant]
    frame["referral"] = rng.choice(["gp", "screening", "specialist"], size=len(frame), p=[0.5, 0.3, 0.2])
    blank = rng.random(frame.shape[0]) < 0.03  # a few missing measurements
    frame.loc[blank, "mean texture"] = np.nan
    frame["diagnosis"] = np.where(malignant, "malignant", "benign")
    return frame


def main() -> Path:
    path = HERE / "patients.csv"
    make_table().to_csv(path, index=False)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
