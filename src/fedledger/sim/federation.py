"""A whole federation in one process: sampling, dropouts, batched local training, aggregation.

`Simulation` is deterministic under the config's seed: member budgets, cohorts, dropouts and local
minibatches all come from generators derived from it (`fedledger.core.rng`). After every round it
writes an atomic checkpoint to the output directory, so running again on the same directory resumes
where the last run stopped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedledger.core.config import FederationConfig
from fedledger.core.errors import ConfigError, TrainingError
from fedledger.core.hashing import Usage, domain_hash, hex32
from fedledger.core.rng import numpy_rng, torch_generator
from fedledger.core.vectors import to_bytes
from fedledger.data import FederatedData, load_federated
from fedledger.learning import (
    Cohort,
    LocalRecipe,
    RoundUpdates,
    budget_steps,
    build_strategy,
    evaluate,
    make_trainer,
)
from fedledger.models import build_model, get_flat

CHECKPOINT = "checkpoint.pt"
BYTES_PER_FLOAT = 4


@dataclass(frozen=True)
class RoundRecord:
    round: int
    accuracy: float
    loss: float
    participants: int
    dropped: int
    bytes_up: int
    bytes_down: int
    seconds: float
    train_loss: float
    model_hash: str


@dataclass
class RunResult:
    config: dict[str, Any]
    rounds: list[RoundRecord] = field(default_factory=list)
    final_accuracy: float = 0.0
    final_model_hash: str = ""
    centralized_accuracy: float | None = None
    resumed_from: int = 0

    @property
    def accuracy_ratio(self) -> float | None:
        if self.centralized_accuracy is None or self.centralized_accuracy == 0:
            return None
        return self.final_accuracy / self.centralized_accuracy

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "config": self.config,
            "rounds": [asdict(r) for r in self.rounds],
            "final_accuracy": self.final_accuracy,
            "final_model_hash": self.final_model_hash,
            "resumed_from_round": self.resumed_from,
        }
        if self.centralized_accuracy is not None:
            out["centralized_accuracy"] = self.centralized_accuracy
            out["accuracy_ratio"] = self.accuracy_ratio
        return out


def model_hash(flat: torch.Tensor) -> str:
    return hex32(domain_hash(Usage.MODEL, to_bytes(flat)))


def recipe_of(cfg: FederationConfig) -> LocalRecipe:
    return LocalRecipe(
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        batch_size=cfg.batch_size,
        local_epochs=cfg.local_epochs,
        local_steps=cfg.local_steps,
        proximal_mu=cfg.proximal_mu,
    )


class _Pool:
    """All members' training data in one tensor; member i owns rows offsets[i] : offsets[i] + counts[i]."""

    def __init__(self, data: FederatedData) -> None:
        self.counts = np.array([len(m.train) for m in data.members], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        self.X = torch.from_numpy(np.concatenate([m.train.X for m in data.members]))
        self.y = torch.from_numpy(np.concatenate([m.train.y for m in data.members]))


class Simulation:
    def __init__(
        self,
        cfg: FederationConfig,
        *,
        data: FederatedData | None = None,
        model: nn.Module | None = None,
    ) -> None:
        self.cfg = cfg
        self.data = data or load_federated(
            cfg.dataset,
            cfg.partition,
            cfg.clients,
            seed=cfg.seed,
            holdout_fraction=cfg.holdout_fraction,
            test_fraction=cfg.test_fraction,
            max_samples=cfg.max_samples,
        )
        self.model = model or build_model(cfg.model, self.data.input_shape, self.data.num_classes, seed=cfg.seed)
        self.recipe = recipe_of(cfg)
        self.trainer = make_trainer(self.model, self.recipe, batched=cfg.batched)
        self.strategy = build_strategy(
            cfg.strategy, server_lr=cfg.server_lr, trim=cfg.trim_fraction, byzantine=cfg.krum_byzantine
        )
        self.pool = _Pool(self.data)
        self.test_X = torch.from_numpy(self.data.test.X)
        self.test_y = torch.from_numpy(self.data.test.y)
        self.budgets = 1.0 - cfg.heterogeneity * numpy_rng(cfg.seed, "budgets").random(len(self.data.members))
        self.full_steps = self.recipe.full_steps(self.pool.counts)
        self.global_flat = get_flat(self.model)
        self.dim = int(self.global_flat.numel())
        self.examples_processed = 0

    # -- one round ---------------------------------------------------------------------------------
    def sample(self, rnd: int) -> tuple[np.ndarray, np.ndarray]:
        """(selected members, which of them survive) for round `rnd`."""
        n = len(self.data.members)
        rng = numpy_rng(self.cfg.seed, "round", rnd, "sample")
        k = max(1, round(self.cfg.fraction * n))
        selected = np.sort(rng.choice(n, size=k, replace=False))
        survives = rng.random(k) >= self.cfg.dropout
        return selected, survives

    def run_round(self, rnd: int) -> RoundRecord:
        start = time.perf_counter()
        selected, survives = self.sample(rnd)
        members = selected[survives]
        train_loss = float("nan")
        if len(members):
            steps = budget_steps(self.full_steps[members], self.budgets[members])
            cohort = Cohort(self.pool.offsets[members], self.pool.counts[members], steps)
            result = self.trainer.train(
                self.global_flat, self.pool.X, self.pool.y, cohort, torch_generator(self.cfg.seed, "round", rnd)
            )
            self._check_finite(rnd, members, result.losses, result.deltas)
            updates = RoundUpdates(result.deltas, self.pool.counts[members], result.normalizers)
            self.global_flat = self.strategy.step(self.global_flat, updates)
            self.examples_processed += int((steps * np.minimum(self.cfg.batch_size, cohort.counts)).sum())
            train_loss = float(result.losses.mean())
        accuracy, loss = evaluate(self.model, self.global_flat, self.test_X, self.test_y)
        return RoundRecord(
            round=rnd,
            accuracy=accuracy,
            loss=loss,
            participants=len(members),
            dropped=int(len(selected) - len(members)),
            bytes_up=int(len(members) * self.dim * BYTES_PER_FLOAT),
            bytes_down=int(len(selected) * self.dim * BYTES_PER_FLOAT),
            seconds=time.perf_counter() - start,
            train_loss=train_loss,
            model_hash=model_hash(self.global_flat),
        )

    def _check_finite(self, rnd: int, members: np.ndarray, losses: torch.Tensor, deltas: torch.Tensor) -> None:
        bad = ~torch.isfinite(losses) | ~torch.isfinite(deltas).all(dim=1)
        if bool(bad.any()):
            who = self.data.members[int(members[int(torch.nonzero(bad)[0])])].name
            raise TrainingError(
                f"member {who} produced a non-finite loss in round {rnd}; lower --lr (now {self.cfg.lr})"
            )

    # -- a whole run -------------------------------------------------------------------------------
    def run(
        self, out: Path | None = None, on_round: Callable[[RoundRecord], None] | None = None
    ) -> RunResult:
        result = RunResult(config=self.cfg.model_dump())
        first = 1
        if out is not None:
            first = self._resume(out, result)
        for rnd in range(first, self.cfg.rounds + 1):
            record = self.run_round(rnd)
            result.rounds.append(record)
            if out is not None:
                self._checkpoint(out, result)
            if on_round:
                on_round(record)
        result.final_accuracy = evaluate(self.model, self.global_flat, self.test_X, self.test_y)[0]
        result.final_model_hash = model_hash(self.global_flat)
        if self.cfg.baseline:
            result.centralized_accuracy = self.centralized_accuracy()
        return result

    def centralized_accuracy(self) -> float:
        """The same model trained on the pooled training data with the federation's compute budget."""
        return centralized_baseline(self, self.examples_processed)

    # -- checkpoints -------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        cfg = self.cfg.model_dump(exclude={"out", "rounds", "baseline"})
        return json.dumps(cfg, sort_keys=True)

    def _checkpoint(self, out: Path, result: RunResult) -> None:
        out.mkdir(parents=True, exist_ok=True)
        state = {
            "fingerprint": self._fingerprint(),
            "global": self.global_flat,
            "strategy": self.strategy.state_dict(),
            "rounds": [asdict(r) for r in result.rounds],
            "examples_processed": self.examples_processed,
        }
        tmp = out / (CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, out / CHECKPOINT)

    def _resume(self, out: Path, result: RunResult) -> int:
        path = out / CHECKPOINT
        if not path.exists():
            return 1
        state = torch.load(path, weights_only=True)
        if state["fingerprint"] != self._fingerprint():
            raise ConfigError(
                f"{out} holds a run with a different configuration; choose another --out or delete {path}"
            )
        self.global_flat = state["global"]
        self.strategy.load_state_dict(state["strategy"])
        self.examples_processed = int(state["examples_processed"])
        result.rounds = [RoundRecord(**r) for r in state["rounds"]]
        result.resumed_from = len(result.rounds)
        return len(result.rounds) + 1


def centralized_baseline(sim: Simulation, examples: int, keep: dict[str, torch.Tensor] | None = None) -> float:
    """Train one model on all members' training data, processing as many examples as the federation did.

    Returns its accuracy on the global test set; `keep["model"]` receives its parameters if asked.
    """
    batch = sim.cfg.batch_size
    total = len(sim.pool.y)
    steps = max(1, examples // batch)
    recipe = LocalRecipe(**{**asdict(sim.recipe), "local_steps": steps, "proximal_mu": 0.0})
    model = build_model(sim.cfg.model, sim.data.input_shape, sim.data.num_classes, seed=sim.cfg.seed)
    trainer = make_trainer(model, recipe, batched=sim.cfg.batched)
    start = get_flat(model)
    cohort = Cohort(np.array([0]), np.array([total]), np.array([steps]))
    result = trainer.train(start, sim.pool.X, sim.pool.y, cohort, torch_generator(sim.cfg.seed, "centralized"))
    if not torch.isfinite(result.deltas).all():
        raise TrainingError(f"the centralized baseline diverged (non-finite loss); lower --lr (now {sim.cfg.lr})")
    trained = start + result.deltas[0]
    if keep is not None:
        keep["model"] = trained
    return evaluate(model, trained, sim.test_X, sim.test_y)[0]
