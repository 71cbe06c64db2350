"""The prover-process path of UpdateProver (the default with more than one worker): each spawned process loads the
proving key once, computes its chunks' witnesses natively and proves them with prove_wtns. Real groth16py, real
(development) keys of the small test circuit."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from zk_support import SMALL

from fedledger.zk.errors import ProvingError
from fedledger.zk.update import ProofContext, UpdateProver, commit_update, verify_update

pytestmark = [pytest.mark.filterwarnings("ignore::fedledger.zk.backend.DevelopmentSetupWarning"), pytest.mark.slow]

R = 0x51F0E1D2C3B4A5968778695A4B3C2D1E0F
CTX = ProofContext("task-p", 3, "member-p")


def _update(rng: np.random.Generator, dim: int, amp: int = 300):
    return commit_update(SMALL, CTX, rng.integers(-amp, amp, dim), rng.integers(-50, 50, dim), rng)


def test_processes_prove_what_the_threads_prove(small_prover, rng) -> None:
    secret, posted = _update(rng, 5 * SMALL.chunk_size - 7)  # five chunks, the last one padded
    with UpdateProver(SMALL, small_prover.backend, workers=2) as procs:
        assert procs.native and procs.path == "processes"
        assert len(set(procs._pool.pids)) == 2 and os.getpid() not in procs._pool.pids
        c0 = procs.cpu_seconds
        by_procs = procs.prove_update(secret, posted, R)
        assert procs.cpu_seconds > c0  # the workers' CPU (witnesses and proofs) is counted
    with UpdateProver(SMALL, small_prover.backend, workers=2, processes=False) as threads:
        assert threads.path == "threads"
        by_threads = threads.prove_update(secret, posted, R)
    for proof in (by_procs, by_threads):
        verify_update(small_prover.keys, SMALL, posted, proof, R)
    assert by_procs.s == by_threads.s
    assert [c.state_out for c in by_procs.chunks] == [c.state_out for c in by_threads.chunks]
    assert [c.index for c in by_procs.chunks] == list(range(5))


def test_a_bad_witness_fails_its_update_and_the_workers_go_on(small_prover, rng) -> None:
    x = rng.integers(-300, 300, 2 * SMALL.chunk_size)
    x[20] = 2**20  # outside the 17-bit range of y: chunk 1's witness breaks a constraint
    bad = commit_update(SMALL, CTX, x, np.zeros_like(x), rng, check=False)
    good = _update(rng, 2 * SMALL.chunk_size)
    with UpdateProver(SMALL, small_prover.backend, workers=2) as prover:
        pids = list(prover._pool.pids)
        pending = prover.submit_update(*bad, R)
        with pytest.raises(ProvingError, match="does not satisfy"):
            pending.result(timeout=120)
        proof = prover.prove_update(*good, R)
        assert prover._pool.pids == pids  # a failed proof is no reason to restart a worker
    verify_update(small_prover.keys, SMALL, good[1], proof, R)


def test_a_prover_process_that_dies_fails_the_update_with_one_clear_error(small_prover, rng) -> None:
    """A worker killed mid-update (as the kernel's OOM killer would): the update's future fails with one
    ProvingError that says a prover process died, promptly rather than never; the next update starts fresh
    workers and proves."""
    long = _update(rng, 60 * SMALL.chunk_size, amp=50)  # 60 chunks: the kill lands while they are queued or proving
    with UpdateProver(SMALL, small_prover.backend, workers=2) as prover:
        pids = list(prover._pool.pids)
        pending = prover.submit_update(*long, R)
        os.kill(pids[0], signal.SIGKILL)
        with pytest.raises(ProvingError, match="a prover process died"):
            pending.result(timeout=120)  # a hang fails the test here instead of stalling the suite
        secret, posted = _update(rng, 3 * SMALL.chunk_size)
        proof = prover.prove_update(secret, posted, R)
        assert set(prover._pool.pids).isdisjoint(pids)  # fresh workers
    verify_update(small_prover.keys, SMALL, posted, proof, R)
