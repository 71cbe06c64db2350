"""`fedledger audit`: re-verify every finalized round of a run from the chain and the blob store alone.

For each finalized round, in order:
- selection: the aggregator and committee the contract drew are the ones anyone recomputes from the seed;
- chain of models: the round's evidence names, as its starting point, the model the previous finalized
  round recorded (round 1: the initial model rebuilt from the task spec);
- evidence: the manifest under the evidence root re-hashes to that root, every blob re-hashes to its address,
  and where updates were visible the model is recomputed as the aggregate of the round's updates;
- finality: the accepting stake reached two thirds of the committee's stake and the task's quorum;
- rewards: the reward root the round posted is the one the rewards contract pays out against;
- privacy: the privacy spent never decreases and never exceeds the task's budget.

The first failure raises `IntegrityError` naming the round and the item; nothing is trusted from the run's
own files except as a lookup that is then checked (results.json is not read at all).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from fedledger.core.blobstore import BlobStore
from fedledger.core.errors import DataError, IntegrityError
from fedledger.core.vectors import to_bytes
from fedledger.data import DATASETS
from fedledger.ledger import Ledger, RoundStatus
from fedledger.models import build_model, get_flat
from fedledger.protocol.evidence import check_round

FEDERATION_FILE = Path("chain") / "federation.json"
T = TypeVar("T")


@dataclass
class AuditReport:
    task_id: int
    rounds: list[int] = field(default_factory=list)
    recomputed: list[int] = field(default_factory=list)  # rounds whose aggregate was recomputed from updates
    checks: int = 0
    privacy_spent: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {"task_id": self.task_id, "finalized_rounds_verified": self.rounds,
                "aggregates_recomputed": self.recomputed, "checks": self.checks,
                "privacy_spent": self.privacy_spent, "ok": True}


class _Round:
    """Names the round and item of the next check, so a failure says where it is."""

    def __init__(self, report: AuditReport, round_id: int) -> None:
        self.report = report
        self.round_id = round_id

    def check(self, item: str, fn: Callable[..., T], *args: object) -> T:
        try:
            out = fn(*args)
        except IntegrityError as e:
            raise IntegrityError(f"round {self.round_id}: {item}: {e}") from None
        self.report.checks += 1
        return out

    def require(self, item: str, ok: bool, detail: str) -> None:
        if not ok:
            raise IntegrityError(f"round {self.round_id}: {item}: {detail}")
        self.report.checks += 1


def initial_model_hash(spec: dict[str, object]) -> bytes:
    info = DATASETS[str(spec["dataset"])]
    model = build_model(str(spec["model"]), info.input_shape, info.num_classes, seed=int(str(spec["seed"])))
    return BlobStore.address(to_bytes(get_flat(model)))


def audit_run(run_dir: Path, chain: str = "auto") -> AuditReport:
    path = run_dir / FEDERATION_FILE
    if not path.exists():
        raise DataError(f"{run_dir} has no ledger record ({FEDERATION_FILE} is missing): was it run with --chain?")
    task_id = int(json.loads(path.read_text())["task_id"])
    blobs = BlobStore(run_dir / "blobs")
    report = AuditReport(task_id)
    with Ledger.connect(chain, run_dir, deploy_if_missing=False) as ledger:
        task = ledger.task(task_id)
        spec = json.loads(blobs.get(task.spec_hash))
        previous = initial_model_hash(spec)
        spent = 0
        for round_id in range(1, task.current_round + 1):
            record = ledger.round(task_id, round_id)
            if record.status is not RoundStatus.FINALIZED:
                continue
            r = _Round(report, round_id)
            r.check("selection", ledger.verify_selection, task_id, round_id)
            checked = r.check("evidence", check_round, blobs, record.model_hash, record.evidence_root)
            r.require("model chain", checked.previous_model == previous,
                      f"starts from 0x{checked.previous_model.hex()}, not the last finalized model 0x{previous.hex()}")
            r.require("finality", 3 * record.accept_weight >= 2 * record.committee_weight,
                      f"accepting stake {record.accept_weight} is under 2/3 of {record.committee_weight}")
            root, _, _ = ledger.reward_pool(task_id, round_id)
            r.require("rewards", record.reward_root in (root, b"\x00" * 32),
                      "the rewards contract pays against another root than the round posted")
            r.require("privacy", spent <= record.privacy_spent <= task.privacy_budget,
                      f"privacy spent {record.privacy_spent} is below the previous round's or above the budget")
            spent = record.privacy_spent
            previous = record.model_hash
            report.rounds.append(round_id)
            if checked.recomputed:
                report.recomputed.append(round_id)
        report.privacy_spent = spent / 10**18
    return report
