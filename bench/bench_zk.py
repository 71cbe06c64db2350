"""Benchmark of the zero-knowledge layer: update proofs, verification, a validator's round check, gas.

    python -m bench.bench_zk [--quick]      # prints JSON

Figures are wall-clock seconds on this machine (2 cores, shared), with published anchors beside
them: RoFL (Lycklama et al., IEEE S&P 2023, Bulletproofs, L2 range proofs) proves a 1,024-entry
update in 0.70 s and verifies in 0.24 s; 16,384 entries in 11.3 s / 4.1 s. Keys come from the
cache (a first run performs the development setup and reports its time separately).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.zk.backend import DevelopmentSetupWarning, Groth16Backend, proof_words
from fedledger.zk.binding import check_aggregate, project
from fedledger.zk.field import P
from fedledger.zk.update import (
    ProofContext,
    UpdateProver,
    UpdateSpec,
    chunk_public_inputs,
    commit_update,
    verify_update,
)

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = {
    "rofl_prove_1024_s": 0.70,
    "rofl_verify_1024_s": 0.24,
    "rofl_prove_16384_s": 11.3,
    "rofl_verify_16384_s": 4.1,
    "seed_doc_prove_s": 0.89,
    "seed_doc_verify_ms": 64.0,
    "seed_doc_proof_bytes": 256,
}
TARGETS = {
    "prove_1024_s": 0.7,
    "prove_16384_s": 11.0,
    "prove_100000_s": 90.0,
    "verify_ms_per_proof": 5.0,
    "proof_bytes_per_chunk": 256,
}
R = 0x2B3C4D5E6F708192A3B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5D6E7F8091


def _vectors(d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(-2000, 2000, d), rng.integers(-200, 200, d)


def _prove_case(spec: UpdateSpec, dim: int, prover: UpdateProver, rng: np.random.Generator) -> dict[str, Any]:
    x, e = _vectors(dim, rng)
    t0 = time.perf_counter()
    secret, posted = commit_update(spec, ProofContext("bench", 1, "m0"), x, e, rng)
    commit_s = time.perf_counter() - t0
    proof = prover.prove_update(secret, posted, R)
    total = commit_s + proof.prove_seconds
    t0 = time.perf_counter()
    verify_update(prover.keys, spec, posted, proof, R)
    verify_s = time.perf_counter() - t0
    return {
        "dim": dim,
        "chunks": len(proof.chunks),
        "chunk_size": spec.chunk_size,
        "commit_s": round(commit_s, 3),
        "prove_s": round(total, 3),
        "verify_s": round(verify_s, 4),
        "verify_ms_per_proof": round(1000 * verify_s / len(proof.chunks), 3),
        "proof_bytes": proof.size_bytes,
        "_posted": posted,
        "_proof": proof,
    }


def _round_check(spec: UpdateSpec, keys: Any, posted: Any, proof: Any, dim: int, trainers: int) -> dict[str, Any]:
    """A validator's whole-round work: verify every trainer's chunk proofs and the linear check.

    Proving 1,000 updates is out of reach here, so every trainer's bundle is the same proof;
    Groth16 verification cost does not depend on the statement, so the time is the real one.
    """
    rng = np.random.default_rng(1)
    aggregate = rng.integers(-(2**20), 2**20, dim)
    t0 = time.perf_counter()
    for _ in range(trainers):
        verify_update(keys, spec, posted, proof, R)
    verify_s = time.perf_counter() - t0
    s_values = {f"m{i}": 0 for i in range(trainers - 1)}
    blinding = 0
    t1 = time.perf_counter()
    expected = project(R, aggregate)
    s_values[f"m{trainers - 1}"] = expected  # chosen so the check passes: the work is the same
    check_aggregate(R, s_values, aggregate, blinding)
    check_s = time.perf_counter() - t1
    return {
        "trainers": trainers,
        "dim": dim,
        "proofs_verified": trainers * len(proof.chunks),
        "verify_all_s": round(verify_s, 3),
        "linear_check_s": round(check_s, 3),
        "total_s": round(verify_s + check_s, 3),
    }


def _gas(keys: Any, spec: UpdateSpec, posted: Any, proof: Any) -> dict[str, Any]:
    anvil = ROOT / "node_modules" / ".bin" / "anvil"
    if not anvil.exists():
        return {"skipped": "anvil not installed"}
    import vyper
    from web3 import Web3

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(anvil), "--port", str(port), "--silent", "--code-size-limit", "100000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}"))
        for _ in range(300):
            try:
                if w3.is_connected():
                    break
            except Exception:
                pass
            time.sleep(0.1)
        w3.eth.default_account = w3.eth.accounts[0]
        out = vyper.compile_code(Groth16Backend.export_vyper(keys), output_formats=["abi", "bytecode"])
        tx = w3.eth.contract(abi=out["abi"], bytecode=out["bytecode"]).constructor().transact()
        rcpt = w3.eth.wait_for_transaction_receipt(tx, timeout=30)
        c = w3.eth.contract(address=rcpt["contractAddress"], abi=out["abi"])
        pub = chunk_public_inputs(spec, posted, 0, posted.state0, proof.chunks[0].state_out, R, proof.s)
        a, b, cc = proof_words(proof.chunks[0].proof)
        ok = c.functions.verifyProof(a, b, cc, pub).call()
        gas = c.functions.verifyProof(a, b, cc, pub).estimate_gas()
        return {"deploy_gas": rcpt["gasUsed"], "verify_gas": gas, "accepted": bool(ok), "public_inputs": len(pub)}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _breast_cancer(backend: Groth16Backend, members: int, prove_members: int) -> dict[str, Any]:
    """Proof of training and data quality on breast_cancer split over `members` members.

    Logistic regression, full-batch GD, 5 local epochs, lr 0.5, 10 FedAvg rounds; fixed point
    (8 fractional bits, hard sigmoid) against float GD with the exact sigmoid, same schedule.
    Proofs are made for round 1 of `prove_members` members (the circuit cost is the same every
    round); data-quality proofs for the same members.
    """
    from sklearn.datasets import load_breast_cancer

    from fedledger.zk.data_quality import (
        DataPolicy,
        DataSpec,
        dataset_root,
        fixed_point,
        prove_data_quality,
        verify_data_quality,
    )
    from fedledger.zk.training import TrainSpec, prove_training, train_fixed_point, train_float, verify_training

    ds = load_breast_cancer()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(ds.target))
    x, y = ds.data[order], ds.target[order].astype(np.int64)
    n_test = len(y) // 5
    mu, sd = x[n_test:].mean(0), x[n_test:].std(0)
    xs = np.clip((x - mu) / sd, -8, 8)
    xt, yt, xtr, ytr = xs[:n_test], y[:n_test], xs[n_test:], y[n_test:]
    parts = np.array_split(np.arange(len(ytr)), members)
    frac, epochs, lr, rounds = 8, 5, 0.5, 10
    lr_fp = int(lr * (1 << frac))
    cap = 1 << int(np.ceil(np.log2(max(len(p) for p in parts))))
    feats = 30
    uspec = UpdateSpec(chunk_size=32, entry_bits=16, noise_bits=12)
    tspec = TrainSpec(capacity=cap, features=feats, epochs=epochs, update=uspec, feature_bits=16, frac_bits=frac)
    lo = -(8 << frac)
    policy = DataPolicy(
        lo=(lo,) * feats,
        hi=(lo + 2**16 - 1,) * feats,
        allowed=(1, 1),
        min_rows=20,
        min_count=(1, 1),
        max_count=(cap, cap),
    )

    def accuracy(w: np.ndarray) -> float:
        return float((((xt @ w[:-1] + w[-1]) > 0).astype(np.int64) == yt).mean())

    w_fp = np.zeros(feats + 1, dtype=np.int64)
    w_fl = np.zeros(feats + 1)
    for _ in range(rounds):
        ups_fp, ups_fl, sizes = [], [], []
        for p in parts:
            xf = fixed_point(xtr[p], frac)
            ups_fp.append(train_fixed_point(tspec, w_fp, xf, ytr[p], lr_fp) - w_fp)
            ups_fl.append(train_float(w_fl, xtr[p], ytr[p], lr, epochs) - w_fl)
            sizes.append(len(p))
        wts = np.array(sizes) / sum(sizes)
        w_fp = w_fp + np.rint(np.tensordot(wts, np.array(ups_fp), 1)).astype(np.int64)
        w_fl = w_fl + np.tensordot(wts, np.array(ups_fl), 1)
    out: dict[str, Any] = {
        "members": members,
        "rows_per_member": [len(p) for p in parts],
        "epochs": epochs,
        "lr": lr,
        "rounds": rounds,
        "frac_bits": frac,
        "accuracy_fixed_point_hard_sigmoid": round(accuracy(w_fp / (1 << frac)), 4),
        "accuracy_float_exact_sigmoid": round(accuracy(w_fl), 4),
    }
    out["accuracy_cost"] = round(out["accuracy_float_exact_sigmoid"] - out["accuracy_fixed_point_hard_sigmoid"], 4)

    t0 = time.perf_counter()
    tkeys = backend.keys(tspec.circuit)
    dspec = DataSpec(cap, feats, 2, 16)
    dkeys = backend.keys(dspec.circuit)
    _ = tkeys.pk, dkeys.pk
    out["setup_or_key_load_s"] = round(time.perf_counter() - t0, 1)
    w0 = np.zeros(feats + 1, dtype=np.int64)
    prove_s, verify_s, dq_s, dq_rows = [], [], [], 0
    for m in range(prove_members):
        p = parts[m]
        xf = fixed_point(xtr[p], frac)
        upd = train_fixed_point(tspec, w0, xf, ytr[p], lr_fp) - w0
        secret, posted = commit_update(
            uspec, ProofContext("breast_cancer", 1, f"m{m}"), upd, np.zeros(feats + 1, dtype=np.int64), rng
        )
        proof = prove_training(backend, tkeys, tspec, policy, w0, xf, ytr[p], lr_fp, secret, posted)
        root = dataset_root(dspec, policy, xf, ytr[p])  # the validator knows it from the join
        t1 = time.perf_counter()
        verify_training(tkeys, tspec, root, policy.lo, len(p), lr_fp, w0, posted, proof)
        verify_s.append(time.perf_counter() - t1)
        prove_s.append(proof.prove_seconds)
        dq = prove_data_quality(backend, dkeys, dspec, policy, xf, ytr[p])
        verify_data_quality(dkeys, dspec, policy, dq)
        dq_s.append(dq.prove_seconds)
        dq_rows += cap
    out.update(
        {
            "training_proofs_made": prove_members,
            "training_prove_s_mean": round(float(np.mean(prove_s)), 2),
            "training_verify_ms_mean": round(1000 * float(np.mean(verify_s)), 2),
            "training_prove_s_all_members_sequential_estimate": round(float(np.mean(prove_s)) * members, 1),
            "data_quality_prove_s_mean": round(float(np.mean(dq_s)), 2),
            "data_quality_circuit_rows": cap,
            "data_quality_prove_s_per_1000_rows": round(sum(dq_s) / dq_rows * 1000, 2),
            "load_average": [round(v, 2) for v in os.getloadavg()],
        }
    )
    return out


def _wine_softmax(backend: Groth16Backend, members: int, prove_members: int) -> dict[str, Any]:
    """Softmax regression on wine (178 rows, 13 features, 3 classes) over `members` members."""
    from sklearn.datasets import load_wine

    from fedledger.zk.data_quality import DataPolicy, dataset_root, fixed_point
    from fedledger.zk.training import TrainSpec, prove_training, train, train_float_softmax, verify_training

    ds = load_wine()
    rng = np.random.default_rng(1)
    order = rng.permutation(len(ds.target))
    x, y = ds.data[order], ds.target[order].astype(np.int64)
    n_test = len(y) // 5
    mu, sd = x[n_test:].mean(0), x[n_test:].std(0)
    xs = np.clip((x - mu) / sd, -8, 8)
    xt, yt, xtr, ytr = xs[:n_test], y[:n_test], xs[n_test:], y[n_test:]
    parts = np.array_split(np.arange(len(ytr)), members)
    frac, epochs, lr, rounds, feats, classes = 8, 5, 0.5, 10, 13, 3
    lr_fp = int(lr * (1 << frac))
    cap = 1 << int(np.ceil(np.log2(max(len(p) for p in parts))))
    uspec = UpdateSpec(chunk_size=64, entry_bits=16, noise_bits=12)
    tspec = TrainSpec(
        capacity=cap,
        features=feats,
        epochs=epochs,
        update=uspec,
        model="softmax",
        classes=classes,
        feature_bits=16,
        frac_bits=frac,
    )
    lo = -(8 << frac)
    policy = DataPolicy(
        lo=(lo,) * feats,
        hi=(lo + 2**16 - 1,) * feats,
        allowed=(1,) * classes,
        min_rows=1,
        min_count=(0,) * classes,
        max_count=(cap,) * classes,
    )

    def accuracy(w: np.ndarray) -> float:
        wm = w.reshape(classes, feats + 1)
        return float((np.argmax(xt @ wm[:, :-1].T + wm[:, -1], axis=1) == yt).mean())

    w_fp = np.zeros(tspec.params, dtype=np.int64)
    w_fl = np.zeros(tspec.params)
    for _ in range(rounds):
        ups_fp, ups_fl, sizes = [], [], []
        for p in parts:
            ups_fp.append(train(tspec, w_fp, fixed_point(xtr[p], frac), ytr[p], lr_fp) - w_fp)
            ups_fl.append(train_float_softmax(w_fl, xtr[p], ytr[p], lr, epochs, classes) - w_fl)
            sizes.append(len(p))
        wts = np.array(sizes) / sum(sizes)
        w_fp = w_fp + np.rint(np.tensordot(wts, np.array(ups_fp), 1)).astype(np.int64)
        w_fl = w_fl + np.tensordot(wts, np.array(ups_fl), 1)
    out: dict[str, Any] = {
        "members": members,
        "rows_per_member": [len(p) for p in parts],
        "accuracy_fixed_point_approx_softmax": round(accuracy(w_fp / (1 << frac)), 4),
        "accuracy_float_exact_softmax": round(accuracy(w_fl), 4),
    }
    keys = backend.keys(tspec.circuit)
    w0 = np.zeros(tspec.params, dtype=np.int64)
    times = []
    for m in range(prove_members):
        p = parts[m]
        xf = fixed_point(xtr[p], frac)
        upd = train(tspec, w0, xf, ytr[p], lr_fp) - w0
        secret, posted = commit_update(uspec, ProofContext("wine", 1, f"m{m}"), upd, np.zeros_like(upd), rng)
        proof = prove_training(backend, keys, tspec, policy, w0, xf, ytr[p], lr_fp, secret, posted)
        verify_training(
            keys, tspec, dataset_root(tspec.data, policy, xf, ytr[p]), policy.lo, len(p), lr_fp, w0, posted, proof
        )
        times.append(proof.prove_seconds)
    out["training_prove_s_mean"] = round(float(np.mean(times)), 2)
    out["training_proofs_made"] = prove_members
    return out


def run(quick: bool = False) -> dict[str, Any]:
    warnings.simplefilter("ignore", DevelopmentSetupWarning)
    backend = Groth16Backend()
    rng = np.random.default_rng(7)
    load = [round(v, 2) for v in os.getloadavg()]
    out: dict[str, Any] = {
        "machine_cores": os.cpu_count(),
        "load_average_at_start": load,
        "anchors": ANCHORS,
        "targets": TARGETS,
    }
    setups: dict[str, float] = {}

    def prover_for(spec: UpdateSpec, workers: int) -> UpdateProver:
        t0 = time.perf_counter()
        fresh = not (backend.key_dir(spec.circuit) / "setup.json").exists()
        p = UpdateProver(spec, backend, workers=workers)
        setups[spec.circuit.name] = round(time.perf_counter() - t0, 1)
        setups[spec.circuit.name + "_was_fresh_setup"] = fresh
        return p

    spec1k = UpdateSpec(chunk_size=1024)
    with prover_for(spec1k, 1) as p:
        rec = p.keys.record
        out["keys"] = {"kind": rec.kind, "development_only": rec.development_only}
        if rec.development_only:
            out["keys"]["warning"] = "DEVELOPMENT-ONLY: single-party setup; whoever ran it can forge proofs"
        case = _prove_case(spec1k, 1024, p, rng)
        out["update_1024"] = {k: v for k, v in case.items() if not k.startswith("_")}
        out["round_check_100_trainers_d1024"] = _round_check(spec1k, p.keys, case["_posted"], case["_proof"], 1024, 100)
        if not quick:
            out["round_check_1000_trainers_d1024"] = _round_check(
                spec1k, p.keys, case["_posted"], case["_proof"], 1024, 1000
            )
        out["gas"] = _gas(p.keys, spec1k, case["_posted"], case["_proof"])
    if not quick:
        spec4k = UpdateSpec(chunk_size=4096)
        with prover_for(spec4k, 2) as p:
            for dim in (16_384, 100_000):
                case = _prove_case(spec4k, dim, p, rng)
                out[f"update_{dim}"] = {k: v for k, v in case.items() if not k.startswith("_")}
                if dim == 16_384:
                    for trainers in (100, 1000):
                        out[f"round_check_{trainers}_trainers_d16384"] = _round_check(
                            spec4k, p.keys, case["_posted"], case["_proof"], dim, trainers
                        )
    out["breast_cancer"] = _breast_cancer(backend, members=10, prove_members=2 if quick else 10)
    out["wine_softmax"] = _wine_softmax(backend, members=10, prove_members=1 if quick else 3)
    out["setup_or_key_load_s"] = setups
    u1 = out["update_1024"]
    out["ratios"] = {
        "prove_1024_vs_rofl": round(u1["prove_s"] / ANCHORS["rofl_prove_1024_s"], 2),
        "verify_1024_vs_rofl": round(u1["verify_s"] / ANCHORS["rofl_verify_1024_s"], 4),
    }
    if "update_16384" in out:
        u = out["update_16384"]
        out["ratios"]["prove_16384_vs_rofl"] = round(u["prove_s"] / ANCHORS["rofl_prove_16384_s"], 2)
        out["ratios"]["verify_16384_vs_rofl"] = round(u["verify_s"] / ANCHORS["rofl_verify_16384_s"], 4)
    out["field_bits"] = P.bit_length()
    out["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return out


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2))
