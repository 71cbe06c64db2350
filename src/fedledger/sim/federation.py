"""A whole federation in one process: sampling, dropouts, batched local training, aggregation.

The config's seed fixes the public choices: member budgets, cohorts, dropouts and local minibatches all
come from generators derived from it (`fedledger.core.rng`). Secrets (identity keys, noise, SecAgg+ and
commitment randomness, DP-SGD noise) come from `Simulation.entropy`: the OS CSPRNG, or with
`deterministic = true` a `DeterministicEntropy` of the seed, so the run reproduces bit for bit (simulations
and tests only; results.json and each round's evidence say so). After every round it
writes an atomic checkpoint to the output directory, so running again on the same directory resumes
where the last run stopped.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedledger.core.blobstore import BlobStore
from fedledger.core.config import FederationConfig
from fedledger.core.errors import ConfigError, DataError, IntegrityError, PrivacyBudgetExceeded, TrainingError
from fedledger.core.hashing import hex32
from fedledger.core.rng import Entropy, Purpose, derive_seed, entropy_for, numpy_rng, torch_generator
from fedledger.core.vectors import from_bytes, to_bytes
from fedledger.data import FederatedData, Split, load_data
from fedledger.learning import (
    BatchedTrainer,
    Cohort,
    LocalRecipe,
    LocalResult,
    RoundUpdates,
    SequentialTrainer,
    budget_steps,
    build_strategy,
    evaluate,
    make_trainer,
)
from fedledger.learning.stream import streams, train_and_aggregate
from fedledger.ledger import RoundStatus, to_fixed
from fedledger.models import build_model, get_flat, set_flat
from fedledger.privacy import (
    DistributedDP,
    InsufficientSurvivors,
    MemberAccountant,
    calibrate_noise,
    dpsgd_schedule,
    privacy_block,
    train_member_dpsgd,
)
from fedledger.privacy.baseline import CentralDpResult, central_dpsgd, central_member_dp
from fedledger.privacy.compress import traffic_report
from fedledger.privacy.distributed import AggregateResult
from fedledger.privacy.record_secagg import RecordPlan
from fedledger.protocol.evidence import Evidence, RoundManifest
from fedledger.protocol.messages import UpdateMessage
from fedledger.protocol.roles import RoundOutput, RoundView, StageClock, Trainer
from fedledger.protocol.rules import min_survivors, planned_releases, privacy_per_round, release_allowance
from fedledger.protocol.secure import SecureRules, SecureState, load_strategy, privacy_spent
from fedledger.protocol.signing import data_commitment
from fedledger.secagg.context import SessionContext
from fedledger.secagg.keys import pki_from_registered
from fedledger.sim import secure_paths
from fedledger.sim.attacks import (
    AttackPlan,
    ImpersonatingTrainer,
    InflatingTrainer,
    MaskSwapTrainer,
    ReplayingTrainer,
)
from fedledger.sim.identities import member_identities, role_identities
from fedledger.sim.onchain import (
    AGGREGATOR_BASE,
    AGGREGATORS,
    OWNER_ACCOUNT,
    VALIDATOR_BASE,
    ChainRounds,
)
from fedledger.sim.proofs import RoundBinding, RoundProofs
from fedledger.sim.training_proofs import TrainingProofs, TrainingRound
from fedledger.zk import LinearCheckFailed

CHECKPOINT = "checkpoint.pt"
KILL_ENV = "FEDLEDGER_KILL_AT"
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
    survivors: int = 0
    epsilon_spent: float | None = None  # largest member epsilon so far, at the task's delta
    aggregated: bool = True  # False when too few members survived for the round to be released
    chain_txs: int | None = None  # transactions this round took on the ledger (None: no ledger)
    finalized: bool | None = None  # the committee accepted the round on chain
    attempts: int | None = None  # times the round was opened before a result was accepted
    proofs: dict[str, Any] | None = None  # {made, verified, rejected, prove_seconds} with --proofs update
    # wall seconds per stage: training, privacy, proofs, secagg, chain, validation (stages not run are absent)
    stages: dict[str, float] = field(default_factory=dict)


@dataclass
class RunResult:
    config: dict[str, Any]
    rounds: list[RoundRecord] = field(default_factory=list)
    final_accuracy: float = 0.0
    final_model_hash: str = ""
    centralized_accuracy: float | None = None
    central_dp: dict[str, Any] | None = None  # with --baseline under DP: the central DP model (privacy/baseline.py)
    resumed_from: int = 0
    recovery: dict[str, Any] | None = None  # how a run that found a round in progress on chain picked it up
    privacy: dict[str, Any] = field(default_factory=dict)
    ledger: dict[str, Any] | None = None
    attack: dict[str, Any] | None = None
    zk: dict[str, Any] | None = None
    randomness: dict[str, Any] = field(default_factory=dict)  # Entropy.describe(): deterministic or system
    traffic: dict[str, Any] | None = None  # bytes_up per member per round against float32 (compress.traffic_report)

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
            "recovery": self.recovery,
            "privacy": self.privacy,
            "randomness": self.randomness,
        }
        if self.traffic is not None:
            out["traffic"] = self.traffic
        if self.ledger is not None:
            out["ledger"] = self.ledger
        if self.attack is not None:
            out["attack"] = self.attack
        if self.zk is not None:
            out["zk"] = self.zk
        if self.centralized_accuracy is not None:
            out["centralized_accuracy"] = self.centralized_accuracy
            out["accuracy_ratio"] = self.accuracy_ratio
        if self.central_dp is not None:
            out["central_dp"] = self.central_dp
            out["central_dp_accuracy"] = self.central_dp["accuracy"]
            out["central_dp_ratio"] = (self.final_accuracy / self.central_dp["accuracy"]
                                       if self.central_dp["accuracy"] else None)
        return out


@dataclass(frozen=True)
class _RoundStep:
    """What aggregation did in one round, before evaluation."""

    participants: int
    train_loss: float = float("nan")
    aggregated: bool = True
    bytes_up: int | None = None  # None: float32 updates, one per participant
    extra_bytes_down: int = 0
    contributors: np.ndarray | None = None  # members whose update is in the aggregate (None: not visible)
    deltas: torch.Tensor | None = None  # the visible updates, where the new model is linear in them
    weights: np.ndarray | None = None  # new = old + weights @ deltas
    proofs: dict[str, Any] | None = None
    faulty: tuple[int, ...] = ()  # members whose proof failed (set aside before the sum)


def model_hash(flat: torch.Tensor) -> str:
    """The model's content address: the hash the chain records and the blob store files it under."""
    return hex32(BlobStore.address(to_bytes(flat)))


def _validator_holdouts(data: FederatedData, validators: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each validator's own held-out data: the members' held-out splits dealt out round robin."""
    parts = []
    for v in range(validators):
        held = [m.holdout for m in data.members[v::validators] if len(m.holdout)]
        split = Split.concat(held or [data.test])  # members without held-out data: the test set stands in
        parts.append((torch.from_numpy(split.X), torch.from_numpy(split.y)))
    return parts


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


def trainer_of(cfg: FederationConfig, model: nn.Module, recipe: LocalRecipe | None = None
               ) -> BatchedTrainer | SequentialTrainer:
    """The local trainer a run's config asks for: batched or not, within `train_memory_mib` (the simulation,
    a node process and the centralized baseline all build it here, so they train alike)."""
    block_bytes = None if cfg.train_memory_mib is None else cfg.train_memory_mib * 2**20
    return make_trainer(model, recipe_of(cfg) if recipe is None else recipe, batched=cfg.batched,
                        block_bytes=block_bytes)


class _Pool:
    """All members' training data in one tensor; member i owns rows offsets[i] : offsets[i] + counts[i]."""

    def __init__(self, data: FederatedData) -> None:
        self.counts = np.array([len(m.train) for m in data.members], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        self.X = torch.from_numpy(np.concatenate([m.train.X for m in data.members]))
        self.y = torch.from_numpy(np.concatenate([m.train.y for m in data.members]))
        self.clean_y = self.y.clone()  # attacks may poison `y`; the centralized baseline trains on clean labels


class Simulation:
    def __init__(
        self,
        cfg: FederationConfig,
        *,
        data: FederatedData | None = None,
        model: nn.Module | None = None,
    ) -> None:
        self.cfg = cfg
        # the one place a run decides where its secrets come from (docs/privacy.md, "Randomness")
        self.entropy: Entropy = entropy_for(cfg.deterministic, cfg.seed)
        self.data = data or load_data(cfg)  # a bundled data set, the user's own table, or their data factory
        self.model = model or build_model(cfg.model, self.data.input_shape, self.data.num_classes, seed=cfg.seed)
        self.recipe = recipe_of(cfg)
        self.trainer = trainer_of(cfg, self.model, self.recipe)
        self.strategy = build_strategy(
            cfg.strategy, server_lr=cfg.server_lr, trim=cfg.trim_fraction, byzantine=cfg.krum_byzantine
        )
        self.pool = _Pool(self.data)
        self.attacks = AttackPlan.parse(cfg.attack, len(self.data.members), cfg.seed)
        self.attacks.poison_labels(self.pool.y, self.pool.offsets, self.pool.counts, self.data.num_classes)
        self._first_updates: dict[int, torch.Tensor] = {}
        self.test_X = torch.from_numpy(self.data.test.X)
        self.test_y = torch.from_numpy(self.data.test.y)
        self.budgets = 1.0 - cfg.heterogeneity * numpy_rng(cfg.seed, "budgets").random(len(self.data.members))
        self.full_steps = self.recipe.full_steps(self.pool.counts)
        self.global_flat = get_flat(self.model)
        self.dim = int(self.global_flat.numel())
        self.examples_processed = 0
        self.accountants: dict[int, MemberAccountant] = {}
        self.noise_multipliers: dict[tuple[float, int], float] = {}
        self.epsilon_member_level: float | None = None
        self.ddp = self._distributed_dp()
        self.proofs = self._round_proofs()
        self.training_proofs = (
            TrainingProofs.from_config(cfg, features=int(np.prod(self.data.input_shape)),
                                       classes=self.data.num_classes, workers=os.cpu_count() or 1,
                                       entropy=self.entropy)
            if cfg.proofs == "training" else None
        )
        self._proved: TrainingRound | None = None  # the last proof-of-training round
        self.round_seed: bytes | None = None  # the chain's seed for the round being run, if on a ledger
        self.initial_flat = self.global_flat.clone()
        self.clock = StageClock()
        self._work: _BatchedWork | None = None
        self._round_start: tuple[Any, ...] = ()
        self._prove_cpu0 = 0.0  # the shared prover's CPU seconds when the round started
        self._computed: tuple[int, int] | None = None
        self._survival: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._secure: SecureRules | None = None
        self.chain: ChainRounds | None = None
        self._model_record_saved = False

    def _distributed_dp(self) -> DistributedDP | None:
        p = self.cfg.privacy
        if p.secagg and p.dp != "member":  # record-level DP-SGD steps, or no DP, through SecAgg+
            return secure_paths.secure_pipeline(self)
        if p.dp == "none":
            return None
        if self.strategy.needs_individual_updates:
            raise ConfigError(
                f"strategy {self.strategy.name} needs to see individual updates; with --dp {p.dp} use fedavg, "
                "fednova or a server optimizer (fedadam, fedyogi, fedadagrad)"
            )
        if p.dp == "record":
            return None
        cohort = max(1, round(self.cfg.fraction * len(self.data.members)))
        return DistributedDP.from_config(
            p, d=self.dim, n=cohort, rounds=self.planned_releases,
            min_survivors=min_survivors(cohort, self.cfg.dropout),
            public_seed=derive_seed(self.cfg.seed, "public").to_bytes(8, "big"), secagg_dropout=self.cfg.dropout,
            keep_encoding=self.cfg.proofs != "none",
        )

    def _round_proofs(self) -> RoundProofs | None:
        if self.attacks.members_doing("mask_swap") and (self.cfg.proofs != "update" or not self.cfg.privacy.secagg):
            raise ConfigError("the mask_swap attack cheats the proofs' binding to SecAgg+: use it with --proofs update "
                              "--dp member --secagg")
        if self.cfg.proofs != "update":
            return None
        if self.ddp is None:
            raise ConfigError("--proofs update proves the integer secure-aggregation inputs: use it with --secagg or "
                              "--dp member")
        return RoundProofs.for_plan(self.ddp.plan, task=f"simulation/{self.cfg.seed}")

    @property
    def planned_releases(self) -> int:
        """Member-level releases the noise is planned for: one per round, plus spares on a ledger, where an
        attempt can be redone after its sum was unmasked (every attempt is accounted)."""
        return planned_releases(self.cfg)

    # -- one round ---------------------------------------------------------------------------------
    @property
    def cohort_size(self) -> int:
        return max(1, round(self.cfg.fraction * len(self.data.members)))

    def sample(self, rnd: int, cohort: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(selected members, which of them survive) for round `rnd`; `cohort` if the chain drew it."""
        rng = numpy_rng(self.cfg.seed, "round", rnd, "sample")
        picked = rng.choice(len(self.data.members), size=self.cohort_size, replace=False)
        selected = np.sort(picked if cohort is None else cohort)
        survives = rng.random(len(selected)) >= self.cfg.dropout
        return selected, survives

    def run_round(self, rnd: int, cohort: np.ndarray | None = None) -> RoundRecord:
        start = time.perf_counter()
        selected, survives = self.sample(rnd, cohort)
        step = self._compute(rnd, selected, survives)
        return self._record(rnd, step, len(selected), int(survives.sum()), time.perf_counter() - start)

    def _compute(self, rnd: int, selected: np.ndarray, survives: np.ndarray, attempt: int = 0) -> _RoundStep:
        """Train the surviving members and aggregate; the whole cohort's work in one batch."""
        members = selected[survives]
        step = _RoundStep(participants=len(members))
        if len(members) and self.ddp is None and self.cfg.privacy.dp == "none" and self.training_proofs is None \
                and streams(self.trainer, self.strategy):
            step = self._train_and_aggregate(rnd, members)  # chunk by chunk: memory bounded by the chunk
        elif len(members):
            if isinstance(self.ddp.plan if self.ddp is not None else None, RecordPlan):
                step = secure_paths.record_round(self, rnd, selected, survives, attempt)
                self.last_step = step
                return step
            with self.clock.stage("training"):
                contributors, local = self._train(rnd, members, self.global_flat, attempt)
            local = replace(local, deltas=self.attacks.tamper_updates(contributors, local.deltas, self._first_updates))
            if self.ddp is not None:
                step = self._aggregate_distributed(rnd, selected, survives, local, attempt)
            else:
                step = self._aggregate_visible(contributors, local, self._training_counts())
                step = replace(step, proofs=self._training_proof_stats())
        self.last_step = step
        return step

    def _record(self, rnd: int, step: _RoundStep, cohort: int, survived: int, seconds: float) -> RoundRecord:
        accuracy, loss = evaluate(self.model, self.global_flat, self.test_X, self.test_y)
        model_bytes = self.dim * BYTES_PER_FLOAT
        return RoundRecord(
            round=rnd,
            accuracy=accuracy,
            loss=loss,
            participants=step.participants,
            dropped=int(cohort - survived),
            bytes_up=step.bytes_up if step.bytes_up is not None else step.participants * model_bytes,
            bytes_down=int(cohort * model_bytes + step.extra_bytes_down),
            seconds=seconds,
            train_loss=step.train_loss,
            model_hash=model_hash(self.global_flat),
            survivors=step.participants if step.aggregated else 0,
            epsilon_spent=self._epsilon(),
            aggregated=step.aggregated,
            proofs=step.proofs,
            stages=self.clock.take(),
        )

    # -- local training ----------------------------------------------------------------------------
    def _train(self, rnd: int, members: np.ndarray, start: torch.Tensor,
               attempt: int = 0) -> tuple[np.ndarray, LocalResult]:
        """(members whose update is in the result, their local results), all starting from `start`."""
        if self.cfg.privacy.dp == "record":
            return self._train_dpsgd(rnd, members, start, attempt)
        if self.training_proofs is not None:
            return self._train_proved(rnd, members, start)
        steps = budget_steps(self.full_steps[members], self.budgets[members])
        cohort = Cohort(self.pool.offsets[members], self.pool.counts[members], steps)
        result = self.trainer.train(start, self.pool.X, self.pool.y, cohort,
                                    torch_generator(self.cfg.seed, "round", rnd))
        self._check_finite(rnd, members, result.losses, result.deltas)
        self.examples_processed += int((steps * np.minimum(self.cfg.batch_size, cohort.counts)).sum())
        return members, result

    def _train_and_aggregate(self, rnd: int, members: np.ndarray) -> _RoundStep:
        """The plain path: each chunk of members is checked, tampered with by the attacks, and added to the
        round's sum as soon as it is trained (fedledger.learning.stream); no step holds every update."""
        steps = budget_steps(self.full_steps[members], self.budgets[members])
        cohort = Cohort(self.pool.offsets[members], self.pool.counts[members], steps)

        def on_chunk(first: int, part: LocalResult) -> torch.Tensor:
            rows = members[first : first + len(part.losses)]
            if not torch.isfinite(part.deltas.sum() + part.losses.sum()):  # a NaN or inf anywhere shows in the sum
                self._check_finite(rnd, rows, part.losses, part.deltas)
            return self.attacks.tamper_updates(rows, part.deltas, self._first_updates)

        with self.clock.stage("training"):
            done = train_and_aggregate(self.trainer, self.strategy, self.global_flat, self.pool.X, self.pool.y,
                                       cohort, torch_generator(self.cfg.seed, "round", rnd), on_chunk=on_chunk)
        self.examples_processed += int((steps * np.minimum(self.cfg.batch_size, cohort.counts)).sum())
        self.global_flat = done.model
        return _RoundStep(participants=len(members), train_loss=float(done.losses.mean()), contributors=members)

    def _train_dpsgd(self, rnd: int, members: np.ndarray, start: torch.Tensor,
                     attempt: int = 0) -> tuple[np.ndarray, LocalResult]:
        """Record-level DP: each member runs DP-SGD with its own accountant until its budget is spent. Its noise
        and Poisson sampling are secrets from `entropy`, fresh for every attempt (each one is accounted)."""
        p = self.cfg.privacy
        deltas, losses, steps, contributors = [], [], [], []
        set_flat(self.model, start)
        for i in members:
            X, y = self._member_rows(int(i))
            accountant = self.accountants.setdefault(int(i), MemberAccountant())
            try:
                trained, _eps = train_member_dpsgd(
                    self.model, X, y, epochs=self.cfg.local_epochs, batch_size=self.cfg.batch_size,
                    lr=self.cfg.lr, noise_multiplier=self._noise_multiplier(int(i)), max_grad_norm=p.clip_norm,
                    generator=self.entropy.torch(Purpose.DPSGD, member=int(i), round=rnd, attempt=attempt),
                    accountant_state=accountant,
                    delta=p.delta, epsilon_budget=p.epsilon, momentum=self.cfg.momentum,
                )
            except PrivacyBudgetExceeded:
                continue  # this member's own budget is spent: it stops contributing
            deltas.append(get_flat(trained) - start)
            contributors.append(int(i))
            losses.append(0.0)
            steps.append(dpsgd_schedule(len(y), self.cfg.batch_size, self.cfg.local_epochs)[1])
            self.examples_processed += len(y) * int(np.ceil(self.cfg.local_epochs))
        used = np.array(contributors, dtype=np.int64)
        if not deltas:
            return used, LocalResult(torch.zeros(0, self.dim), torch.zeros(0), np.zeros(0, np.int64), np.zeros(0))
        result = LocalResult(torch.stack(deltas), torch.tensor(losses), np.array(steps), np.array(steps, float))
        self._check_finite(rnd, used, result.losses, result.deltas)
        return used, result

    def _train_proved(self, rnd: int, members: np.ndarray, start: torch.Tensor) -> tuple[np.ndarray, LocalResult]:
        """Proof of training: each member's update is fixed-point gradient descent it proves; validators
        verify every proof and only the members whose proof verifies are kept."""
        assert self.training_proofs is not None
        started = time.perf_counter()
        with self.clock.stage("proofs"):
            self._proved = self.training_proofs.round(
                rnd, start, [int(i) for i in members], [self._member_rows(int(i)) for i in members],
                [self.data.members[int(i)].name for i in members])
        self.clock.seconds["training"] -= time.perf_counter() - started  # proving is not counted twice
        self.examples_processed += int(self._proved.rows.sum()) * self._proved.epochs
        return self._proved.members, self._proved.local_result()

    def _training_counts(self) -> np.ndarray | None:
        """Rows each proved member actually trained on (its shard), the aggregation weights."""
        return None if self._proved is None else np.asarray(self._proved.rows)

    def _training_proof_stats(self) -> dict[str, Any] | None:
        return None if self._proved is None else self._proved.stats.to_json()

    def _member_rows(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo, n = int(self.pool.offsets[i]), int(self.pool.counts[i])
        return self.pool.X[lo : lo + n], self.pool.y[lo : lo + n]

    def _noise_multiplier(self, i: int) -> float:
        """The noise that keeps member i within its budget if it takes part in every round.

        Members with the same sampling rate and step count share one calibration (it is slow).
        """
        p = self.cfg.privacy
        q, steps = dpsgd_schedule(int(self.pool.counts[i]), self.cfg.batch_size, self.cfg.local_epochs)
        key = (q, steps * self.cfg.rounds)
        if key not in self.noise_multipliers:
            self.noise_multipliers[key] = calibrate_noise(p.epsilon, p.delta, q, steps * self.cfg.rounds)
        return self.noise_multipliers[key]

    # -- aggregation -------------------------------------------------------------------------------
    def _aggregate_visible(self, members: np.ndarray, local: LocalResult,
                           counts: np.ndarray | None = None) -> _RoundStep:
        if len(local.deltas) == 0:
            return _RoundStep(participants=0)
        counts = self.pool.counts[members] if counts is None else counts
        updates = RoundUpdates(local.deltas, counts, local.normalizers)
        self.global_flat = self.strategy.step(self.global_flat, updates)
        weights = self.strategy.linear_weights(updates)
        return _RoundStep(participants=len(local.deltas), train_loss=float(local.losses.mean()),
                          contributors=members, deltas=local.deltas if weights is not None else None,
                          weights=weights)

    def _aggregate_distributed(
        self, rnd: int, selected: np.ndarray, survives: np.ndarray, local: LocalResult, attempt: int = 0
    ) -> _RoundStep:
        """Member-level DP: clip, rotate, quantize, add noise shares and sum through SecAgg+.

        Every secret of the attempt comes from one child of `entropy` fixed for (round, attempt): another
        attempt of the round draws fresh noise. With update proofs, a failed linear check names its culprits
        by blame; the round is summed again without them (named as faulty, so the contract slashes them when
        the round finalizes). The second sum uses the same noisy integer inputs (the same child): against the
        first it only removes the culprits' vectors, which are independent of the honest members' data, so
        the attempt is accounted once.
        """
        assert self.ddp is not None
        deltas = torch.zeros(len(selected), self.dim)
        deltas[torch.as_tensor(survives)] = local.deltas
        seed = self.round_seed or derive_seed(self.cfg.seed, "round-seed", rnd).to_bytes(8, "big")
        names = [self.data.members[int(i)].name for i in selected]
        cheaters = frozenset(row for row, m in enumerate(selected) if int(m) in self.attacks.members_doing("mask_swap"))
        accounted = self.ddp.state_dict()
        secrets = self.entropy.child(Purpose.ATTEMPT, round=rnd, attempt=attempt)
        culprits: set[int] = set()
        for sums in (1, 2):
            binding = (self.proofs.binding(rnd, seed, names, cheaters=cheaters, entropy=secrets, attempt=attempt)
                       if self.proofs is not None and self.ddp.secagg else None)
            started = time.perf_counter()
            try:
                agg = self.ddp.aggregate(deltas, rnd, survivors=survives, entropy=secrets, attempt=attempt,
                                         member_ids=[int(m) for m in selected], binding=binding,
                                         session=SessionContext.simulated(self.ddp.task_id, rnd, attempt,
                                                                          sub_session=sums - 1),
                                         round_seed=seed)
            except InsufficientSurvivors:
                return _RoundStep(participants=int(survives.sum()), aggregated=False)
            self.clock.seconds["privacy"] += time.perf_counter() - started - agg.secagg_seconds
            try:
                proofs = self._check_proofs(rnd, seed, names, binding, agg, secrets, attempt)
                break
            except LinearCheckFailed:
                named = {int(k) for k in binding.last_blame.culprits} if binding and binding.last_blame else set()
                if sums == 2 or not named:
                    raise
                culprits |= named
                survives = survives & ~np.isin(selected, sorted(named))
                self.ddp.load_state_dict(accounted)  # the same noisy inputs are summed again, without them
        self.global_flat = self.strategy.step(
            self.global_flat, RoundUpdates(secure_paths.server_update(self, agg, selected)[None, :], np.ones(1),
                                           np.ones(1))
        )
        self.epsilon_member_level = agg.epsilon_so_far
        survivors = int(agg.survivors.sum())
        if proofs is not None and culprits:
            proofs["culprits"] = [self.data.members[m].name for m in sorted(culprits)]
            proofs["linear_check"] = True  # on the sum without them
        return _RoundStep(
            participants=survivors,
            contributors=selected[agg.survivors],
            proofs=proofs,
            faulty=tuple(sorted({int(m) for m in agg.excluded} | culprits)),
            train_loss=float(local.losses.mean()),
            bytes_up=round(agg.bytes_up_per_member * survivors),
            extra_bytes_down=round(agg.bytes_down_per_member * survivors),
        )

    def _check_proofs(self, rnd: int, seed: bytes, names: list[str], binding: RoundBinding | None,
                      agg: AggregateResult, secrets: Entropy, attempt: int) -> dict[str, Any] | None:
        """The validators' proof checks (and the linear check); splits the seconds between stages."""
        secagg = agg.secagg_seconds
        proofs = None
        try:
            if self.proofs is not None and agg.encoding is not None:
                with self.clock.stage("proofs"):
                    proofs = self.proofs.run(rnd, seed, agg.encoding, agg.survivors, names, binding, agg,
                                             entropy=secrets, attempt=attempt).to_json()
        finally:
            # members prove and the aggregator verifies between the masked inputs and the unmasking, that is
            # inside the SecAgg+ exchange's wall time: count that part as proofs
            stats = binding.stats if binding is not None else None
            inside = min(secagg, stats.prove_seconds + stats.verify_seconds) if stats is not None else 0.0
            self.clock.seconds["proofs"] += inside
            self.clock.seconds["secagg"] += secagg - inside
        return proofs

    def _epsilon(self) -> float | None:
        if self.cfg.privacy.dp == "member" or (self.cfg.privacy.dp == "record" and self.ddp is not None):
            return self.epsilon_member_level
        if self.cfg.privacy.dp == "record":
            return max((a.epsilon(self.cfg.privacy.delta) for a in self.accountants.values()), default=0.0)
        return None

    def privacy_report(self) -> dict[str, Any]:
        p = self.cfg.privacy
        if p.dp == "member" and self.ddp is not None:
            return privacy_block(p, epsilon_spent=self._epsilon(), rounds_done=self.ddp.rounds_done,
                                 plan=self.ddp.plan,
                                 secagg={"protocol": "SecAgg+", **asdict(self.ddp.secagg_params)}
                                 if p.secagg and self.ddp.secagg_params is not None else None)
        plan = self.ddp.plan if self.ddp is not None else None
        if p.dp == "record" and isinstance(plan, RecordPlan) and self.ddp is not None and self.ddp.secagg_params:
            return privacy_block(p, epsilon_spent=self._epsilon(), noise_multiplier=plan.noise_multiplier_actual,
                                 max_grad_norm=p.clip_norm, sample_rate=plan.sample_rate,
                                 steps_per_round=plan.steps_per_round,
                                 secagg={"protocol": "SecAgg+", **asdict(self.ddp.secagg_params)}) | {
                "distributed_noise": plan.describe()}
        if p.dp == "record":
            sigmas = sorted(self.noise_multipliers.values())
            sample = dpsgd_schedule(int(self.pool.counts.min()), self.cfg.batch_size, self.cfg.local_epochs)
            return privacy_block(p, epsilon_spent=self._epsilon(), noise_multiplier=sigmas[-1] if sigmas else None,
                                 max_grad_norm=p.clip_norm, sample_rate=sample[0], steps_per_round=sample[1])
        return privacy_block(p)

    def _check_finite(self, rnd: int, members: np.ndarray, losses: torch.Tensor, deltas: torch.Tensor) -> None:
        bad = ~torch.isfinite(losses) | ~torch.isfinite(deltas).all(dim=1)
        if bool(bad.any()):
            who = self.data.members[int(members[int(torch.nonzero(bad)[0])])].name
            raise TrainingError(
                f"member {who} produced a non-finite loss in round {rnd}; lower --lr (now {self.cfg.lr})"
            )

    # -- a whole run -------------------------------------------------------------------------------
    def run(
        self, out: Path | None = None, on_round: Callable[[RoundRecord], None] | None = None,
        on_resume: Callable[[int], None] | None = None,
    ) -> RunResult:
        """Run the remaining rounds. With `out`, after every round the checkpoint and `out/results.json` (the
        results so far, same schema as the final one) are replaced atomically, then `on_round(record)` is
        called; `on_resume(n)` is called before any work when the run resumes after round n."""
        started = time.perf_counter()
        result = RunResult(config=self.cfg.model_dump(), randomness=self.entropy.describe())
        first = 1
        if out is not None:
            first = self._resume(out, result)
            if result.resumed_from and on_resume is not None:
                on_resume(result.resumed_from)
        chain = self._open_chain(out) if self.cfg.ledger.enabled else None
        self.chain = chain  # its roles stay readable after the run (tests inspect what they saw)
        try:
            found = chain.ledger.round(chain.fed.task_id, first).status if chain is not None else None
            for rnd in range(first, self.cfg.rounds + 1):
                record = self.run_round(rnd) if chain is None else self._run_chain_round(chain, rnd)
                result.rounds.append(record)
                if out is not None:
                    self._checkpoint(out, result)
                if rnd == first and (result.resumed_from or found not in (None, RoundStatus.NONE)):
                    result.recovery = {"round": rnd, "found_on_chain": found.name.lower() if found else None,
                                       "seconds_to_finalize": time.perf_counter() - started}
                if out is not None:
                    result.final_accuracy, result.final_model_hash = record.accuracy, record.model_hash
                    result.privacy = self.privacy_report()
                    result.ledger = chain.summary() if chain is not None else None
                    result.traffic = self._traffic(result)
                    write_results(out, result.to_json())
                if on_round:
                    on_round(record)
            if chain is not None:
                if self.cfg.ledger.claim_rewards:
                    chain.claim_rewards()
                result.ledger = chain.summary()
        finally:
            if chain is not None:
                chain.close()
            if self.proofs is not None:
                self.proofs.close()
            if self.training_proofs is not None:
                self.training_proofs.close()
        result.final_accuracy = evaluate(self.model, self.global_flat, self.test_X, self.test_y)[0]
        result.final_model_hash = model_hash(self.global_flat)
        result.privacy = self.privacy_report()
        result.traffic = self._traffic(result)
        result.attack = self.attacks.summary() if self.attacks.active else None
        if self.proofs is not None:
            result.zk = {"update_spec": asdict(self.proofs.spec), "keys": self.proofs.keys_record}
        if self.training_proofs is not None:
            result.zk = {"proof_of_training": True, "keys": self.training_proofs.keys_record}
        if self.cfg.baseline:
            result.centralized_accuracy = self.centralized_accuracy()
            if self.cfg.privacy.dp != "none":
                result.central_dp = central_dp_baseline(self).to_json()
        return result

    # -- on a ledger -------------------------------------------------------------------------------
    def _open_chain(self, out: Path | None) -> ChainRounds:
        if out is None:
            raise ConfigError("a run on a ledger needs an output directory (--out) for its chain state and blobs")
        committee = self.cfg.ledger.committee
        validators = _validator_holdouts(self.data, committee)
        identities = member_identities(self.entropy, len(self.data.members), out)
        accounts = [*(AGGREGATOR_BASE + i for i in range(AGGREGATORS)),
                    *(VALIDATOR_BASE + i for i in range(max(committee, 3))), OWNER_ACCOUNT]
        role_ids = role_identities(self.entropy, accounts, out)
        # the task spec names the model's input shape and classes, so an auditor rebuilds the model (its size,
        # its initial weights) from the spec alone, for a user's own data as for a bundled set
        spec = {**self.cfg.model_dump(exclude={"out", "baseline"}), "input_shape": list(self.data.input_shape),
                "num_classes": self.data.num_classes, **self._committed_keys()}
        chain = ChainRounds.connect(
            self.cfg.ledger.chain, out, members=len(self.data.members), committee=committee, rounds=self.cfg.rounds,
            privacy_budget=self.cfg.privacy.epsilon if self.cfg.privacy.dp != "none" else None,
            privacy_per_round=self._privacy_per_round(spec), spec=spec,
            trainer_keys=[identities[i].public_bytes for i in range(len(identities))],
            evaluators=[partial(_accuracy, self.model, held) for held in validators],
            held_out=[len(y) for _, y in validators], clock=self.clock,
            role_keys={a: ident.public_bytes for a, ident in role_ids.items()},
            data_commitments=[data_commitment(int(self.pool.counts[i]), self._data_digest(i))
                              for i in range(len(self.data.members))],
        )
        chain.initial_model = chain.store(self.initial_flat)
        registered = chain.fed.registered_keys()
        if any(registered[i] != identities[i].public_bytes for i in identities):
            chain.close()
            raise IntegrityError(f"the member keys in {out / 'keys'} are not the ones registered on chain")
        by_address = {t.address: identities[i] for i, t in enumerate(chain.fed.trainers)}
        by_address |= {chain.ledger.dev(a).address: ident for a, ident in role_ids.items()}
        self._secure = self._secure_rules()
        if self.ddp is not None:  # the chain is the PKI: secure aggregation uses the keys registered there
            self.ddp.identities = identities
            self.ddp.pki = pki_from_registered(registered)
        secure = self._secure is not None
        work = _BatchedWork(self, chain) if secure or self.ddp is None else None
        attacks = self.attacks
        trainers = [t.address for t in chain.fed.trainers]

        def wrap(role: Any) -> Any:  # member attacks on the protocol, as wrappers around the trainer roles
            if not isinstance(role, Trainer):
                return role
            m = role.member
            if m in attacks.members_doing("mask_swap"):
                role = MaskSwapTrainer.wrapping(role)
            if m in attacks.members_doing("inflate"):
                role = InflatingTrainer.wrapping(role)
            if m in attacks.members_doing("impersonate"):
                role = ImpersonatingTrainer.wrapping(role, trainers[(m + 1) % len(trainers)])
            if m in attacks.members_doing("replay"):
                role = ReplayingTrainer.wrapping(role)
            return role

        chain.build_roles(
            aggregation=None if secure else _SimAggregation(self, chain), work=work, attacks=self.attacks,
            drops=lambda member, key: self._drops(chain, member, key), identities=by_address, rules=self._secure,
            prover=self.proofs.prover if secure and self.proofs is not None else None,
            entropy=self.entropy, strategy=self._fresh_strategy,
            private=self.cfg.privacy.dp != "none", wrap=wrap)
        chain.on_progress = partial(self._on_chain_progress, chain)
        self._work = work
        return chain

    def _fresh_strategy(self) -> Any:
        cfg = self.cfg
        return build_strategy(cfg.strategy, server_lr=cfg.server_lr, trim=cfg.trim_fraction,
                              byzantine=cfg.krum_byzantine)

    def _secure_rules(self) -> SecureRules | None:
        """SecAgg+ on a chain (member-level DP or no DP): the roles run the whole pipeline themselves."""
        p = self.cfg.privacy
        if self.ddp is None or not p.secagg or self.ddp.secagg_params is None:
            return None
        return SecureRules(
            plan=self.ddp.plan, params=self.ddp.secagg_params, public_seed=self.ddp.public_seed,
            clip_norm=float(p.clip_norm), target_quantile=float(p.target_quantile), strategy=self._fresh_strategy,
            spec=self.proofs.spec if self.proofs is not None else None,
            keys=self.proofs.prover.keys if self.proofs is not None and self.proofs.prover is not None else None)

    def _data_digest(self, i: int) -> bytes:
        X, y = self._member_rows(i)
        return BlobStore.address(X.numpy().tobytes() + y.numpy().tobytes())

    def _drops(self, chain: ChainRounds, member: int, key: tuple[int, int]) -> bool:
        """Dropout injection: whether `member` goes silent in that attempt of the round."""
        if key not in self._survival:  # every trainer asks, every pass: draw once per attempt
            self._survival[key] = self.sample(key[0], chain.cohort_members_at(key))
        selected, survives = self._survival[key]
        return not bool(survives[np.searchsorted(selected, member)])

    def _run_chain_round(self, chain: ChainRounds, rnd: int) -> RoundRecord:
        start = time.perf_counter()
        txs = chain.tx_count()
        self._prove_cpu0 = self.proofs.prover.cpu_seconds if self.proofs and self.proofs.prover else 0.0
        self._round_start = self._snapshot()
        self._computed = None
        traffic = _traffic(chain, chain.fed.index_of)
        view = chain.run(rnd, self.cohort_size, flush=self._work.flush if self._work is not None else lambda: False)
        if self._secure is not None:
            self._sync_secure(chain, view, traffic)
        elif self._computed != view.key:  # a previous process posted this round: recompute our state from it
            self._replay(chain, view)
        finalized = from_bytes(chain.blobs.get(view.record.model_hash))
        if not torch.equal(finalized, self.global_flat):  # a tampered model got through: the chain is the truth
            self.global_flat = finalized
        _kill_if_asked(rnd, "finalized")
        record = self._record(rnd, self.last_step, len(view.cohort), len(view.cohort) - self._dropped(chain, view),
                              time.perf_counter() - start)
        return replace(record, chain_txs=chain.tx_count() - txs, finalized=True, attempts=view.record.attempt + 1)

    def _sync_secure(self, chain: ChainRounds, view: RoundView, traffic: tuple[int, int]) -> None:
        """After a secure round finalizes, this process's state is the chain's: the model, and the clip norm,
        rounds released and strategy state its evidence carries (so a resumed run continues from them)."""
        assert self._secure is not None and self.ddp is not None
        ev = Evidence.from_bytes(chain.blobs.get(RoundManifest.find(chain.blobs, view.record.evidence_root).evidence))
        state = SecureState.from_json(ev.state or {})
        self.ddp.load_state_dict({"clip_norm": state.clip_norm, "rounds_done": state.released})
        self.strategy.load_state_dict(load_strategy(self._secure, state.strategy_state).state_dict())
        self.global_flat = from_bytes(chain.blobs.get(view.record.model_hash))
        self.epsilon_member_level = privacy_spent(self._secure, state.released) if state.released else \
            self.epsilon_member_level
        contributors = [chain.fed.index_of[a] for a in ev.settlement.contributors]
        losses = [u.train_loss for m in contributors if (u := self._work.result(m, view.key)) is not None] \
            if self._work is not None else []
        up, _ = _traffic(chain, chain.fed.index_of)
        proofs = None
        agg = next((a for a in chain.aggregators if a.address == view.record.aggregator), None)
        replayed = agg.last_output.replayed if agg is not None and agg.last_output is not None else None
        if self._secure.proofs and replayed is not None:
            names = {m: self.data.members[m].name for m in range(len(self.data.members))}
            final = replayed.final
            rejected = sorted({m for s in replayed.sessions for m in s.invalid})
            proofs = {"made": len(final.s) + len(final.invalid), "verified": len(final.s), "rejected": len(rejected),
                      "prove_seconds": round(self.clock.seconds.get("proofs", 0.0), 3),  # proving and verifying
                      "prove_cpu_seconds": round(self.proofs.prover.cpu_seconds - self._prove_cpu0, 3)
                      if self.proofs and self.proofs.prover else None,  # witnesses + proofs, load-independent
                      "linear_check": final.linear_check,
                      "excluded": [names[m] for m in sorted({*final.invalid, *final.unproved})],
                      "culprits": [names[m] for m in replayed.faulty if m not in rejected]}
        self.last_step = _RoundStep(
            participants=len(contributors), train_loss=float(np.mean(losses)) if losses else float("nan"),
            aggregated=bool(contributors), bytes_up=up - traffic[0], extra_bytes_down=0,
            contributors=np.array(contributors, dtype=np.int64),
            faulty=tuple(chain.fed.index_of[a] for a in ev.settlement.faulty), proofs=proofs)

    def _dropped(self, chain: ChainRounds, view: RoundView) -> int:
        return sum(self._drops(chain, int(m), view.key) for m in chain.cohort_members(view))

    def _replay(self, chain: ChainRounds, view: RoundView) -> None:
        """Recompute the finalized attempt (deterministic under the seed) to bring this process's state
        (strategy, privacy accounting) to where the process that posted it left it."""
        updates: list[UpdateMessage] = []
        if self._work is not None:
            members = [int(m) for m in chain.cohort_members(view) if not self._drops(chain, int(m), view.key)]
            for m in members:
                self._work.request(m, view)
            self._work.flush()
            updates = [u for m in members if (u := self._work.result(m, view.key)) is not None]
        _SimAggregation(self, chain).aggregate(view, updates)

    def _snapshot(self) -> tuple[Any, ...]:
        return (self.global_flat.clone(), copy.deepcopy(self.strategy.state_dict()),
                self.ddp.state_dict() if self.ddp is not None else None, self.epsilon_member_level)

    def _restore(self, snapshot: tuple[Any, ...]) -> None:
        flat, strategy, ddp, eps = snapshot
        self.global_flat = flat.clone()
        self.strategy.load_state_dict(copy.deepcopy(strategy))
        if self.ddp is not None:
            self.ddp.load_state_dict(ddp)
        self.epsilon_member_level = eps

    def _committed_keys(self) -> dict[str, object]:
        """What the task spec commits about its proof keys: the update circuit's verifying-key hash. Keys are
        per machine (a development setup, or imported ceremony keys); whoever verifies for the task checks its own
        against this hash first (`protocol.rules.task_rules`), so a proof made for another setup never counts."""
        if self.proofs is None or self.proofs.prover is None:
            return {}
        return {"zk_keys": {"update": self.proofs.prover.keys.vk_hash}}

    def _privacy_per_round(self, spec: dict[str, Any]) -> int | None:
        """The per-round privacy spend the task commits on chain with its budget (`rules.privacy_per_round`):
        member-level DP only; None (the budget itself) for record-level and no DP."""
        if self.cfg.privacy.dp != "member" or self.ddp is None:
            return None
        return privacy_per_round(spec, dim=self.dim)

    def _check_release(self, rnd: int, attempt: int, released: int) -> None:
        """Refuse to start attempt `attempt` of round `rnd` (from 0) when its release, after `released` earlier
        ones, would pass the allowance: before any member masks an input, not when the result is posted."""
        assert self.ddp is not None
        if released + attempt + 1 > release_allowance(self.cfg, self.ddp.plan, rnd):
            raise PrivacyBudgetExceeded(
                f"round {rnd} attempt {attempt + 1}: the earlier attempts used the spare releases the noise was "
                f"planned for ({self.cfg.privacy.spare_releases}); another release would pass the budget "
                "(raise --spare-releases for a run that may be redone more often)")

    def _on_chain_progress(self, chain: ChainRounds, stage: str, view: RoundView) -> None:
        if stage == "open" and self._secure is not None and self.ddp is not None:
            self._check_release(view.record.round_id, view.record.attempt, self.ddp.rounds_done)
        _kill_if_asked(view.record.round_id, stage, chain.ledger.backend)

    def centralized_accuracy(self) -> float:
        """The same model trained on the pooled training data with the federation's compute budget."""
        return centralized_baseline(self, self.examples_processed)

    # -- checkpoints -------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        # More rounds may be added to a finished run, unless privacy was planned or a task was created on a
        # ledger for a fixed number of rounds.
        fixed_rounds = self.cfg.privacy.dp != "none" or self.cfg.ledger.enabled
        free = {"out", "baseline"} | (set() if fixed_rounds else {"rounds"})
        if not self.cfg.data.own:  # runs on bundled data keep the fingerprint they had before [data] existed
            free.add("data")
        cfg = self.cfg.model_dump(exclude=free)
        return json.dumps(cfg, sort_keys=True)

    def _traffic(self, result: RunResult) -> dict[str, Any]:
        return traffic_report([(r.bytes_up, r.participants) for r in result.rounds], self.dim,
                              self.ddp.plan if self.ddp is not None else None)

    def _checkpoint(self, out: Path, result: RunResult) -> None:
        out.mkdir(parents=True, exist_ok=True)
        if not self._model_record_saved:  # what rebuilds the model and prepares its inputs (fedledger export)
            from fedledger.sim.export import save_model_record

            save_model_record(out, self)
            self._model_record_saved = True
        state = {
            "fingerprint": self._fingerprint(),
            "global": self.global_flat,
            "strategy": self.strategy.state_dict(),
            "rounds": [asdict(r) for r in result.rounds],
            "examples_processed": self.examples_processed,
            "ddp": self.ddp.state_dict() if self.ddp is not None else {},
            "epsilon_member_level": self.epsilon_member_level,
            "accountants": {i: a.state_dict() for i, a in self.accountants.items()},
        }
        tmp = out / (CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, out / CHECKPOINT)

    def _resume(self, out: Path, result: RunResult) -> int:
        path = out / CHECKPOINT
        if not path.exists():
            return 1
        try:
            state = torch.load(path, weights_only=True)
            saved = state["fingerprint"]
        except Exception as e:  # torch raises RuntimeError, EOFError, pickle or zip errors for a damaged file
            raise DataError(f"cannot resume: {path} is truncated or damaged ({type(e).__name__}); move it away to "
                            "start the run over, or choose another --out") from None
        if saved != self._fingerprint():
            raise ConfigError(
                f"{out} holds a run with a different configuration ({_config_change(saved, self._fingerprint())}); "
                f"choose another --out or delete {path}"
            )
        self.global_flat = state["global"]
        self.strategy.load_state_dict(state["strategy"])
        self.examples_processed = int(state["examples_processed"])
        if self.ddp is not None:
            self.ddp.load_state_dict(state["ddp"])
        self.epsilon_member_level = state["epsilon_member_level"]
        self.accountants = {int(i): MemberAccountant.from_state_dict(a) for i, a in state["accountants"].items()}
        result.rounds = [RoundRecord(**r) for r in state["rounds"]]
        result.resumed_from = len(result.rounds)
        return len(result.rounds) + 1


RESULTS = "results.json"


def write_results(out: Path, payload: dict[str, Any]) -> Path:
    """Replace `out/results.json` atomically: a reader sees the previous version or the new one, never a part."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS
    tmp = out / (RESULTS + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)
    return path


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for k, v in value.items():
        out |= _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def _config_change(saved: str, now: str) -> str:
    """The fields that differ between two checkpoint fingerprints, as `field: saved -> now`."""
    try:
        before, after = _flatten(json.loads(saved)), _flatten(json.loads(now))
    except ValueError:
        return "unreadable saved configuration"
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k, "(unset)") != after.get(k, "(unset)"))
    shown = [f"{k}: {before.get(k, '(unset)')!r} in the run, {after.get(k, '(unset)')!r} now" for k in changed[:3]]
    return "; ".join(shown) + (f"; and {len(changed) - 3} more" if len(changed) > 3 else "")


class _BatchedWork:
    """The trainers' local work in a simulation: every request of a pass trained in one batch."""

    def __init__(self, sim: Simulation, chain: ChainRounds) -> None:
        self.sim = sim
        self.task_id = chain.fed.task_id
        self.blobs = chain.blobs
        self.pending: dict[tuple[int, int], tuple[bytes, list[int]]] = {}
        self.done: dict[tuple[int, tuple[int, int]], UpdateMessage] = {}

    def request(self, member: int, view: RoundView) -> None:
        self.pending.setdefault(view.key, (view.global_model, []))[1].append(member)

    def result(self, member: int, key: tuple[int, int]) -> UpdateMessage | None:
        return self.done.get((member, key))

    def flush(self) -> bool:
        if not self.pending:
            return False
        sim = self.sim
        for key, (model, members) in sorted(self.pending.items()):
            start = from_bytes(self.blobs.get(model))  # each trainer fetches the global model by its hash
            with sim.clock.stage("training"):
                used, local = sim._train(key[0], np.sort(np.array(members, dtype=np.int64)), start, key[1])
            deltas = sim.attacks.tamper_updates(used, local.deltas, sim._first_updates)
            counts = sim._training_counts()
            for row, m in enumerate(int(x) for x in used):
                examples = int(sim.pool.counts[m] if counts is None else counts[row])
                self.done[(m, key)] = UpdateMessage(
                    self.task_id, key[0], key[1], m, examples, float(local.normalizers[row]),
                    float(local.losses[row]), deltas[row].numpy())
        self.pending.clear()
        return True


class _SimAggregation:
    """The aggregator's computation in a simulation: the strategy over the visible updates, or the whole
    member-level pipeline (privacy, SecAgg+, proofs) for the cohort when updates are hidden."""

    def __init__(self, sim: Simulation, chain: ChainRounds) -> None:
        self.sim = sim
        self.chain = chain

    def aggregate(self, view: RoundView, updates: Sequence[UpdateMessage]) -> RoundOutput:
        sim, chain = self.sim, self.chain
        sim._restore(sim._round_start)  # every attempt starts from the round's model and strategy state
        rnd, attempt = view.key
        sim.round_seed = view.record.seed
        if sim.ddp is not None:
            # ...but not from its privacy spend: every earlier attempt of the round counts as a release, whether
            # its result was rejected or its aggregator went silent after unmasking (an upper bound anyone can
            # recompute from the chain's attempt counter; a process that replays the round counts the same)
            sim.ddp.rounds_done += attempt
            if attempt:
                sim.epsilon_member_level = sim.ddp.plan.epsilon_after(sim.ddp.rounds_done)
            sim._check_release(rnd, attempt, sim.ddp.rounds_done - attempt)
            selected = chain.cohort_members(view)
            survives = np.array([not sim._drops(chain, int(m), view.key) for m in selected], dtype=bool)
            step = sim._compute(rnd, selected, survives, attempt)
        elif updates:
            members = np.array([u.member for u in updates], dtype=np.int64)
            local = LocalResult(torch.from_numpy(np.stack([u.update for u in updates])),
                                torch.tensor([u.train_loss for u in updates]),
                                np.array([round(u.normalizer) for u in updates], dtype=np.int64),
                                np.array([u.normalizer for u in updates], dtype=np.float64))
            step = sim._aggregate_visible(members, local, np.array([u.num_examples for u in updates]))
            step = replace(step, proofs=sim._training_proof_stats())
        else:
            step = _RoundStep(participants=0)
        sim.last_step = step
        sim._computed = view.key
        address = chain.fed.trainers
        spent = sim._epsilon()
        return RoundOutput(
            model=sim.global_flat.clone(),
            contributors=tuple(address[int(i)].address for i in (step.contributors if step.contributors is not None
                                                                 else [])),
            deltas=step.deltas.numpy() if step.deltas is not None else None,
            weights=step.weights,
            privacy_spent=to_fixed(spent) if spent is not None and sim.cfg.privacy.dp != "none" else 0,
            faulty=tuple(address[int(i)].address for i in step.faulty),
            deterministic=sim.entropy.deterministic,
        )


def _traffic(chain: ChainRounds, trainers: dict[str, int]) -> tuple[int, int]:
    """Bytes the trainers sent and received so far on the transport."""
    t = chain.transport
    return sum(t.bytes_sent.get(a, 0) for a in trainers), sum(t.bytes_received.get(a, 0) for a in trainers)


def _accuracy(model: nn.Module, held: tuple[torch.Tensor, torch.Tensor], flat: torch.Tensor) -> float:
    return evaluate(model, flat, *held)[0]


def _kill_if_asked(round_id: int, stage: str, backend: Any = None) -> None:
    """Fault injection for crash tests: FEDLEDGER_KILL_AT=ROUND:STAGE (open, submitted, rejected, finalized)
    kills this process with SIGKILL the first time the round reaches that stage; ROUND:STAGE:node kills the
    managed chain node this process started instead (a node that dies under a run)."""
    target = os.environ.get(KILL_ENV, "")
    if target == f"{round_id}:{stage}":
        os.environ.pop(KILL_ENV)
        os.kill(os.getpid(), signal.SIGKILL)
    node = getattr(backend, "node", None)
    if target == f"{round_id}:{stage}:node" and node is not None and node.proc is not None:
        os.environ.pop(KILL_ENV)
        node.proc.kill()
        node.proc.wait()


def centralized_baseline(sim: Simulation, examples: int, keep: dict[str, torch.Tensor] | None = None) -> float:
    """Train one model on all members' training data, processing as many examples as the federation did.

    Returns its accuracy on the global test set; `keep["model"]` receives its parameters if asked.
    """
    batch = sim.cfg.batch_size
    total = len(sim.pool.y)
    steps = max(1, examples // batch)
    recipe = LocalRecipe(**{**asdict(sim.recipe), "local_steps": steps, "proximal_mu": 0.0})
    model = build_model(sim.cfg.model, sim.data.input_shape, sim.data.num_classes, seed=sim.cfg.seed)
    trainer = trainer_of(sim.cfg, model, recipe)
    start = get_flat(model)
    cohort = Cohort(np.array([0]), np.array([total]), np.array([steps]))
    result = trainer.train(start, sim.pool.X, sim.pool.clean_y, cohort, torch_generator(sim.cfg.seed, "centralized"))
    if not torch.isfinite(result.deltas).all():
        raise TrainingError(f"the centralized baseline diverged (non-finite loss); lower --lr (now {sim.cfg.lr})")
    trained = start + result.deltas[0]
    if keep is not None:
        keep["model"] = trained
    return evaluate(model, trained, sim.test_X, sim.test_y)[0]


def central_dp_baseline(sim: Simulation) -> CentralDpResult:
    """The central model under the run's own privacy unit, epsilon, delta, steps and accountant
    (fedledger.privacy.baseline): three numbers with the non-private centralized one and the run's."""
    cfg, p = sim.cfg, sim.cfg.privacy
    model = build_model(cfg.model, sim.data.input_shape, sim.data.num_classes, seed=cfg.seed)
    noise = sim.entropy.torch(Purpose.DPSGD, label="central-dp-baseline")
    if p.dp == "record":
        return central_dpsgd(model, sim.pool.X, sim.pool.clean_y, sim.test_X, sim.test_y,
                             members_per_round=sim.cohort_size, batch_size=cfg.batch_size, epochs=cfg.local_epochs,
                             rounds=cfg.rounds, lr=cfg.lr, clip_norm=p.clip_norm, epsilon=p.epsilon, delta=p.delta,
                             generator=noise, momentum=cfg.momentum)
    strategy = build_strategy(cfg.strategy, server_lr=cfg.server_lr, trim=cfg.trim_fraction,
                              byzantine=cfg.krum_byzantine)
    return central_member_dp(model, sim.pool.X, sim.pool.clean_y, sim.test_X, sim.test_y,
                             offsets=sim.pool.offsets, counts=sim.pool.counts, recipe=sim.recipe, strategy=strategy,
                             rounds=cfg.rounds, releases=sim.planned_releases, clip_norm=p.clip_norm,
                             epsilon=p.epsilon, delta=p.delta, order_seed=derive_seed(cfg.seed, "central-dp"),
                             noise=noise, batched=cfg.batched,
                             steps=budget_steps(sim.full_steps, sim.budgets))
