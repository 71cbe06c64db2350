"""Proof of training in the simulation (`fedledger run --proofs training`).

Every selected member proves, in zero knowledge, that the update it sends is exactly E epochs of
full-batch gradient descent in fixed point from the public global model, with the task's
learning rate, on the data set it committed to when it joined (`fedledger.zk.training`). The
validators verify each proof with the verifying key only, from the proof bytes and the public
inputs they assemble themselves; members whose proof does not verify are left out of the
aggregate.

The model is the zoo's `logreg`: `Linear(F, C)`, flat layout `W[C, F]` row by row, then `b[C]`.
- C = 2 (two logits): the two-logit softmax is `sigmoid(z1 - z0)`, so the circuit proves the
  binary logistic regression of `v = W[1] - W[0]`, `c = b[1] - b[0]` (the zk layout: F weights,
  bias last). Gradient descent on the two logits moves `W[1]` by `-lr g` and `W[0]` by `+lr g`,
  i.e. `v` by `-2 lr g`: the proved learning rate is `2 lr`, and the proved update `x` of `v`
  maps back as `dW[1] = +x / 2`, `dW[0] = -x / 2` (same for the biases), exactly.
- C > 2: softmax regression, zk layout `[W[c], b[c]]` row by row, learning rate `lr`.
Fixed point: `frac_bits` fractional bits (default 8) for features, weights and the learning
rate; the public start model is `round(global * 2^f)`, which every validator computes from the
public global model. The sigmoid/softmax approximations are those of `zk.training`.

Data: on first sight each member commits to its rows (the data-quality commitment, a Poseidon
Merkle root, `zk.data_quality.dataset_root`). A member with more rows than the circuit holds
(`capacity`) commits to `k = ceil(n / capacity)` shards of consecutive rows (`np.array_split`),
one root per shard; each round the shard it trains on is drawn from a public seed, the round
and the member (`shard_index`), so every row is trained on with probability 1/k per round and
the member cannot pick its shard. A member whose data fails the task's data policy (a feature
outside the declared range, a label outside the label set) is **excluded** (refused at join,
never proves or contributes, listed under `refused`); with `data_quality="prove"` it also proves
the data-quality statement of every shard once, and validators verify it.

What the member sends per round: its fixed-point update `x`, the commitment randomness `rho`
and the proof. The validator recomputes the commitment from `(ctx, x, rho)` (ctx bound to task,
round and member), so the update it aggregates is the one the proof is about.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from fedledger.core.config import FederationConfig
from fedledger.core.errors import ConfigError, DataError
from fedledger.core.hashing import Usage, domain_hash
from fedledger.core.rng import ByteSource, Entropy, Purpose, SystemEntropy
from fedledger.learning.local import LocalResult
from fedledger.zk import InvalidProof, ProofStats, ProvingError
from fedledger.zk.backend import DevelopmentSetupWarning, Groth16Backend, KeySet, ProverPool
from fedledger.zk.data_quality import (
    DataPolicy,
    DataQualityProof,
    dataset_root,
    fixed_point,
    prove_data_quality,
    verify_data_quality,
)
from fedledger.zk.field import random_field
from fedledger.zk.training import TrainingProof, TrainSpec, train, training_inputs, verify_training
from fedledger.zk.update import (
    ProofContext,
    UpdateCommitment,
    UpdateSecret,
    UpdateSpec,
    chunk_commitment,
)

MODEL = "logreg"


def _chunk_for(params: int) -> int:
    return max(16, 1 << math.ceil(math.log2(params)))


@dataclass
class TrainingProofStats(ProofStats):
    """`{made, verified, rejected, prove_seconds}` plus the members refused at join (data policy)."""

    verify_seconds: float = 0.0
    refused: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            **super().to_json(),
            "verify_seconds": round(self.verify_seconds, 3),
            "rejected_members": list(self.rejected_members),
            "refused": list(self.refused),
        }


@dataclass(frozen=True)
class DataCommitment:
    """A member's committed data set: one Poseidon root per shard of at most `capacity` rows."""

    member: str
    n_rows: int
    roots: tuple[int, ...]
    shard_rows: tuple[int, ...]  # rows per shard
    quality_proofs: tuple[DataQualityProof, ...] = ()


@dataclass(frozen=True)
class TrainingClaim:
    """What a member sends in a round: its fixed-point update, the commitment opening and the proof."""

    member: str
    shard: int
    n_rows: int
    update: np.ndarray  # int64 [params], zk layout, x = w_E - w0 in fixed point
    rho: int
    proof: bytes
    prove_seconds: float = 0.0


@dataclass(frozen=True)
class TrainingRound:
    """Result of one round: the accepted members' float deltas in the simulation's flat layout."""

    members: np.ndarray  # int64 [accepted]: member ids whose proof verified, in input order
    deltas: torch.Tensor  # float32 [accepted, dim]
    rows: np.ndarray  # int64 [accepted]: rows each accepted member trained on (its shard)
    losses: torch.Tensor  # float32 [accepted]: cross-entropy of the start model on those rows
    stats: TrainingProofStats
    epochs: int

    def local_result(self) -> LocalResult:
        """The form `Simulation._train` returns: full-batch GD, one step per epoch."""
        steps = np.full(len(self.members), self.epochs, dtype=np.int64)
        return LocalResult(self.deltas, self.losses, steps, steps.astype(np.float64))


class TrainingProofs:
    """Proof of training for the zoo's `logreg` model; one instance per run (keys loaded once).

    `features`, `classes`: the data set's input width and label count; `lr` (float) and `epochs`
    the task's local recipe (full-batch gradient descent, one step per epoch); `capacity` rows per
    circuit (a power of two); `workers` prover processes (each loads the proving key once).
    """

    def __init__(
        self,
        *,
        features: int,
        classes: int,
        lr: float,
        epochs: int,
        task: str = "simulation",
        seed: int = 0,
        capacity: int = 64,
        frac_bits: int = 8,
        feature_bound: float = 32.0,
        data_quality: str = "check",
        workers: int = 1,
        backend: Groth16Backend | None = None,
        entropy: Entropy | None = None,
    ) -> None:
        if classes < 2:
            raise ConfigError("proof of training needs at least two classes")
        if data_quality not in ("check", "prove"):
            raise ConfigError("data_quality must be 'check' or 'prove'")
        if not float(epochs).is_integer() or epochs < 1:
            raise ConfigError(
                f"--proofs training runs whole epochs of full-batch GD: use an integer --local-epochs, not {epochs}"
            )
        self.features, self.classes, self.epochs = int(features), int(classes), int(epochs)
        self.lr, self.task, self.seed = float(lr), task, int(seed)
        self.entropy = SystemEntropy() if entropy is None else entropy  # commitment randomness (rho)
        self.frac = int(frac_bits)
        self.binary = self.classes == 2
        # two logits -> logistic regression of their difference, at twice the learning rate
        self.lr_fp = round((2 * self.lr if self.binary else self.lr) * (1 << self.frac))
        if self.lr_fp < 1:
            raise ConfigError(f"--lr {lr} is below the fixed-point resolution 2^-{self.frac}: use a larger --lr")
        params = self.features + 1 if self.binary else self.classes * (self.features + 1)
        if params > 4096:
            raise ConfigError(f"proof of training needs the model in one 4,096-entry chunk; this one has {params}")
        # features in [-feature_bound, feature_bound) in fixed point; 2^(bits) covers the range
        span = round(2 * feature_bound * (1 << self.frac))
        fbits = max(2, math.ceil(math.log2(span)))
        if fbits > 16:
            raise ConfigError("feature_bound * 2^frac_bits is too large for 16-bit features")
        self.lo = -(1 << (fbits - 1))
        self.hi = (1 << (fbits - 1)) - 1
        self.uspec = UpdateSpec(chunk_size=_chunk_for(params), entry_bits=16, noise_bits=12)
        self.spec = TrainSpec(
            capacity=capacity,
            features=self.features,
            epochs=self.epochs,
            update=self.uspec,
            model="logistic" if self.binary else "softmax",
            classes=self.classes,
            feature_bits=fbits,
            frac_bits=self.frac,
        )
        self.policy = DataPolicy(
            lo=(self.lo,) * self.features,
            hi=(self.hi,) * self.features,
            allowed=(1,) * self.classes,
            min_rows=1,
            min_count=(0,) * self.classes,
            max_count=(capacity,) * self.classes,
        )
        self.policy.check_against(self.spec.data)
        self.data_quality = data_quality
        self.backend = backend or Groth16Backend()
        self._keys: KeySet | None = None
        self._dq_keys: KeySet | None = None
        self.workers = max(1, int(workers))
        self._pool: ProverPool | None = None
        self.commitments: dict[str, DataCommitment] = {}
        self.refused: dict[str, str] = {}

    # -- construction from a run's config ---------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: FederationConfig, features: int, classes: int, **kw: object) -> TrainingProofs:
        """Check that the run is one this proves (else ConfigError saying what to use) and build it."""
        check_config(cfg)
        return cls(
            features=features,
            classes=classes,
            lr=cfg.lr,
            epochs=int(cfg.local_epochs),
            task=f"simulation/{cfg.dataset}/{cfg.seed}",
            seed=cfg.seed,
            **kw,  # type: ignore[arg-type]
        )

    @property
    def keys(self) -> KeySet:
        """The training circuit's keys (loaded, or set up for development, on first use)."""
        if self._keys is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DevelopmentSetupWarning)  # the run's results record the keys
                self._keys = self.backend.keys(self.spec.circuit)
        return self._keys

    @property
    def dq_keys(self) -> KeySet | None:
        if self.data_quality != "prove":
            return None
        if self._dq_keys is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DevelopmentSetupWarning)
                self._dq_keys = self.backend.keys(self.spec.data.circuit)
        return self._dq_keys

    @property
    def keys_record(self) -> dict[str, object]:
        return self.keys.record.to_json()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> TrainingProofs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> TrainingProofs:
        """Start the provers now (each loads the proving key once), so a round is not billed for it."""
        self._prover()
        return self

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds the provers spent on training proofs so far."""
        return self._pool.cpu_seconds if self._pool is not None else 0.0

    def _prover(self) -> ProverPool:
        if self._pool is None:
            self._pool = ProverPool(self.keys, self.workers)
        return self._pool

    # -- layouts ----------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Parameters of the simulation's model: W[C, F] then b[C]."""
        return self.classes * self.features + self.classes

    def start_model(self, global_flat: torch.Tensor) -> np.ndarray:
        """The public fixed-point start model w0 (zk layout) every validator derives from the global model."""
        g = np.asarray(global_flat.detach().cpu().numpy(), dtype=np.float64)
        if g.shape != (self.dim,):
            raise ConfigError(f"the global model has {g.size} parameters; logreg on this data has {self.dim}")
        w = g[: self.classes * self.features].reshape(self.classes, self.features)
        b = g[self.classes * self.features :]
        zk = np.concatenate([w[1] - w[0], [b[1] - b[0]]]) if self.binary else np.concatenate([w, b[:, None]], 1)
        return fixed_point(zk.reshape(-1), self.frac)

    def to_sim_delta(self, update: np.ndarray) -> np.ndarray:
        """The fixed-point update (zk layout) as a float delta in the simulation's flat layout."""
        u = np.asarray(update, dtype=np.float64) / (1 << self.frac)
        if self.binary:
            half = u / 2.0  # dW[1] = +x/2, dW[0] = -x/2
            w = np.stack([-half[:-1], half[:-1]])
            b = np.array([-half[-1], half[-1]])
        else:
            m = u.reshape(self.classes, self.features + 1)
            w, b = m[:, :-1], m[:, -1]
        return np.concatenate([w.reshape(-1), b])

    # -- data ---------------------------------------------------------------------------------------
    def _fixed_rows(self, X: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        xa = X.numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
        ya = y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        xa = xa.reshape(len(xa), -1)
        if xa.shape[1] != self.features:
            raise DataError(f"rows have {xa.shape[1]} features, the task has {self.features}")
        return fixed_point(xa, self.frac), ya.astype(np.int64)

    def shards(self, n_rows: int) -> list[np.ndarray]:
        """The member's shards: consecutive rows, k = ceil(n / capacity) near-equal parts."""
        k = max(1, -(-n_rows // self.spec.capacity))
        return np.array_split(np.arange(n_rows), k)

    def shard_index(self, rnd: int, member: str, n_shards: int) -> int:
        """The shard a member trains on in round `rnd`, drawn from public values only."""
        if n_shards == 1:
            return 0
        h = domain_hash(Usage.SEED, b"zk/training-shard", self.task.encode(), self.seed.to_bytes(8, "big", signed=True),
                        int(rnd).to_bytes(8, "big"), member.encode())
        return int.from_bytes(h, "big") % n_shards

    def policy_violation(self, feats: np.ndarray, labels: np.ndarray) -> str | None:
        """Why fixed-point rows fail the task's data policy, or None."""
        if len(labels) == 0:
            return "no training rows"
        if feats.min() < self.lo or feats.max() > self.hi:
            bad = int(np.argmax((feats < self.lo).any(1) | (feats > self.hi).any(1)))
            lim = self.hi / (1 << self.frac)
            return f"row {bad} has a feature outside the declared range [-{lim:.2f}, {lim:.2f}]"
        if labels.min() < 0 or labels.max() >= self.classes:
            return f"a label is outside the label set 0..{self.classes - 1}"
        return None

    def commit_data(
        self, member: str, X: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor
    ) -> DataCommitment | None:
        """Commit a member's data set once (later calls return the stored commitment).

        Returns None (and records the reason in `refused`) if the data fails the task's policy.
        """
        if member in self.commitments:
            return self.commitments[member]
        if member in self.refused:
            return None
        feats, labels = self._fixed_rows(X, y)
        reason = self.policy_violation(feats, labels)
        if reason is not None:
            self.refused[member] = reason
            return None
        roots, sizes, dq = [], [], []
        for idx in self.shards(len(labels)):
            roots.append(dataset_root(self.spec.data, self.policy, feats[idx], labels[idx]))
            sizes.append(len(idx))
            if self.dq_keys is not None:
                proof = prove_data_quality(self.backend, self.dq_keys, self.spec.data, self.policy, feats[idx],
                                           labels[idx])
                verify_data_quality(self.dq_keys, self.spec.data, self.policy, proof)  # the validators' check
                dq.append(proof)
        c = DataCommitment(member, len(labels), tuple(roots), tuple(sizes), tuple(dq))
        self.commitments[member] = c
        return c

    # -- member side ------------------------------------------------------------------------------
    def reference_update(self, w0: np.ndarray, X: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor,
                         *, lr_fp: int | None = None) -> np.ndarray:
        """The fixed-point update x = w_E - w0 (zk layout) the circuit defines, on these rows."""
        feats, labels = self._fixed_rows(X, y)
        return train(self.spec, w0, feats, labels, self.lr_fp if lr_fp is None else lr_fp) - np.asarray(w0)

    def _member_inputs(self, rnd: int, w0: np.ndarray, member: str, X: np.ndarray | torch.Tensor,
                       y: np.ndarray | torch.Tensor, *, lr_fp: int | None = None,
                       rng: ByteSource | None = None) -> tuple[TrainingClaim, dict[str, object]]:
        feats, labels = self._fixed_rows(X, y)
        shards = self.shards(len(labels))
        j = self.shard_index(rnd, member, len(shards))
        f, lab = feats[shards[j]], labels[shards[j]]
        lr = self.lr_fp if lr_fp is None else int(lr_fp)
        x = train(self.spec, w0, f, lab, lr) - w0
        rho = random_field(rng or self.entropy.stream(Purpose.COMMITMENT, round=int(rnd), label=member))
        ctx = ProofContext(self.task, int(rnd), member).element
        zeros = np.zeros(len(x), dtype=np.int64)  # no noise share: the update is sent in the clear
        commit = chunk_commitment(self.uspec, ctx, 0, rho, x, zeros)
        secret = UpdateSecret(x, zeros, 0, (rho,), (0,))
        posted = UpdateCommitment(ctx, len(x), (commit,), 0)
        inputs = training_inputs(self.spec, self.policy, w0, f, lab, lr, secret, posted)
        return TrainingClaim(member, j, len(lab), x, rho, b""), inputs

    def claim(self, rnd: int, w0: np.ndarray, member: str, X: np.ndarray | torch.Tensor,
              y: np.ndarray | torch.Tensor, *, lr_fp: int | None = None) -> TrainingClaim:
        """A member's proved update for round `rnd` from start model w0, trained on rows (X, y).

        `lr_fp` (fixed point) defaults to the task's; another value yields a valid proof of
        another statement, which validators reject (tests use it to model a cheating member).
        ProvingError if the rows or numbers leave the circuit's ranges.
        """
        c, inputs = self._member_inputs(rnd, w0, member, X, y, lr_fp=lr_fp)
        [(proof, secs)] = self._prover().prove_many([inputs])
        return TrainingClaim(c.member, c.shard, c.n_rows, c.update, c.rho, proof, secs)

    # -- validator side ---------------------------------------------------------------------------
    def verify(self, rnd: int, w0: np.ndarray, claim: TrainingClaim) -> None:
        """A validator's check: raises InvalidProof unless `claim.update` is E epochs of GD at the
        task's learning rate from w0 on the member's committed shard for this round."""
        c = self.commitments.get(claim.member)
        if c is None:
            raise InvalidProof(f"{claim.member} has no data commitment")
        expected = self.shard_index(rnd, claim.member, len(c.roots))
        if claim.shard != expected:
            raise InvalidProof(f"{claim.member} trained on shard {claim.shard}; round {rnd} draws shard {expected}")
        if claim.n_rows != c.shard_rows[expected]:
            raise InvalidProof(f"{claim.member} claims {claim.n_rows} rows; its shard has {c.shard_rows[expected]}")
        x = np.asarray(claim.update, dtype=np.int64)
        if x.shape != (self.spec.params,):
            raise InvalidProof(f"{claim.member}: update has shape {x.shape}, the model {self.spec.params}")
        lim = 1 << (self.uspec.entry_bits - 1)
        if x.min() < -lim or x.max() >= lim:
            raise InvalidProof(f"{claim.member}: update entry outside the {self.uspec.entry_bits}-bit range")
        ctx = ProofContext(self.task, int(rnd), claim.member).element
        commit = chunk_commitment(self.uspec, ctx, 0, claim.rho, x, np.zeros(len(x), dtype=np.int64))
        posted = UpdateCommitment(ctx, len(x), (commit,), 0)
        verify_training(self.keys, self.spec, c.roots[expected], self.policy.lo, claim.n_rows, self.lr_fp,
                        [int(v) for v in w0], posted, TrainingProof(claim.proof))

    # -- one round --------------------------------------------------------------------------------
    def round(
        self,
        rnd: int,
        global_flat: torch.Tensor,
        members: Sequence[int],
        rows: Sequence[tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]],
        names: Sequence[str] | None = None,
        *,
        claims: Mapping[int, TrainingClaim] | None = None,
    ) -> TrainingRound:
        """Commit (first time), train, prove (in parallel) and verify every member of the round.

        `rows[i]` are member `members[i]`'s training rows (X float32 [n, F], y int64 [n]);
        `names[i]` its name (default `member-<id>`). `claims` replaces what a member sends (tests
        and attack simulations); every claim, honest or not, goes through the same verification.
        """
        if len(rows) != len(members):
            raise DataError("one (X, y) per member is needed")
        names = [f"member-{int(m)}" for m in members] if names is None else list(names)
        stats = TrainingProofStats()
        w0 = self.start_model(global_flat)
        todo: list[int] = []
        inputs: list[dict[str, object]] = []
        prepared: dict[int, TrainingClaim] = {}
        for i, (m, name) in enumerate(zip(members, names, strict=True)):
            X, y = rows[i]
            if self.commit_data(name, X, y) is None:
                stats.refused.append(name)
                continue
            if claims is not None and int(m) in claims:
                continue
            try:
                c, inp = self._member_inputs(rnd, w0, name, X, y)
            except (DataError, ProvingError) as err:  # e.g. weights left the fixed-point range
                stats.record_verdict(name, InvalidProof(f"{name} cannot prove: {err}"))
                continue
            prepared[i] = c
            todo.append(i)
            inputs.append(inp)
        pool = self._prover() if inputs else None  # started (keys loaded) before the clock runs
        t0 = time.perf_counter()
        proofs = pool.prove_many(inputs) if pool is not None else []
        wall = time.perf_counter() - t0
        sent: dict[int, TrainingClaim] = {}
        for i, (proof, secs) in zip(todo, proofs, strict=True):
            c = prepared[i]
            sent[i] = TrainingClaim(c.member, c.shard, c.n_rows, c.update, c.rho, proof, secs)
            stats.made += 1
        stats.prove_seconds = wall  # wall time of the round's proving (parallel workers)
        for i, m in enumerate(members):
            if claims is not None and int(m) in claims and names[i] not in stats.refused:
                sent[i] = claims[int(m)]
                stats.made += 1
        accepted: list[int] = []
        deltas: list[np.ndarray] = []
        used: list[int] = []
        losses: list[float] = []
        for i in sorted(sent):
            c = sent[i]
            t1 = time.perf_counter()
            try:
                if c.member != names[i]:
                    raise InvalidProof(f"a claim of {c.member} was sent for {names[i]}")
                self.verify(rnd, w0, c)
            except InvalidProof as err:
                stats.record_verdict(names[i], err)
                stats.verify_seconds += time.perf_counter() - t1
                continue
            stats.verify_seconds += time.perf_counter() - t1
            stats.record_verdict(names[i], None)
            accepted.append(int(members[i]))
            deltas.append(self.to_sim_delta(c.update))
            used.append(c.n_rows)
            X, y = rows[i]
            losses.append(self._start_loss(global_flat, X, y, rnd, names[i]))
        d = torch.tensor(np.array(deltas), dtype=torch.float32) if deltas else torch.zeros(0, self.dim)
        return TrainingRound(np.array(accepted, dtype=np.int64), d, np.array(used, dtype=np.int64),
                             torch.tensor(losses, dtype=torch.float32), stats, self.epochs)

    def _start_loss(self, global_flat: torch.Tensor, X: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor,
                    rnd: int, member: str) -> float:
        """Cross-entropy of the global model on the shard the member trained on (the round's train loss)."""
        xa = torch.as_tensor(np.asarray(X), dtype=torch.float32).reshape(len(y), -1)
        ya = torch.as_tensor(np.asarray(y), dtype=torch.int64)
        shards = self.shards(len(ya))
        idx = torch.as_tensor(shards[self.shard_index(rnd, member, len(shards))])
        g = global_flat.float()
        w = g[: self.classes * self.features].reshape(self.classes, self.features)
        b = g[self.classes * self.features :]
        logits = xa[idx] @ w.T + b
        return float(torch.nn.functional.cross_entropy(logits, ya[idx]))


def check_config(cfg: FederationConfig) -> None:
    """ConfigError unless `cfg` describes training that the circuit proves."""
    if cfg.proofs != "training":
        raise ConfigError("TrainingProofs is for --proofs training")
    if cfg.model != MODEL:
        raise ConfigError(
            f"--proofs training proves logistic/softmax regression: use --model {MODEL} "
            f"(or --proofs update for --model {cfg.model})"
        )
    if cfg.privacy.dp != "none" or cfg.privacy.secagg:
        raise ConfigError(
            "--proofs training proves plain gradient descent; DP noise and secure aggregation are not in the "
            "circuit: use --dp none without --secagg (or --proofs update with --dp member)"
        )
    if cfg.optimizer != "sgd" or cfg.momentum or cfg.weight_decay or cfg.proximal_mu:
        raise ConfigError(
            "--proofs training proves plain gradient descent: use --optimizer sgd with momentum 0, "
            "weight_decay 0 and proximal_mu 0"
        )
    if cfg.local_steps is not None or not float(cfg.local_epochs).is_integer():
        raise ConfigError("--proofs training runs whole epochs of full-batch GD: use an integer --local-epochs "
                          "and no --local-steps")
    if cfg.heterogeneity:
        raise ConfigError("--proofs training proves every member's full epochs: use --heterogeneity 0")
