"""A trainer node's local work gives, bit for bit, the update the simulation's batched trainer gives the same member
in the same round: the same data, compute budget and sample order (its row of the cohort's draw, reproduced from
the cohort and the committed example counts), so a testnet and `fedledger run` reach the same model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fedledger.core.blobstore import BlobStore
from fedledger.core.config import WHOLE_SYSTEM, load_config
from fedledger.core.vectors import to_bytes
from fedledger.ledger.types import RoundRecord, RoundStatus
from fedledger.node.work import DataChoice, NodeWork, member_split
from fedledger.protocol.roles import RoundView, StageClock
from fedledger.protocol.rules import task_rules
from fedledger.sim.federation import Simulation


def view(round_id: int, attempt: int, model: bytes, cohort: tuple[str, ...]) -> RoundView:
    record = RoundRecord(1, round_id, RoundStatus.OPEN, attempt, b"\0" * 32, 0, "0x" + "00" * 20, 0, 0, 0,
                         b"\0" * 32, b"\0" * 32, b"\0" * 32, 0, 0, b"\0" * 32, b"\0" * 32, 0, 0, 0)
    return RoundView(record=record, cohort=cohort, global_model=model, previous_evidence=None, now=0)


@pytest.mark.parametrize(("partition", "threads"), [("iid", 1), ("dirichlet:0.3", 1), ("iid", 2)])
def test_a_node_trains_its_member_bit_for_bit_as_the_simulation_trains_the_cohort(partition: str, threads: int,
                                                                                  tmp_path: Path) -> None:
    """`threads`: the node process's torch threads (the suite runs on one; a node process on every core)."""
    cfg = load_config(None, {"dataset": "digits", "model": "logreg", "partition": partition, "seed": 5,
                             "clients": 4, "max_samples": 500, "local_steps": 4, "deterministic": True,
                             "privacy.dp": "none", "privacy.secagg": False, "proofs": "none"}, base=WHOLE_SYSTEM)
    sim = Simulation(cfg)
    cohort = np.array([0, 2, 3])  # member 1 not drawn: the rows follow the cohort, not the federation
    start = sim.global_flat.clone()
    _, want = sim._train(2, cohort, start)
    spec = {**cfg.model_dump(exclude={"out", "baseline"}), "input_shape": list(sim.data.input_shape),
            "num_classes": sim.data.num_classes}  # as `fedledger task create` publishes it
    rules = task_rules(spec)
    blobs = BlobStore(tmp_path / "blobs")
    model = blobs.put(to_bytes(start))
    addresses = tuple(f"0x{m:040x}" for m in cohort)
    counts = {int(m): int(sim.pool.counts[m]) for m in cohort}
    assert len(set(counts.values())) > 1 or partition == "iid"
    for row, m in enumerate(int(x) for x in cohort):
        split, _ = member_split(rules, spec, DataChoice("shard"), m)
        work = NodeWork(rules, spec, split, m, 1, blobs, StageClock(), lambda v: dict(counts))
        suite = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            work.request(m, view(2, 0, model, addresses))
        finally:
            torch.set_num_threads(suite)
        got = work.result(m, (2, 0))
        assert got is not None and got.num_examples == counts[m]
        assert torch.equal(torch.from_numpy(got.update), want.deltas[row]), f"member {m}"
        assert got.train_loss == float(want.losses[row])
    # a member that forgets the members drawn before it trains on another sample order
    m = int(cohort[1])
    split, _ = member_split(rules, spec, DataChoice("shard"), m)
    alone = NodeWork(rules, spec, split, m, 1, blobs, StageClock(), lambda v: {m: counts[m]})
    alone.request(m, view(2, 0, model, addresses))
    got = alone.result(m, (2, 0))
    assert got is not None and not torch.equal(torch.from_numpy(got.update), want.deltas[1])


def test_a_node_trains_within_the_memory_budget_the_task_sets(tmp_path: Path) -> None:
    cfg = load_config(None, {"dataset": "digits", "model": "logreg", "clients": 3, "max_samples": 300,
                             "train_memory_mib": 3, "privacy.dp": "none", "privacy.secagg": False,
                             "proofs": "none"}, base=WHOLE_SYSTEM)
    sim = Simulation(cfg)
    spec = {**cfg.model_dump(exclude={"out", "baseline"}), "input_shape": list(sim.data.input_shape),
            "num_classes": sim.data.num_classes}
    rules = task_rules(spec)
    split, _ = member_split(rules, spec, DataChoice("shard"), 0)
    work = NodeWork(rules, spec, split, 0, 1, BlobStore(tmp_path / "blobs"), StageClock())
    assert work.trainer.block_bytes == sim.trainer.block_bytes == 3 * 2**20
