"""Cross-checks: a groth16py proof verifies in snarkjs and in the Vyper verifier on anvil."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from web3.exceptions import ContractLogicError
from zk_anvil import ANVIL, anvil_node, deploy
from zk_support import SMALL

from fedledger.zk.backend import Groth16Backend, proof_to_snarkjs, proof_words
from fedledger.zk.field import P
from fedledger.zk.update import ProofContext, chunk_public_inputs, commit_update

pytestmark = pytest.mark.filterwarnings("ignore::fedledger.zk.backend.DevelopmentSetupWarning")

ROOT = Path(__file__).resolve().parents[2]
SNARKJS = ROOT / ".cache" / "zk-node" / "node_modules" / ".bin" / "snarkjs"
R = 987654321987654321


@pytest.fixture(scope="module")
def proved(small_prover):
    rng = np.random.default_rng(11)
    x, e = rng.integers(-200, 200, 20), rng.integers(-20, 20, 20)
    secret, posted = commit_update(SMALL, ProofContext("t", 2, "m"), x, e, rng)
    proof = small_prover.prove_update(secret, posted, R)
    publics = []
    state_in = posted.state0
    for k, ch in enumerate(proof.chunks):
        publics.append(chunk_public_inputs(SMALL, posted, k, state_in, ch.state_out, R, proof.s))
        state_in = ch.state_out
    return proof, publics


def test_snarkjs_json_form_verifies_in_groth16py(small_prover, proved) -> None:
    proof, publics = proved
    for ch, pub in zip(proof.chunks, publics, strict=True):
        ok = small_prover.keys.verifier.verify_snarkjs(
            json.dumps(proof_to_snarkjs(ch.proof)), json.dumps([str(v) for v in pub])
        )
        assert ok is True
        bad = [str(v) for v in pub]
        bad[4] = str(int(bad[4]) + 1)
        verifier = small_prover.keys.verifier
        assert verifier.verify_snarkjs(json.dumps(proof_to_snarkjs(ch.proof)), json.dumps(bad)) is False


@pytest.mark.slow
@pytest.mark.skipif(
    not SNARKJS.exists() or shutil.which("node") is None, reason="snarkjs not installed in .cache/zk-node"
)
def test_proof_verifies_in_snarkjs(small_prover, proved, tmp_path) -> None:
    proof, publics = proved
    vk = tmp_path / "vk.json"
    vk.write_text(small_prover.keys.vk.to_json())
    for label, pub, raw in (("good", publics[0], proof.chunks[0].proof), ("bad", publics[1], proof.chunks[0].proof)):
        (tmp_path / "proof.json").write_text(json.dumps(proof_to_snarkjs(raw)))
        (tmp_path / "public.json").write_text(json.dumps([str(v) for v in pub]))
        res = subprocess.run(
            [str(SNARKJS), "groth16", "verify", str(vk), str(tmp_path / "public.json"), str(tmp_path / "proof.json")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if label == "good":
            assert res.returncode == 0 and "OK" in res.stdout, res.stdout + res.stderr
        else:
            assert res.returncode != 0 or "Invalid" in res.stdout


@pytest.mark.anvil
@pytest.mark.slow
@pytest.mark.skipif(not ANVIL.exists(), reason="anvil not installed (make node)")
def test_vyper_verifier_on_anvil_accepts_and_rejects(small_prover, proved) -> None:
    proof, publics = proved
    source = Groth16Backend.export_vyper(small_prover.keys)
    with anvil_node() as w3:
        verifier = deploy(w3, source)
        for ch, pub in zip(proof.chunks, publics, strict=True):
            a, b, c = proof_words(ch.proof)
            assert verifier.functions.verifyProof(a, b, c, pub).call() is True
        a, b, c = proof_words(proof.chunks[0].proof)
        wrong_input = list(publics[0])
        wrong_input[9] = 1  # claim another linear-check value
        assert verifier.functions.verifyProof(a, b, c, wrong_input).call() is False
        tampered = [a[0], (a[1] + 1)], b, c  # a point off the curve: the precompile call reverts
        with pytest.raises(ContractLogicError):
            verifier.functions.verifyProof(*tampered, publics[0]).call()
        flipped = list(publics[0])
        flipped[4] = (flipped[4] + 1) % P  # another chunk commitment
        assert verifier.functions.verifyProof(a, b, c, flipped).call() is False
        other = proof_words(proof.chunks[1].proof)  # a valid proof for another statement
        assert verifier.functions.verifyProof(*other, publics[0]).call() is False
        gas = verifier.functions.verifyProof(a, b, c, publics[0]).estimate_gas()
        assert 150_000 < gas < 600_000
