"""DIR/results.json of a testnet: the schema `fedledger run` writes, read back from the chain and the blobs.

Each finalized round's model is fetched from the gathered blob store by the hash the chain records and
evaluated on the task's test split (the same `load_data` and model as `fedledger run`); seconds per round
are the wall time the supervisor saw between a round's opening and its finalization; bytes per round are the
differences of the nodes' own transport counters (their Prometheus metrics) sampled at each finalization.
On top of the run's schema: `testnet`, the per-node figures (bytes sent and received, rounds acted, RSS).
"""

from __future__ import annotations

import re
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Prometheus metric names (substrings) read as a node's bytes sent / received, rounds acted in and rounds seen
SENT = re.compile(r"bytes_(sent|out|up)")
RECEIVED = re.compile(r"bytes_(received|in|down)")
ACTED = re.compile(r"rounds_acted")
SEEN = re.compile(r"rounds_seen")


def scrape(url: str, timeout: float = 2.0) -> dict[str, float] | None:
    """A Prometheus text exposition as {metric name: sum over its label sets}; None if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            text = resp.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return None
    return parse_metrics(text)


def parse_metrics(text: str) -> dict[str, float]:
    """{metric name: sum over its label sets} of a Prometheus text exposition (comments and bad lines skipped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0].strip()
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


def figure(metrics: dict[str, float] | None, pattern: re.Pattern[str]) -> int:
    if not metrics:
        return 0
    return int(sum(v for k, v in metrics.items() if pattern.search(k) and not k.endswith(("_created", "_bucket"))))


@dataclass
class Timeline:
    """What the supervisor saw, polling: when each round opened and finalized, and the nodes' counters then."""

    opened: dict[int, float] = field(default_factory=dict)
    finalized: dict[int, float] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    sent_at: dict[int, int] = field(default_factory=dict)  # total bytes sent by all nodes at finalization
    received_at: dict[int, int] = field(default_factory=dict)
    trainer_sent_at: dict[int, int] = field(default_factory=dict)
    start: float = 0.0


def run_privacy(cfg: Any, model: Any, spent: float, rounds_done: int) -> dict[str, Any]:
    """The run's privacy block: for member-level DP the plan every node derives from the task's spec."""
    from dataclasses import asdict

    from fedledger.models import get_flat
    from fedledger.privacy.block import privacy_block
    from fedledger.protocol.rules import distributed_dp

    if cfg.privacy.dp == "none":
        return privacy_block(cfg.privacy)
    if cfg.privacy.dp != "member":
        return privacy_block(cfg.privacy, epsilon_spent=spent)
    ddp = distributed_dp(cfg, int(get_flat(model).numel()))
    secagg = {"protocol": "SecAgg+", **asdict(ddp.secagg_params)} if ddp.secagg_params is not None else None
    return privacy_block(cfg.privacy, epsilon_spent=spent, rounds_done=rounds_done, plan=ddp.plan, secagg=secagg)


def testnet_results(root: Path, cfg: Any, ledger: Any, manifest: Any, timeline: Timeline | None = None,
                    nodes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    import torch

    from fedledger.core.blobstore import BlobStore
    from fedledger.core.hashing import hex32
    from fedledger.core.vectors import from_bytes
    from fedledger.data import load_data
    from fedledger.learning import evaluate
    from fedledger.ledger.types import from_fixed
    from fedledger.models import build_model
    from fedledger.sim.federation import RoundRecord

    timeline = timeline or Timeline()
    data = load_data(cfg)
    model = build_model(cfg.model, data.input_shape, data.num_classes, seed=cfg.seed)
    test_X, test_y = torch.from_numpy(data.test.X), torch.from_numpy(data.test.y)
    blobs = BlobStore(root / "blobs")
    task_id = manifest.task_id
    task = ledger.task(task_id)
    cohort = max(1, round(cfg.fraction * manifest.members))
    rounds: list[RoundRecord] = []
    flat = None
    prev_sent = prev_recv = prev_trainer = 0
    for r in range(1, task.finalized_rounds + 1):
        rec = ledger.round(task_id, r)
        flat = from_bytes(blobs.get(rec.model_hash))
        accuracy, loss = evaluate(model, flat, test_X, test_y)
        sent, recv = timeline.sent_at.get(r, prev_sent), timeline.received_at.get(r, prev_recv)
        trainer = timeline.trainer_sent_at.get(r, prev_trainer)
        began = timeline.opened.get(r)
        ended = timeline.finalized.get(r)
        rounds.append(RoundRecord(
            round=r, accuracy=float(accuracy), loss=float(loss), participants=int(rec.survivor_count),
            dropped=max(0, cohort - int(rec.survivor_count)), bytes_up=trainer - prev_trainer,
            bytes_down=max(0, recv - prev_recv - (trainer - prev_trainer)),
            seconds=round(ended - began, 3) if began is not None and ended is not None else 0.0,
            train_loss=float("nan"), model_hash=hex32(rec.model_hash), survivors=int(rec.survivor_count),
            epsilon_spent=from_fixed(rec.privacy_spent) if cfg.privacy.dp != "none" else None,
            aggregated=True, chain_txs=None, finalized=True, attempts=int(rec.attempt)))
        prev_sent, prev_recv, prev_trainer = sent, recv, trainer
    if flat is not None:
        _save_model(root, cfg, data, flat, rounds)
    payload: dict[str, Any] = {
        "config": cfg.model_dump(mode="json"),
        "rounds": [asdict(x) for x in rounds],
        "final_accuracy": rounds[-1].accuracy if rounds else 0.0,
        "final_model_hash": rounds[-1].model_hash if rounds else "",
        "resumed_from_round": 0,
        "recovery": None,
        "privacy": run_privacy(cfg, model, from_fixed(task.privacy_spent), task.finalized_rounds),
        "randomness": {"deterministic": bool(cfg.deterministic),
                       "source": "derived from the run seed (public): simulation and tests only"
                       if cfg.deterministic else "operating system CSPRNG (os.urandom), in each node"},
        "ledger": {
            "backend": f"managed anvil on {root / 'chain'} (testnet)",
            "task_id": task_id,
            "finalized_rounds": task.finalized_rounds,
            "privacy_spent": from_fixed(task.privacy_spent),
            "contracts": dict(ledger.deployment.addresses),
            "slashed": [{"round": x.round_id, "attempt": x.attempt, "member": x.member, "amount": x.amount / 10**18,
                         "reason": x.reason.name.lower()} for x in ledger.slashes(task_id)],
            "balances": {n.address: {"utility": ledger.utility_balance(n.address) / 10**18,
                                     "reward": ledger.reward_balance(n.address) / 10**18}
                         for n in manifest.nodes},
        },
        "testnet": {"members": manifest.members, "processes": len(manifest.nodes), "nodes": nodes or [],
                    "seconds": round(max(timeline.finalized.values()) - timeline.start, 3)
                    if timeline.finalized and timeline.start else None},
    }
    return payload


def _save_model(root: Path, cfg: Any, data: Any, flat: Any, rounds: list[Any]) -> None:
    """model.json and checkpoint.pt as `fedledger run` leaves them, so `fedledger export DIR` works too."""
    import json
    import os

    import torch

    from fedledger.sim.export import record_of

    record = record_of(cfg, data)
    (root / "model.json").write_text(json.dumps(record, indent=2))
    tmp = root / "checkpoint.pt.tmp"
    torch.save({"global": flat, "rounds": [asdict(r) for r in rounds], "testnet": True}, tmp)
    os.replace(tmp, root / "checkpoint.pt")
