"""Production path: keys imported from a snarkjs phase-2 ceremony `.zkey` prove and verify.

Needs circom2 and snarkjs in .cache/zk-node and a prepared Powers of Tau file at
.cache/zk-ceremony/pot12.ptau (made once, never per run: see docs/zk.md). The circuit's zkey
is built once and cached by circuit digest beside it.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from zk_support import SMALL

from fedledger.zk.backend import CIRCUIT_DIR, DevelopmentSetupWarning, Groth16Backend
from fedledger.zk.errors import InvalidProof
from fedledger.zk.poseidon import circomlib_dir
from fedledger.zk.update import ProofContext, UpdateProver, commit_update, verify_update

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".cache" / "zk-node" / "node_modules" / ".bin"
CEREMONY = ROOT / ".cache" / "zk-ceremony"
PTAU = CEREMONY / "pot12.ptau"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (BIN / "circom2").exists() or not (BIN / "snarkjs").exists() or not PTAU.exists(),
        reason="needs circom2 + snarkjs in .cache/zk-node and .cache/zk-ceremony/pot12.ptau",
    ),
]


def _zkey(tmp: Path) -> Path:
    circuit = SMALL.circuit
    out = CEREMONY / f"{circuit.name}-{circuit.digest[:16]}.zkey"
    if out.exists():
        return out
    work = tmp / "build"
    (work / "lib").mkdir(parents=True)
    for f in CIRCUIT_DIR.glob("*.circom"):  # circom2 (WASI) reads only below its working directory
        shutil.copy(f, work)
    for f in Path(circomlib_dir()).glob("*.circom"):
        shutil.copy(f, work / "lib")
    (work / "main.circom").write_text(circuit.main)
    run = {"cwd": work, "check": True, "capture_output": True, "timeout": 600}
    subprocess.run([str(BIN / "circom2"), "main.circom", "--r1cs", "--O2", "-l", "lib", "-l", ".", "-o", "."], **run)
    subprocess.run([str(BIN / "snarkjs"), "groth16", "setup", "main.r1cs", str(PTAU), "c0.zkey"], **run)
    subprocess.run(
        [str(BIN / "snarkjs"), "zkey", "contribute", "c0.zkey", "c1.zkey", "--name=fedledger-test", "-e=test"], **run
    )
    shutil.copy(work / "c1.zkey", out)
    return out


def test_ceremony_keys_prove_and_verify_and_are_not_development_keys(backend, small_prover, tmp_path) -> None:
    zkey = _zkey(tmp_path)
    ceremony = Groth16Backend(tmp_path / "keys")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DevelopmentSetupWarning)  # ceremony keys must not warn
        keys = ceremony.import_ceremony(SMALL.circuit, zkey)
        prover = UpdateProver(SMALL, ceremony)
    assert keys.record.kind == "ceremony" and keys.record.development_only is False
    # our native prover proves with the imported key, through arkworks' circom (snarkjs) reduction
    assert prover.engine == "native" and keys.native_prover.key.circom_reduction
    assert keys.record.zkey_sha256 is not None and len(keys.record.zkey_sha256) == 64

    rng = np.random.default_rng(2)
    x, e = rng.integers(-100, 100, 40), rng.integers(-10, 10, 40)
    secret, posted = commit_update(SMALL, ProofContext("task", 1, "m"), x, e, rng)
    proof = prover.prove_update(secret, posted, 4242)
    verify_update(keys, SMALL, posted, proof, 4242)
    # keys from two setups are not interchangeable: a dev-key proof fails under the ceremony key
    dev_proof = small_prover.prove_update(secret, posted, 4242)
    with pytest.raises(InvalidProof):
        verify_update(keys, SMALL, posted, dev_proof, 4242)
