"""`LedgerStrategy`: a Flower strategy wrapper that records every Flower round on fedledger's ledger.

Flower users keep their ClientApp and their strategy (`flwr.serverapp.strategy.FedAvg`, `FedProx`,
`FedMedian`); the wrapper delegates sampling, configuration and aggregation to it and, after each
`aggregate_train`, runs the round through fedledger's roles on the chain (the same role code as
`fedledger run`):

1. the task owner opens the round on the `TaskManager` contract (chain randomness draws the aggregator and
   the validator committee; the cohort is every Flower node);
2. each node that replied is a registered trainer: its reply's update (the returned arrays minus the global
   model) and example count go out as its signed `UpdateMessage`; nodes Flower did not sample, or whose
   reply failed, are absent from the round;
3. the drawn aggregator posts the model the *Flower strategy* computed, with the evidence (the signed
   updates, the weights, the previous model) in the content-addressed blob store;
4. the validator committee recomputes that model from the signed updates (FedAvg/FedProx: the example-
   weighted mean; FedMedian: the coordinate-wise median) and votes; a model that is not the strategy's
   aggregate of the signed updates is rejected and its aggregator slashed; rewards and reputation settle.

The round's model hash, participants, aggregate and the Flower metrics go to `OUT/results.json` after each
round, so `fedledger audit OUT`, `fedledger report OUT` and `fedledger watch OUT` work on it.

Trust, stated plainly: the ServerApp process plays every fedledger role here (as `fedledger.sim` does), so
it holds the trainers' signing keys (`OUT/keys/`). The ledger then attests that each finalized model is the
strategy's aggregate of the updates the ServerApp received, checked by a committee and re-checkable by
anyone from the chain and the blobs; it does not attest that a Flower client authored its update.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, FedMedian, FedProx, Result, Strategy

from fedledger.core.blobstore import BlobStore
from fedledger.core.config import build_config
from fedledger.core.errors import ConfigError, IntegrityError
from fedledger.core.hashing import hex32
from fedledger.core.rng import SystemEntropy
from fedledger.core.vectors import from_bytes, to_bytes
from fedledger.learning import build_strategy
from fedledger.learning.strategies import RoundUpdates
from fedledger.models import build_model, get_flat
from fedledger.protocol.messages import UpdateMessage
from fedledger.protocol.roles import RoundOutput, RoundView, StageClock
from fedledger.protocol.signing import data_commitment
from fedledger.sim.attacks import AttackPlan
from fedledger.sim.federation import write_results
from fedledger.sim.identities import member_identities, role_identities
from fedledger.sim.onchain import (
    AGGREGATOR_BASE,
    AGGREGATORS,
    FEDERATION_FILE,
    OWNER_ACCOUNT,
    VALIDATOR_BASE,
    ChainRounds,
)

#: the Flower strategies whose aggregate validators recompute from the signed updates, and fedledger's name
#: for the same rule (exact classes: FedAdam, FedYogi, ... subclass FedAvg but carry server state)
SUPPORTED: dict[type, str] = {FedAvg: "fedavg", FedProx: "fedavg", FedMedian: "median"}


@dataclass
class _Replies:
    """The Flower replies of the round in play, by fedledger member number."""

    round_id: int
    updates: dict[int, tuple[np.ndarray, int, float]]  # member -> (delta, examples, train loss)
    model: torch.Tensor  # the Flower strategy's aggregate (flat)


class _FlowerWork:
    """`LocalWork` of the trainer roles: each member's update is its Flower node's reply."""

    def __init__(self, owner: LedgerStrategy) -> None:
        self.owner = owner

    def request(self, member: int, view: RoundView) -> None:
        pass  # the Flower round already ran: there is nothing to start

    def result(self, member: int, key: tuple[int, int]) -> UpdateMessage | None:
        replies = self.owner._replies
        assert replies is not None and replies.round_id == key[0]
        delta, examples, loss = replies.updates[member]
        return UpdateMessage(self.owner._task_id, key[0], key[1], member, examples, 1.0, loss, delta)


class _FlowerAggregation:
    """The aggregator's computation: the model is the one the Flower strategy produced from the same replies;
    the evidence holds the signed updates and the weights the validators recompute it with."""

    def __init__(self, owner: LedgerStrategy) -> None:
        self.owner = owner

    def aggregate(self, view: RoundView, updates: Sequence[UpdateMessage]) -> RoundOutput:
        replies = self.owner._replies
        assert replies is not None
        address = {m: a for a, m in self.owner._chain.fed.index_of.items()}
        rows = np.stack([u.update for u in updates]).astype(np.float32)
        signed = RoundUpdates(torch.from_numpy(rows), np.array([u.num_examples for u in updates]),
                              np.ones(len(updates)))
        weights = self.owner._fresh_strategy().linear_weights(signed)
        return RoundOutput(model=replies.model, contributors=tuple(address[u.member] for u in updates),
                           deltas=rows if weights is not None else None, weights=weights)


class LedgerStrategy(Strategy):
    """Wrap a Flower strategy so that every round is finalized on fedledger's ledger with its evidence.

    `model` is a fedledger model spec (`path/to/file.py:factory` or a zoo name) called as
    `factory(input_shape, num_classes)`: the task spec on chain names it, so an auditor rebuilds the initial
    model from the chain alone. Start the strategy from `initial_arrays()` (the model under `seed`).
    `max_examples`: the example count each node commits to when it registers (an update claiming more is
    refused). `nodes`: how many Flower nodes become the ledger's members (registered when `start` begins, which
    waits for them; default: the wrapped strategy's `min_available_nodes`, then every node connected once their
    number stops changing). `validator_eval(model) -> accuracy` is the validators' held-out check, used only for a model
    they cannot recompute (none of the supported strategies); by default they have no held-out data.
    """

    def __init__(self, strategy: Strategy, out: str | Path, *, model: str, input_shape: Sequence[int],
                 num_classes: int, seed: int = 0, chain: str = "auto", committee: int = 3,
                 max_examples: int = 1_000_000, claim_rewards: bool = True, nodes: int | None = None,
                 validator_eval: Callable[[torch.nn.Module], float] | None = None,
                 accuracy_key: str = "eval_acc", loss_key: str = "eval_loss") -> None:
        if type(strategy) not in SUPPORTED:
            names = ", ".join(sorted({t.__name__ for t in SUPPORTED}))
            raise ConfigError(f"LedgerStrategy records {names} rounds, whose aggregate validators recompute from the "
                              f"signed updates; {type(strategy).__name__} is not one of them")
        self.inner = strategy
        self.out = Path(out).absolute()
        self.strategy_name = SUPPORTED[type(strategy)]
        self.model_spec, self.input_shape, self.num_classes = model, tuple(int(d) for d in input_shape), num_classes
        self.seed, self.chain_url, self.committee = seed, chain, committee
        self.max_examples, self.claim_rewards = max_examples, claim_rewards
        self.nodes = nodes
        self.validator_eval = validator_eval
        self.accuracy_key, self.loss_key = accuracy_key, loss_key
        self._template = build_model(model, self.input_shape, num_classes, seed=seed)
        if any(True for _ in self._template.buffers()):
            raise ConfigError("LedgerStrategy records models without buffers (no BatchNorm running statistics): the "
                              "ledger's model is the vector of trainable parameters")
        self._names = [n for n, _ in self._template.named_parameters()]
        self._chain: Any = None
        self._task_id = 0
        self._members: dict[int, int] = {}  # Flower node id -> fedledger member number
        self._replies: _Replies | None = None
        self._global: torch.Tensor | None = None
        self._rounds: list[dict[str, Any]] = []
        self._clock = StageClock()
        self._started = 0.0

    # -- arrays <-> the ledger's flat model ----------------------------------------------------------
    def initial_arrays(self) -> ArrayRecord:
        """The model every round chain starts from: `model` built under `seed` (the task spec on chain says so)."""
        return ArrayRecord(self._template.state_dict())

    def flat(self, arrays: ArrayRecord) -> torch.Tensor:
        state = arrays.to_torch_state_dict()
        missing = [n for n in self._names if n not in state]
        if missing:
            raise ConfigError(f"the arrays do not hold the model's parameters {missing[:3]} (is `model` the "
                              "ClientApp's model?)")
        shapes = {n: p.shape for n, p in self._template.named_parameters()}
        for n in self._names:
            if tuple(state[n].shape) != tuple(shapes[n]):
                raise ConfigError(f"parameter {n} has shape {tuple(state[n].shape)}, the model's is {tuple(shapes[n])}")
        return torch.cat([state[n].detach().reshape(-1).to(torch.float32) for n in self._names])

    def arrays(self, flat: torch.Tensor) -> ArrayRecord:
        state = dict(self._template.state_dict())
        offset = 0
        for name, p in self._template.named_parameters():
            state[name] = flat[offset:offset + p.numel()].reshape(p.shape).clone()
            offset += p.numel()
        return ArrayRecord(state)

    # -- the chain --------------------------------------------------------------------------------
    def spec(self, rounds: int) -> dict[str, Any]:
        """The task spec the chain records (by hash): fedledger's rules for a visible round of this strategy."""
        cfg = build_config({"clients": len(self._members), "fraction": 1.0, "rounds": rounds,
                            "model": self.model_spec, "strategy": self.strategy_name, "seed": self.seed,
                            "ledger": {"enabled": True, "chain": self.chain_url, "committee": self.committee,
                                       "claim_rewards": self.claim_rewards}})
        return {**cfg.model_dump(exclude={"out", "baseline"}), "input_shape": list(self.input_shape),
                "num_classes": self.num_classes, "flower": {"strategy": type(self.inner).__name__}}

    def _fresh_strategy(self) -> Any:
        return build_strategy(self.strategy_name, server_lr=None)

    def _open(self, node_ids: Iterable[int], rounds: int) -> None:
        if (self.out / "chain" / FEDERATION_FILE).exists():
            raise ConfigError(f"{self.out} already holds a ledger run; give the LedgerStrategy a new output directory")
        self._members = {n: i for i, n in enumerate(sorted(node_ids))}
        n = len(self._members)
        spec = self.spec(rounds)
        entropy = SystemEntropy()
        identities = member_identities(entropy, n, self.out)
        accounts = [*(AGGREGATOR_BASE + i for i in range(AGGREGATORS)),
                    *(VALIDATOR_BASE + i for i in range(max(self.committee, 3))), OWNER_ACCOUNT]
        role_ids = role_identities(entropy, accounts, self.out)
        model = build_model(self.model_spec, self.input_shape, self.num_classes, seed=self.seed)

        def held_out(flat: torch.Tensor) -> float:
            if self.validator_eval is None:
                return math.nan  # no held-out data: the accuracy rule (unrecomputable models only) cannot fire
            from fedledger.models import set_flat

            set_flat(model, flat)
            return float(self.validator_eval(model))

        chain = ChainRounds.connect(
            self.chain_url, self.out, members=n, committee=self.committee, rounds=rounds, privacy_budget=None,
            spec=spec, trainer_keys=[identities[i].public_bytes for i in range(n)], evaluators=[held_out],
            clock=self._clock, role_keys={a: ident.public_bytes for a, ident in role_ids.items()},
            data_commitments=[data_commitment(self.max_examples, f"flower node {node}".encode())
                              for node in sorted(self._members)])
        try:
            chain.initial_model = chain.store(get_flat(self._template))
            by_address = {t.address: identities[i] for i, t in enumerate(chain.fed.trainers)}
            by_address |= {chain.ledger.dev(a).address: ident for a, ident in role_ids.items()}
            chain.build_roles(aggregation=_FlowerAggregation(self), work=_FlowerWork(self), attacks=AttackPlan(),
                              drops=self._absent, identities=by_address, strategy=self._fresh_strategy)
        except BaseException:
            chain.close()
            raise
        self._chain, self._task_id = chain, chain.fed.task_id

    def _members_of(self, grid: Grid, timeout: float) -> list[int]:
        """The node ids that become members: wait (as Flower's sampling does) until `nodes` (or the strategy's
        `min_available_nodes`) are connected and their number has stopped changing."""
        wanted = self.nodes or int(getattr(self.inner, "min_available_nodes", 1))
        deadline = time.monotonic() + timeout
        seen: list[int] = []
        while True:
            now = sorted(grid.get_node_ids())
            if len(now) >= wanted and now == seen:
                break
            if time.monotonic() > deadline:
                raise ConfigError(f"only {len(now)} Flower nodes connected within {timeout:g} s; the ledger needs "
                                  f"{wanted} to register as members")
            seen = now
            time.sleep(0.2)
        return now[:self.nodes] if self.nodes else now

    def _absent(self, member: int, key: tuple[int, int]) -> bool:
        """A member whose Flower node did not reply this round sends nothing."""
        return self._replies is None or member not in self._replies.updates

    # -- Flower's Strategy interface -----------------------------------------------------------------
    def start(self, grid: Grid, initial_arrays: ArrayRecord, num_rounds: int = 3, timeout: float = 3600,
              train_config: ConfigRecord | None = None, evaluate_config: ConfigRecord | None = None,
              evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None) -> Result:
        start = self.flat(initial_arrays)
        if not torch.equal(start, get_flat(self._template)):
            raise ConfigError("initial_arrays are not the model the task spec names: start from "
                              "LedgerStrategy.initial_arrays() (the model built under `seed`)")
        self._global = start
        self._started = time.perf_counter()
        self._open(self._members_of(grid, timeout), num_rounds)
        try:
            result = super().start(grid, initial_arrays, num_rounds, timeout, train_config, evaluate_config,
                                   evaluate_fn)
            if self.claim_rewards:
                self._chain.claim_rewards()
            self._write()
        finally:
            self._chain.close()
        return result

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        round_start = time.perf_counter()
        replies = list(replies)
        assert self._global is not None
        key = getattr(self.inner, "arrayrecord_key", "arrays")
        weight_key = getattr(self.inner, "weighted_by_key", "num-examples")
        updates: dict[int, tuple[np.ndarray, int, float]] = {}
        for msg in replies:
            if msg.has_error():
                continue
            node = msg.metadata.src_node_id
            if node not in self._members:
                raise ConfigError(f"Flower round {server_round}: a reply from node {node}, which connected after the "
                                  "ledger registered its members (give LedgerStrategy nodes=N for N nodes)")
            content = msg.content
            record: Mapping[str, Any] = (content.metric_records.get("metrics")
                                         or next(iter(content.metric_records.values()), {}))
            count = _scalar(record.get(weight_key))
            if not (math.isfinite(count) and count >= 1):
                raise ConfigError(f"Flower round {server_round}: the reply of node {node} has no positive "
                                  f"{weight_key!r} metric, which weighs its update")
            examples = int(count)
            loss = _scalar(record.get("train_loss"))
            delta = (self.flat(content.array_records[key]) - self._global).numpy().astype(np.float32)
            updates[self._members[node]] = (delta, examples, loss)
        # read the replies before the strategy aggregates them: FedMedian pops the arrays out of the messages
        arrays, metrics = self.inner.aggregate_train(server_round, replies)
        if arrays is None:
            raise IntegrityError(f"Flower round {server_round}: the strategy aggregated no replies, so there is no "
                                 "round to record")
        self._replies = _Replies(server_round, updates, self.flat(arrays))
        txs = self._chain.tx_count()
        view = self._chain.run(server_round, len(self._members))
        finalized = from_bytes(self._chain.blobs.get(view.record.model_hash))  # the chain is the truth
        self._global = finalized
        losses = [u[2] for u in updates.values() if math.isfinite(u[2])]
        d = int(finalized.numel())
        self._rounds.append({
            "round": server_round, "accuracy": math.nan, "loss": math.nan,
            "participants": len(updates), "dropped": len(self._members) - len(updates),
            "bytes_up": 4 * d * len(updates), "bytes_down": 4 * d * len(replies),
            "seconds": time.perf_counter() - round_start, "train_loss": float(np.mean(losses)) if losses else math.nan,
            "model_hash": hex32(view.record.model_hash), "stages": self._clock.take(),
            "chain_txs": self._chain.tx_count() - txs, "finalized": True, "attempts": view.record.attempt + 1,
            "flower": {"nodes": sorted(n for n, m in self._members.items() if m in updates),
                       "train_metrics": dict(metrics) if metrics is not None else {}},
        })
        self._write()
        return self.arrays(finalized), metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        metrics = self.inner.aggregate_evaluate(server_round, replies)
        if metrics is not None and self._rounds and self._rounds[-1]["round"] == server_round:
            rec = self._rounds[-1]
            rec["accuracy"] = _scalar(metrics.get(self.accuracy_key))
            rec["loss"] = _scalar(metrics.get(self.loss_key))
            rec["flower"]["evaluate_metrics"] = dict(metrics)
            self._write()
        return metrics

    def summary(self) -> None:
        self.inner.summary()

    # -- results.json ---------------------------------------------------------------------------------
    def _write(self) -> None:
        spec = self.spec(len(self._rounds) or 1) if self._chain is None else None
        # local training, data and sampling are the Flower apps' own: leave fedledger's defaults for them out
        local = {"optimizer", "local_epochs", "local_steps", "batch_size", "lr", "momentum", "weight_decay",
                 "proximal_mu", "heterogeneity", "dropout", "max_samples", "holdout_fraction", "test_fraction", "data"}
        config = {k: v for k, v in (spec or self._chain_spec()).items() if k not in local}
        config |= {"dataset": "flower", "partition": "the Flower nodes' own data",
                   # the share Flower samples (the chain's cohort is every node: the spec's fraction is 1)
                   "fraction": getattr(self.inner, "fraction_train", config.get("fraction"))}
        last = self._rounds[-1] if self._rounds else None
        payload = {
            "config": config,
            "rounds": self._rounds,
            "final_accuracy": last["accuracy"] if last else math.nan,
            "final_model_hash": last["model_hash"] if last else "",
            "privacy": {"unit": "none"},
            "ledger": self._chain.summary() if self._chain is not None else None,
            "flower": {"strategy": type(self.inner).__name__, "nodes": {str(n): m for n, m in self._members.items()},
                       "seconds": time.perf_counter() - self._started},
        }
        write_results(self.out, payload)

    def _chain_spec(self) -> dict[str, Any]:
        task = self._chain.ledger.task(self._task_id)
        return json.loads(self._chain.blobs.get(task.spec_hash))


def _scalar(value: Any) -> float:
    """A Flower metric as a float (NaN when absent or not a scalar)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def model_address(flat: torch.Tensor) -> str:
    """The content address the ledger records for a flat model."""
    return hex32(BlobStore.address(to_bytes(flat)))
