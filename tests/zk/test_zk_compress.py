"""Update proofs under SRHT compression are about what is sent: the compressed, clipped, quantized vector.

A member that skips the clip in the compressed space (its update has norm C in the model space but sits on the
kept coordinates, so its compressed norm is about sqrt(p / k) C, here 4 C) cannot prove its input: the circuit's norm
bound is the plan's L2 sensitivity in the compressed space, and a proof made under a looser bound does not
verify under the task's."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from zk_support import SMALL

from fedledger.core.errors import DataError
from fedledger.core.rng import DeterministicEntropy, Purpose
from fedledger.privacy import encode_members, plan_distributed_dp
from fedledger.privacy.compress import round_map
from fedledger.protocol.rules import spec_for
from fedledger.zk.errors import InvalidProof, ProvingError
from fedledger.zk.update import ProofContext, UpdateProver, commit_update, verify_update

pytestmark = pytest.mark.filterwarnings("ignore::fedledger.zk.backend.DevelopmentSetupWarning")

CTX = ProofContext("task-c", 2, "member-3")
R = 0xC0FFEE1234567890ABCDEF1234567890ABCDEF
D = 1024  # compressed 16x to 64 coordinates: four chunks of SMALL's 16


@pytest.fixture(scope="module")
def setting():
    plan = plan_distributed_dp(epsilon=30, delta=1e-5, rounds=1, d=D, n=10, bits=16, compress=16.0)
    spec = spec_for(plan)
    assert spec.entry_bits <= SMALL.entry_bits and spec.noise_bits <= SMALL.noise_bits
    # SMALL's circuit (and keys) with the plan's bounds: the bounds are public inputs
    task = dataclasses.replace(SMALL, bound2x=spec.bound2x, bound2e=spec.bound2e)
    return plan, task, round_map(plan, b"task", 2, b"chain-seed")


def test_an_honest_compressed_input_proves_and_verifies(small_prover, setting) -> None:
    plan, task, sk = setting
    x = torch.randn(1, D, dtype=torch.float64) * 3  # clipped to C = 1 in the compressed space
    enc = encode_members(plan, x, 1.0, sk, DeterministicEntropy(1).stream(Purpose.DP_NOISE))
    assert enc.values.shape[1] == plan.length == 64  # the proof is about the 64 coordinates sent, not the 1,024
    secret, posted = commit_update(task, CTX, enc.values[0], enc.noise[0], np.random.default_rng(1))
    prover = UpdateProver(task, small_prover.backend)
    verify_update(prover.keys, task, posted, prover.prove_update(secret, posted, R), R)


def test_a_member_that_skips_the_compressed_clip_is_rejected(small_prover, setting) -> None:
    plan, task, sk = setting
    on_kept = sk.decompress(torch.ones(1, sk.rows, dtype=torch.float64))
    x = on_kept / on_kept.norm()  # norm C = 1 in the model space: a clip in the model space would pass it
    c = sk.compress(x)
    assert float(c.norm()) > 3.5  # about sqrt(p / k) = 4 times C where it is sent
    # the cheater rotates, scales and rounds its compressed vector as the plan says, without the clip
    values = np.rint(sk.forward(c).numpy()[0] * plan.int_norm).astype(np.int64)
    noise = encode_members(plan, x, 1.0, sk, DeterministicEntropy(2).stream(Purpose.DP_NOISE)).noise[0]
    assert np.abs(values).max() < 2 ** (task.entry_bits - 1)  # every entry in range: only the norm gives it away
    with pytest.raises(DataError):
        commit_update(task, CTX, values, noise, np.random.default_rng(2))
    secret, posted = commit_update(task, CTX, values, noise, np.random.default_rng(2), check=False)
    prover = UpdateProver(task, small_prover.backend)
    with pytest.raises(ProvingError):
        prover.prove_update(secret, posted, R)
    loose = dataclasses.replace(task, bound2x=task.bound2x * 16)
    secret, posted = commit_update(loose, CTX, values, noise, np.random.default_rng(3))
    proof = UpdateProver(loose, small_prover.backend).prove_update(secret, posted, R)
    with pytest.raises(InvalidProof):  # the validator verifies under the task's bound
        verify_update(prover.keys, task, posted, proof, R)
