"""The economics simulation (`fedledger economics`): do honest, useful work and honest validation pay?

Many rounds of real federated training (the learning layer: digits, logistic regression, batched local
SGD) with every kind of party, scored only from what secure aggregation releases, paid by score, with
reputation updated by the rules of `protocol/incentives.py`. The parties:

- honest trainers of different data quality: a latent quality q in [q_min, 1] sets both how much of its
  data a member holds (size fraction 0.25 + 0.75 q) and its label noise (a fraction label_noise x (1 - q) of labels
  replaced by random other labels);
- free riders: hold data and commit its size, send a zero update;
- poisoners: train, then send the flipped update; half of them also scale it (x `poison_scale`), which
  breaks the L2 bound their update proof must show, so their proof is invalid (evidence: named faulty,
  excluded from the sum, slashed); the others flip within the bound (valid proof, only scoring finds them);
- validators (a committee, all of them every round), each with its own held-out shard: honest ones value
  the groups; lazy ones copy the previous round's consensus (commit-reveal stops them copying this
  round's) and accept every aggregate unchecked; dishonest ones report random scores and random votes;
- aggregators, one drawn per round by stake x reputation: a malicious one posts a tampered model, which
  the validators that recompute the aggregate reject; then it is slashed and another aggregator redoes
  the round.

Each round: the cohort is drawn (reputation-weighted); survivors' updates are clipped to the update bound
by honest members; the cohort is split into random groups of at least the SecAgg+ threshold
(`contribution.random_groups`), whose sums are what secure aggregation releases; each validator values
every union of groups on its own held-out data (the loss decrease of the previous model stepped by that
union's FedAvg mean) and computes Shapley over groups; the committee's consensus (`score_consensus`:
stake-weighted median) gives each group's value; the groups of all rounds so far, normalized per round,
are the rows of the regression `attribute_rounds` that estimates each member's value (a documented prior
from the committed sizes, shrinkage `shrinkage`). Trainers are paid `reward_shares_by_score` of their pool
by `combined_score` (the estimate gated by proof validity); validators by stake x agreement when their
agreement is at least `min_agreement`; the aggregator its share when the round finalizes. Every
participant pays a fee per round (`fee_rate` of an equal share of its role's pool: the transaction and
evaluation costs it imposes), so a party that is paid nothing ends below its stake.

No update is ever read individually by the scoring: only group sums, the public cohort and groups, proof
validity and committed sizes. DP noise is not added to the group sums here (the accounting of what
releasing them costs is reported, `group_release_cost`, for a reference plan).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from fedledger.core.errors import ConfigError
from fedledger.core.rng import numpy_rng, torch_generator
from fedledger.core.vectors import ParamLayout
from fedledger.data.federate import load_federated
from fedledger.learning.local import Cohort, LocalRecipe, evaluate, make_trainer
from fedledger.models.flat import get_flat
from fedledger.models.zoo import build_model
from fedledger.protocol.contribution import (
    Attribution,
    attribute_rounds,
    combined_score,
    group_release_cost,
    group_shapley,
    low_value_per_example,
    random_groups,
    shown_to_contribute,
    size_prior,
    value_bounds,
)
from fedledger.protocol.incentives import (
    DEFAULT_SCORE,
    MAX_SCORE,
    Event,
    Role,
    reputation_after,
    reward_shares_by_score,
    score_consensus,
    split_pool,
)
from fedledger.secagg.graph import SecAggParams

KINDS = ("honest", "free_rider", "poisoner", "honest_validator", "lazy_validator", "dishonest_validator",
         "honest_aggregator", "malicious_aggregator")
HONEST = frozenset({"honest", "honest_validator", "honest_aggregator"})


@dataclass(frozen=True, kw_only=True)
class EconomicsConfig:
    rounds: int = 60
    members: int = 20  # trainers
    validators: int = 10
    aggregators: int = 5
    adversarial: float = 0.2  # share of each role that is adversarial (trainers: half free riders, half poisoners)
    fraction: float = 1.0  # share of trainers drawn per round (reputation-weighted)
    dropout: float = 0.02
    seed: int = 0
    dataset: str = "digits"
    model: str = "logreg"
    lr: float = 0.05
    local_epochs: float = 1.0
    batch_size: int = 16
    server_lr: float = 1.0
    update_bound: float = 0.5  # L2 bound the update proof shows (the DP clip)
    poison_scale: float = 4.0
    quality_min: float = 0.2
    pool: int = 1_000_000  # reward units per finalized round
    role_weights: tuple[int, int, int] = (80, 10, 10)  # trainers, aggregator, validators
    fee_rate: float = 0.2  # fee per participation, as a share of an equal share of the role's pool
    stake: int = 200_000
    slash_fraction: float = 0.5
    min_agreement: float = 0.7
    shrinkage: float = 0.5
    group_size: int | None = None  # None: the SecAgg+ threshold of the cohort
    selection_floor: int = 200  # cohort draw weight: stake x (floor + reputation); chain: 5000
    validator_share: float = 0.5  # share of the pooled held-out rows each validator holds
    normalize: str = "abs"  # per-round scale of group values: abs (sum of |values|), none
    prior: str = "zero"  # regression prior: size (value per committed example x size) or zero
    round_weighting: bool = True  # start from weighing each round's rows by the cohort's improvement that round
    # one-sided level of the bounds on each member's value (`value_bounds`, Student t): a trainer is paid only if
    # the rounds show it contributed (`shown_to_contribute`: Holm over the cohort, family-wise error
    # 1 - confidence), by its lower bound
    confidence: float = 0.95
    label_noise: float = 0.4  # label noise of an honest member of quality q: label_noise x (1 - q)
    # flagged (`low_value_per_example`): upper bound of the value per committed example < flag_ratio x the median
    # member's, or an invalid proof
    flag_ratio: float = 0.5

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.members < 4 or self.validators < 3 or self.aggregators < 2:
            raise ConfigError("need rounds >= 1, members >= 4, validators >= 3 and aggregators >= 2")
        if not 0 <= self.adversarial < 0.5 or not 0 < self.fraction <= 1 or not 0 <= self.dropout < 0.5:
            raise ConfigError("need 0 <= adversarial < 0.5, 0 < fraction <= 1, 0 <= dropout < 0.5")
        if not 0.5 <= self.confidence < 1:
            raise ConfigError("need 0.5 <= confidence < 1")


@dataclass
class _Party:
    name: str
    kind: str
    role: Role
    stake: int
    reputation: int = DEFAULT_SCORE
    rewards: int = 0
    fees: int = 0
    slashed: int = 0
    history: list[int] = field(default_factory=list)

    @property
    def net(self) -> int:
        return self.rewards - self.fees - self.slashed


def _kinds(count: int, adversarial: float, bad: tuple[str, ...], good: str, rng: np.random.Generator) -> list[str]:
    n_bad = round(count * adversarial)
    per = [n_bad // len(bad) + (1 if i < n_bad % len(bad) else 0) for i in range(len(bad))]
    kinds = [k for k, c in zip(bad, per, strict=True) for _ in range(c)] + [good] * (count - n_bad)
    return [kinds[i] for i in rng.permutation(count)]


class _Evaluator:
    """Per-sample cross-entropy of many parameter vectors at once (vmap over models)."""

    def __init__(self, model: torch.nn.Module, X: np.ndarray, y: np.ndarray) -> None:
        self.model = model
        self.layout = ParamLayout.of(dict(model.named_parameters()))
        self.X = torch.as_tensor(X)
        self.y = torch.as_tensor(y)

        def losses(flat: torch.Tensor) -> torch.Tensor:
            logits = functional_call(model, (self.layout.unflatten(flat),), (self.X,))
            return F.cross_entropy(logits, self.y, reduction="none")

        self._many = vmap(losses)

    def __call__(self, flats: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self._many(torch.as_tensor(flats, dtype=torch.float32)).double().numpy()


def run_economics(cfg: EconomicsConfig, on_round: Callable[[int, dict[str, Any]], None] | None = None
                  ) -> dict[str, Any]:
    """Run the simulation; return what `write_economics` stores (module docstring)."""
    rng = numpy_rng(cfg.seed, "economics")
    data = load_federated(cfg.dataset, "iid", cfg.members, seed=cfg.seed, holdout_fraction=0.2)
    model = build_model(cfg.model, data.input_shape, data.num_classes, seed=cfg.seed)
    recipe = LocalRecipe(lr=cfg.lr, batch_size=cfg.batch_size, local_epochs=cfg.local_epochs)
    trainer = make_trainer(model, recipe)

    # ---- parties ---------------------------------------------------------------------------------
    t_kinds = _kinds(cfg.members, cfg.adversarial, ("free_rider", "poisoner"), "honest", rng)
    v_kinds = _kinds(cfg.validators, cfg.adversarial, ("lazy_validator", "dishonest_validator"),
                     "honest_validator", rng)
    a_kinds = _kinds(cfg.aggregators, cfg.adversarial, ("malicious_aggregator",), "honest_aggregator", rng)
    if "malicious_aggregator" not in a_kinds and cfg.adversarial > 0:
        a_kinds[int(rng.integers(cfg.aggregators))] = "malicious_aggregator"
    trainers = [_Party(f"t{i:03d}", k, Role.TRAINER, cfg.stake) for i, k in enumerate(t_kinds)]
    validators = [_Party(f"v{i:03d}", k, Role.VALIDATOR, cfg.stake) for i, k in enumerate(v_kinds)]
    aggregators = [_Party(f"a{i:03d}", k, Role.AGGREGATOR, cfg.stake) for i, k in enumerate(a_kinds)]
    honest_idx = [i for i, k in enumerate(t_kinds) if k == "honest"]
    quality = np.zeros(cfg.members)
    quality[honest_idx] = np.linspace(cfg.quality_min, 1.0, len(honest_idx))[rng.permutation(len(honest_idx))]
    poisoners = [i for i, k in enumerate(t_kinds) if k == "poisoner"]
    scaled = set(poisoners[::2])  # half the poisoners break the update bound (invalid proof)

    # ---- each trainer's data: size and label noise from its quality ----------------------------------
    xs, ys = [], []
    for i, member in enumerate(data.members):
        X, y = member.train.X, member.train.y.copy()
        q = quality[i] if t_kinds[i] == "honest" else 1.0  # adversaries hold full, clean data
        keep = max(4, round(len(y) * (0.25 + 0.75 * q)))
        pick = rng.permutation(len(y))[:keep]
        X, y = X[pick], y[pick]
        noisy = rng.random(keep) < cfg.label_noise * (1 - q)
        y[noisy] = (y[noisy] + rng.integers(1, data.num_classes, int(noisy.sum()))) % data.num_classes
        xs.append(X)
        ys.append(y)
    sizes = np.array([len(y) for y in ys], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    X_all = torch.as_tensor(np.concatenate(xs))
    y_all = torch.as_tensor(np.concatenate(ys))
    steps_all = recipe.full_steps(sizes)

    # ---- validators' held-out shards: the members' holdout splits, dealt out ---------------------------
    hx = np.concatenate([m.holdout.X for m in data.members])
    hy = np.concatenate([m.holdout.y for m in data.members])
    # each validator holds a random share `validator_share` of the pooled held-out rows (shares overlap when
    # validator_share > 1 / validators); boolean [V, n_holdout]
    holds = np.stack([rng.permutation(len(hy)) < max(1, round(cfg.validator_share * len(hy)))
                      for _ in range(cfg.validators)])
    evaluator = _Evaluator(model, hx, hy)
    test_X, test_y = torch.as_tensor(data.test.X), torch.as_tensor(data.test.y)

    global_flat = get_flat(model).detach().double().numpy()
    gen = torch_generator(cfg.seed, "economics", "minibatches")
    pool_split = split_pool(cfg.pool, {"trainers": cfg.role_weights[0], "aggregator": cfg.role_weights[1],
                                       "validators": cfg.role_weights[2]})
    rows: list[np.ndarray] = []
    outcomes: list[float] = []
    row_weights: list[float] = []
    faulty_ever: set[int] = set()
    invalid = np.zeros(cfg.members)
    drawn = np.zeros(cfg.members)
    prev_consensus: np.ndarray | None = None
    per_round: list[dict[str, Any]] = []
    estimate = np.zeros(cfg.members)
    fit: Attribution | None = None
    total_paid = {"trainers": 0, "aggregator": 0, "validators": 0}
    cohort_size = max(2, round(cfg.fraction * cfg.members))
    threshold = cfg.group_size or SecAggParams(n=cohort_size, length=1).threshold

    for r in range(cfg.rounds):
        prev_flat = global_flat
        # 1. cohort: reputation-weighted draw without replacement (Efraimidis-Spirakis keys), then dropouts
        weight = np.array([p.stake * (cfg.selection_floor + p.reputation) for p in trainers], dtype=np.float64)
        keys = rng.random(cfg.members) ** (1.0 / weight)
        cohort = np.sort(np.argsort(-keys)[:cohort_size])
        dropped = cohort[rng.random(len(cohort)) < cfg.dropout]
        alive = np.setdiff1d(cohort, dropped)
        for i in cohort:
            trainers[i].fees += round(cfg.fee_rate * pool_split["trainers"] / len(cohort))
            drawn[i] += 1

        # 2. local training (real), then each kind does what it does to its update
        result = trainer.train(torch.as_tensor(global_flat, dtype=torch.float32), X_all, y_all,
                               Cohort(offsets[alive], sizes[alive], steps_all[alive]), gen)
        deltas = result.deltas.double().numpy()
        norms = np.linalg.norm(deltas, axis=1)
        deltas *= np.minimum(1.0, cfg.update_bound / np.maximum(norms, 1e-12))[:, None]  # honest clipping
        proof_ok = np.ones(len(alive), dtype=bool)
        for j, i in enumerate(alive):
            if t_kinds[i] == "free_rider":
                deltas[j] = 0.0
            elif t_kinds[i] == "poisoner":
                deltas[j] = -deltas[j] * (cfg.poison_scale if i in scaled else 1.0)
                proof_ok[j] = np.linalg.norm(deltas[j]) <= cfg.update_bound * (1 + 1e-9)
        faulty = alive[~proof_ok]  # their own invalid proofs: named faulty, excluded, slashed
        invalid[faulty] += 1
        faulty_ever.update(int(i) for i in faulty)
        survivors = alive[proof_ok]
        deltas = deltas[proof_ok]

        # 3. secure aggregation over random groups: only the group sums (and weights) are released
        groups = random_groups(len(survivors), threshold, rng)
        weights = sizes[survivors].astype(np.float64)
        g_weight = np.array([weights[g].sum() for g in groups])
        g_sum = np.stack([(weights[g, None] * deltas[g]).sum(axis=0) for g in groups])
        released = g_sum.sum(axis=0) / g_weight.sum()  # = the cohort's FedAvg update
        honest_model = global_flat + cfg.server_lr * released

        # 4. the aggregator (stake x reputation) posts the model; validators recompute and vote
        attempts: list[dict[str, Any]] = []
        tried: set[int] = set()
        final_agg: int | None = None
        while final_agg is None:
            choices = [a for a in range(cfg.aggregators) if a not in tried]
            aw = np.array([aggregators[a].stake * (MAX_SCORE // 2 + aggregators[a].reputation) for a in choices],
                          dtype=np.float64)
            agg = choices[int(rng.choice(len(choices), p=aw / aw.sum()))]
            tried.add(agg)
            aggregators[agg].fees += round(cfg.fee_rate * pool_split["aggregator"])
            posted = honest_model
            if a_kinds[agg] == "malicious_aggregator":
                posted = honest_model + rng.normal(0, 0.05, honest_model.shape)
            accept = np.array([_vote(v_kinds[v], bool(np.allclose(posted, honest_model)), rng)
                               for v in range(cfg.validators)])
            stake_v = np.array([p.stake for p in validators], dtype=np.float64)
            finalized = stake_v[accept].sum() * 3 >= 2 * stake_v.sum()
            tampered = not np.allclose(posted, honest_model)
            attempts.append({"aggregator": aggregators[agg].name, "tampered": tampered, "finalized": bool(finalized)})
            if tampered and not finalized:
                # the recomputation is the evidence: the aggregator is slashed, accepting validators lose reputation
                cut = round(aggregators[agg].stake * cfg.slash_fraction)
                aggregators[agg].stake -= cut
                aggregators[agg].slashed += cut
                aggregators[agg].reputation = reputation_after(aggregators[agg].reputation, Role.AGGREGATOR,
                                                               Event.SLASH)
                for yes in np.flatnonzero(accept):  # accepting a model the evidence refutes: provable, slashed
                    voter = validators[int(yes)]
                    voter.reputation = reputation_after(voter.reputation, Role.VALIDATOR, Event.VOTE_AGAINST_EVIDENCE)
                    voter.reputation = reputation_after(voter.reputation, Role.VALIDATOR, Event.SLASH)
                    cut = round(voter.stake * cfg.slash_fraction)
                    voter.stake -= cut
                    voter.slashed += cut
                continue
            if tampered and finalized:  # a tampered model got through: record it (the targets would show it)
                honest_model = posted
            final_agg = agg
        global_flat = honest_model

        # 5. validators value every union of groups on their own shard; Shapley over groups; consensus
        k = len(groups)
        masks = ((np.arange(1 << k)[:, None] >> np.arange(k)[None, :]) & 1).astype(bool)
        # a union of groups is worth its part of the released update: prev + lr * (its groups' sums) / (all weight)
        coalition_models = prev_flat[None, :] + cfg.server_lr * (masks.astype(np.float64) @ g_sum) / g_weight.sum()
        per_sample = evaluator(coalition_models)  # [2^k, n_holdout]
        bits = 1 << np.arange(k)
        reports = np.zeros((cfg.validators, k))
        for v in range(cfg.validators):
            if v_kinds[v] == "honest_validator":
                losses = per_sample[:, holds[v]].mean(axis=1)

                def value(ms: np.ndarray, losses: np.ndarray = losses, bits: np.ndarray = bits) -> np.ndarray:
                    return losses[0] - losses[(ms.astype(np.int64) * bits).sum(axis=1)]  # coalition = bit index

                reports[v] = group_shapley(value, k, rng).values
            elif v_kinds[v] == "lazy_validator":
                reports[v] = prev_consensus[:k] if prev_consensus is not None and len(prev_consensus) >= k \
                    else np.zeros(k)
            else:
                scale = np.abs(prev_consensus).mean() if prev_consensus is not None else 0.1
                reports[v] = rng.normal(0, scale, k)
        stake_v = np.array([p.stake for p in validators], dtype=np.float64)
        cons = score_consensus(reports, stake_v)
        prev_consensus = cons.consensus

        # 6. attribution over all rounds' groups, normalized per round (each round weighs the same)
        scale = {"abs": np.abs(cons.consensus).sum(), "positive": np.maximum(cons.consensus, 0).sum(),
                 "none": 1.0}[cfg.normalize]
        # between-round weighting (a soft form of GTG-Shapley's between-round truncation): a round weighs by
        # how much the whole cohort improved the model, so rounds near convergence, where every value is
        # mostly noise, count little
        improvement = max(0.0, float(cons.consensus.sum())) if cfg.round_weighting else 1.0
        for g, val in zip(groups, cons.consensus, strict=True):
            row = np.zeros(cfg.members)
            row[survivors[g]] = 1.0
            rows.append(row)
            outcomes.append(val / scale if scale > 0 else 0.0)
            row_weights.append(improvement)
        x = np.array(rows)
        y = np.array(outcomes)
        wts = np.array(row_weights)
        wts = wts / wts.max() if wts.max() > 0 else np.ones_like(wts)
        prior = size_prior(x, y, sizes.astype(np.float64)) if cfg.prior == "size" else np.zeros(cfg.members)
        fit = attribute_rounds(x, y, prior=prior, shrinkage=cfg.shrinkage, weights=wts)
        estimate = fit.values
        validity = np.where(invalid > 0, 0.0, 1.0)
        # pay only members the rounds show to contribute (Holm over the round's survivors), by the lower bound:
        # a value the rounds cannot tell from zero earns nothing
        candidates = np.zeros(cfg.members, dtype=bool)
        candidates[survivors] = True
        shown = shown_to_contribute(fit, candidates & (validity > 0), 1 - cfg.confidence)
        lower, _ = value_bounds(fit, cfg.confidence)
        score = combined_score(np.where(shown, lower, 0.0), sizes.astype(np.float64), validity)

        # 7. pay the round: trainers by score (survivors only), validators by stake x agreement, aggregator
        t_pay = reward_shares_by_score(pool_split["trainers"], {trainers[i].name: float(score[i]) for i in survivors})
        for i in survivors:
            trainers[i].rewards += t_pay.get(trainers[i].name, 0)
        in_consensus = {validators[v].name: float(stake_v[v] * cons.agreement[v]) for v in range(cfg.validators)
                        if cons.agreement[v] >= cfg.min_agreement}
        v_pay = reward_shares_by_score(pool_split["validators"], in_consensus)
        for v in range(cfg.validators):
            validators[v].fees += round(cfg.fee_rate * pool_split["validators"] / cfg.validators)
            validators[v].rewards += v_pay.get(validators[v].name, 0)
        aggregators[final_agg].rewards += pool_split["aggregator"]
        total_paid["trainers"] += sum(t_pay.values())
        total_paid["validators"] += sum(v_pay.values())
        total_paid["aggregator"] += pool_split["aggregator"]

        # 8. reputation by event, every role
        # reputation follows the estimate itself (gated by validity), pay its lower confidence bound
        worth = combined_score(estimate, sizes.astype(np.float64), validity)
        top = max(float(np.quantile(worth[worth > 0], 0.9)) if (worth > 0).any() else 0.0, 1e-12)
        for i in survivors:
            trainers[i].reputation = reputation_after(trainers[i].reputation, Role.TRAINER, Event.USEFUL_WORK,
                                                      float(min(1.0, worth[i] / top)))
        for i in dropped:
            trainers[i].reputation = reputation_after(trainers[i].reputation, Role.TRAINER, Event.DROPOUT)
        for i in faulty:
            trainers[i].reputation = reputation_after(trainers[i].reputation, Role.TRAINER, Event.INVALID_PROOF)
            trainers[i].reputation = reputation_after(trainers[i].reputation, Role.TRAINER, Event.SLASH)
            cut = round(trainers[i].stake * cfg.slash_fraction)
            trainers[i].stake -= cut
            trainers[i].slashed += cut
        for v in range(cfg.validators):
            validators[v].reputation = reputation_after(validators[v].reputation, Role.VALIDATOR,
                                                        Event.CONSENSUS_VOTE, float(cons.agreement[v]))
        aggregators[final_agg].reputation = reputation_after(aggregators[final_agg].reputation, Role.AGGREGATOR,
                                                             Event.USEFUL_WORK, 1.0)
        for p in (*trainers, *validators, *aggregators):
            p.history.append(p.reputation)

        acc, loss = evaluate(model, torch.as_tensor(global_flat, dtype=torch.float32), test_X, test_y)
        record = {"round": r, "accuracy": acc, "loss": loss, "cohort": len(cohort), "dropped": len(dropped),
                  "faulty": [trainers[i].name for i in faulty], "groups": [len(g) for g in groups],
                  "aggregator_attempts": attempts, "consensus": cons.consensus.tolist(),
                  "agreement": {validators[v].name: round(float(cons.agreement[v]), 4)
                                for v in range(cfg.validators)},
                  "trainer_rewards": t_pay, "validator_rewards": v_pay}
        per_round.append(record)
        if on_round is not None:
            on_round(r, record)

    if fit is None:
        raise ConfigError("no round ran")
    return _summarize(cfg, trainers, validators, aggregators, quality, fit, invalid, sizes, per_round,
                      total_paid, threshold, cohort_size, model)


def _vote(kind: str, matches: bool, rng: np.random.Generator) -> bool:
    """A validator's vote on the posted model: honest ones recompute it, lazy ones accept, dishonest at random."""
    if kind == "honest_validator":
        return matches
    if kind == "lazy_validator":
        return True
    return bool(rng.random() < 0.5)


def _summarize(cfg: EconomicsConfig, trainers: list[_Party], validators: list[_Party], aggregators: list[_Party],
               quality: np.ndarray, fit: Attribution, invalid: np.ndarray, sizes: np.ndarray,
               per_round: list[dict[str, Any]], total_paid: dict[str, int], threshold: int, cohort_size: int,
               model: torch.nn.Module) -> dict[str, Any]:
    from scipy.stats import pearsonr, spearmanr

    parties = [*trainers, *validators, *aggregators]
    rep = np.array([p.reputation for p in trainers], dtype=np.float64)
    constant = bool(np.ptp(rep) == 0 or np.ptp(quality) == 0)  # undefined correlation: reported as null
    spearman = None if constant else float(spearmanr(rep, quality).statistic)
    pearson = None if constant else float(pearsonr(rep, quality).statistic)
    paid = sum(p.rewards for p in parties)
    honest_paid = sum(p.rewards for p in parties if p.kind in HONEST)
    trainer_paid = sum(p.rewards for p in trainers)
    honest_trainer_paid = sum(p.rewards for p in trainers if p.kind == "honest")
    estimate = fit.values
    lower, upper = value_bounds(fit, cfg.confidence)
    flagged = low_value_per_example(fit, sizes.astype(np.float64), invalid == 0, level=cfg.confidence,
                                    ratio=cfg.flag_ratio)
    bad = np.array([p.kind in ("free_rider", "poisoner") for p in trainers])
    tp = int((flagged & bad).sum())
    precision = tp / int(flagged.sum()) if flagged.any() else (1.0 if not bad.any() else 0.0)
    recall = tp / int(bad.sum()) if bad.any() else 1.0
    net_by_kind: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        group = [p for p in parties if p.kind == kind]
        if group:
            nets = [p.net for p in group]
            net_by_kind[kind] = {"count": len(group), "mean": float(np.mean(nets)), "min": float(min(nets)),
                                 "max": float(max(nets)), "all_below_stake": bool(max(nets) < 0)}
    agreement_by_kind = {kind: float(np.mean([r["agreement"][p.name] for r in per_round for p in validators
                                              if p.kind == kind]))
                         for kind in sorted({p.kind for p in validators})}
    adversarial_trainers_below = all(p.net < 0 for p in trainers if p.kind in ("free_rider", "poisoner"))
    # what releasing the group sums would cost under a reference member-level DP plan (epsilon 16, as bench)
    from fedledger.privacy.distributed import plan_distributed_dp

    d = sum(p.numel() for p in model.parameters())
    plan = plan_distributed_dp(epsilon=16.0, delta=1e-5, rounds=cfg.rounds, d=d, n=cohort_size, bits=24)
    group_sizes = [len(g) for g in np.array_split(np.arange(cohort_size), max(1, cohort_size // threshold))]
    cost = group_release_cost(plan, group_sizes)
    return {
        "settings": asdict(cfg) | {"group_min_size": threshold, "cohort_size": cohort_size},
        "reputation_quality_spearman": spearman,
        "reputation_quality_pearson": pearson,
        "honest_reward_share": honest_paid / paid if paid else 0.0,
        "honest_trainer_reward_share": honest_trainer_paid / trainer_paid if trainer_paid else 0.0,
        "net_by_kind": net_by_kind,
        "free_riders_and_poisoners_below_stake": adversarial_trainers_below,
        "flag_precision": precision,
        "flag_recall": recall,
        "validator_agreement_by_kind": agreement_by_kind,
        "final_accuracy": per_round[-1]["accuracy"],
        "rewards_paid": total_paid,
        "group_release_privacy": asdict(cost) | {"reference_plan": {"epsilon": 16.0, "delta": 1e-5,
                                                                    "cohort": cohort_size, "bits": 24}},
        "members": [
            {"name": p.name, "kind": p.kind, "role": p.role.name.lower(), "reputation": p.reputation,
             "rewards": p.rewards, "fees": p.fees, "slashed": p.slashed, "net": p.net,
             **({"quality": float(quality[i]), "estimate": float(estimate[i]),
                 "lower_bound": float(lower[i]) if np.isfinite(lower[i]) else None,
                 "upper_bound": float(upper[i]) if np.isfinite(upper[i]) else None, "size": int(sizes[i]),
                 "invalid_proofs": int(invalid[i]), "flagged": bool(flagged[i])} if p.role is Role.TRAINER else {}),
             "reputation_history": p.history}
            for i, p in enumerate(parties)
        ],
        "rounds": per_round,
    }


def write_economics(out: Path, result: dict[str, Any]) -> tuple[Path, Path]:
    """DIR/economics.json and DIR/economics.png (reputation over rounds by kind, net by kind, reputation
    against quality, accuracy)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "economics.json"
    path.write_text(json.dumps(result, indent=1, allow_nan=False))
    return path, economics_plot(out / "economics.png", result)


def economics_plot(path: Path, result: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    colors = {kind: cmap(i) for i, kind in enumerate(KINDS)}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), dpi=100)
    ax = axes[0, 0]
    seen: set[str] = set()
    for m in result["members"]:
        label = m["kind"] if m["kind"] not in seen else None
        seen.add(m["kind"])
        ax.plot(m["reputation_history"], color=colors[m["kind"]], alpha=0.6, lw=1, label=label)
    ax.set(xlabel="round", ylabel="reputation", title="reputation by kind")
    ax.legend(fontsize=7, ncol=2)
    ax = axes[0, 1]
    kinds = list(result["net_by_kind"])
    ax.bar(range(len(kinds)), [result["net_by_kind"][k]["mean"] for k in kinds], color=[colors[k] for k in kinds])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(kinds)), [k.replace("_", "\n") for k in kinds], fontsize=7)
    ax.set(ylabel="mean net tokens", title="net change per kind (rewards - fees - slashes)")
    ax = axes[1, 0]
    trainers = [m for m in result["members"] if m["role"] == "trainer"]
    for m in trainers:
        ax.scatter(m["quality"], m["reputation"], color=colors[m["kind"]], s=20)
    ax.set(xlabel="true data quality", ylabel="final reputation",
           title=f"Spearman {result['reputation_quality_spearman'] or float('nan'):.3f}, "
                 f"Pearson {result['reputation_quality_pearson'] or float('nan'):.3f}")
    ax = axes[1, 1]
    ax.plot([r["accuracy"] for r in result["rounds"]])
    ax.set(xlabel="round", ylabel="test accuracy", ylim=(0, 1),
           title=f"honest share of rewards {result['honest_reward_share']:.3f}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def summary_lines(result: dict[str, Any]) -> list[str]:
    def num(x: float | None) -> str:
        return "undefined" if x is None else f"{x:.3f}"

    lines = [f"reputation vs quality: Spearman {num(result['reputation_quality_spearman'])}, "
             f"Pearson {num(result['reputation_quality_pearson'])}",
             f"honest share of rewards {result['honest_reward_share']:.3f} "
             f"(trainers {result['honest_trainer_reward_share']:.3f})",
             f"flags: precision {result['flag_precision']:.3f}, recall {result['flag_recall']:.3f}; "
             f"final accuracy {result['final_accuracy']:.3f}"]
    for kind, v in result["net_by_kind"].items():
        lines.append(f"  {kind:<22} n={v['count']:<3} mean net {v['mean']:>12.0f}  "
                     f"{'all below stake' if v['all_below_stake'] else ''}")
    return lines


__all__ = ["KINDS", "EconomicsConfig", "economics_plot", "run_economics", "summary_lines", "write_economics"]
