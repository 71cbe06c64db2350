"""Streaming rounds: a cohort trained and summed chunk by chunk gives the same model, bit for bit, as
the whole cohort's stacked updates, for every chunk size; memory is bounded by the chunk."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.core.config import build_config
from fedledger.core.rng import torch_generator
from fedledger.learning import (
    BatchedTrainer,
    Cohort,
    LocalRecipe,
    RoundSum,
    RoundUpdates,
    SequentialTrainer,
    budget_steps,
    build_strategy,
    streams,
    train_and_aggregate,
    weighted_sum,
)
from fedledger.models import build_model, get_flat
from fedledger.sim import Simulation


def _federation(members: int = 11, features: int = 6, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    g = np.random.default_rng(seed)
    counts = g.integers(1, 40, size=members)  # some members hold fewer samples than a batch
    X = torch.from_numpy(g.normal(size=(int(counts.sum()), features)).astype(np.float32))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long()
    return X, y, counts


def _cohort(counts: np.ndarray, recipe: LocalRecipe, budgets: np.ndarray | None = None) -> Cohort:
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    steps = recipe.full_steps(counts)
    if budgets is not None:
        steps = budget_steps(steps, budgets)
    return Cohort(offsets, counts.astype(np.int64), steps)


RECIPES = [
    LocalRecipe(lr=0.1, batch_size=8, local_epochs=2),
    LocalRecipe(lr=0.05, batch_size=8, momentum=0.9, weight_decay=1e-3),
    LocalRecipe(optimizer="adam", lr=0.01, batch_size=16),
    LocalRecipe(lr=0.05, batch_size=64, proximal_mu=0.3),  # wider than every member: width trimmed
]


def _materialized(trainer: BatchedTrainer, strategy_name: str, start: torch.Tensor, X, y, cohort: Cohort,
                  seed: int) -> torch.Tensor:
    local = trainer.train(start, X, y, cohort, torch.Generator().manual_seed(seed))
    updates = RoundUpdates(local.deltas, cohort.counts, local.normalizers)
    return build_strategy(strategy_name).step(start, updates)


@given(chunk=st.integers(1, 30), block=st.integers(1, 12), recipe=st.sampled_from(RECIPES),
       strategy=st.sampled_from(["fedavg", "fednova", "fedadam", "fedyogi", "fedadagrad"]))
@settings(max_examples=40, deadline=None)
def test_a_streamed_round_equals_the_stacked_updates_bit_for_bit(chunk: int, block: int, recipe: LocalRecipe,
                                                                 strategy: str) -> None:
    X, y, counts = _federation()
    budgets = np.linspace(0.2, 1.0, len(counts))  # different step counts: members drop out of later steps
    cohort = _cohort(counts, recipe, budgets)
    model = build_model("mlp", (6,), 2, seed=1)
    start = get_flat(model)
    trainer = BatchedTrainer(model, recipe, block=block)
    whole = _materialized(trainer, strategy, start, X, y, cohort, seed=5)
    seen = []

    def hook(first, part):
        seen.append((first, len(part.deltas)))
        return part.deltas

    streamed = train_and_aggregate(trainer, build_strategy(strategy), start, X, y, cohort,
                                   torch.Generator().manual_seed(5), chunk=chunk, on_chunk=hook)
    assert torch.equal(streamed.model, whole)
    unchunked = train_and_aggregate(trainer, build_strategy(strategy), start, X, y, cohort,
                                    torch.Generator().manual_seed(5), chunk=len(counts))
    assert torch.equal(unchunked.model, whole)
    # chunks come in member order, cover the cohort once, and hold whole blocks (at most the chunk rounded up)
    assert [f for f, _ in seen] == list(np.cumsum([0] + [n for _, n in seen[:-1]]))
    assert sum(n for _, n in seen) == len(counts)
    assert max(n for _, n in seen) <= block * -(-chunk // block)


@pytest.mark.parametrize("name", ["logreg", "mlp", "cnn"])
def test_the_chunk_size_never_changes_an_update(name: str) -> None:
    shape = (1, 28, 28) if name == "cnn" else (6,)
    g = torch.Generator().manual_seed(0)
    counts = np.array([5, 17, 3, 9, 12, 1, 8])
    X = torch.randn(int(counts.sum()), *shape, generator=g)
    y = torch.randint(0, 3, (int(counts.sum()),), generator=g)
    recipe = LocalRecipe(lr=0.05, batch_size=4, momentum=0.9)
    cohort = _cohort(counts, recipe)
    model = build_model(name, shape, 3, seed=0)
    start = get_flat(model)
    trainer = BatchedTrainer(model, recipe, block=2)
    whole = trainer.train(start, X, y, cohort, torch.Generator().manual_seed(1))
    for chunk in (1, 2, 3, 5, 100):
        parts = list(trainer.train_chunks(start, X, y, cohort, torch.Generator().manual_seed(1), chunk=chunk))
        assert torch.equal(torch.cat([p.deltas for _, p in parts]), whole.deltas)
        assert torch.equal(torch.cat([p.losses for _, p in parts]), whole.losses)


def test_block_sizes_agree_up_to_rounding_and_with_one_member_at_a_time() -> None:
    X, y, counts = _federation(members=9)
    recipe = LocalRecipe(lr=0.1, batch_size=8, momentum=0.5)
    cohort = _cohort(counts, recipe)
    model = build_model("mlp", (6,), 2, seed=2)
    start = get_flat(model)
    ref = SequentialTrainer(model, recipe).train(start, X, y, cohort, torch.Generator().manual_seed(4))
    for block in (1, 4, 9, None):
        got = BatchedTrainer(model, recipe, block=block).train(start, X, y, cohort, torch.Generator().manual_seed(4))
        assert torch.allclose(got.deltas, ref.deltas, atol=1e-5)


@given(st.lists(st.integers(1, 600), min_size=1, max_size=4), st.integers(1, 40))
@settings(max_examples=30, deadline=None)
def test_weighted_sum_adds_member_after_member_whatever_the_split(splits: list[int], d: int) -> None:
    g = torch.Generator().manual_seed(sum(splits) + d)
    m = sum(splits)
    deltas = torch.randn(m, d, generator=g) * torch.logspace(-6, 6, m)[:, None]  # rounding-sensitive magnitudes
    c = torch.rand(m, generator=g, dtype=torch.float64)
    expected = torch.zeros(d, dtype=torch.float64)
    for i in range(m):
        expected = expected + c[i] * deltas[i].double()
    assert torch.equal(weighted_sum(c, deltas), expected)
    total = torch.zeros(d, dtype=torch.float64)
    lo = 0
    for n in splits:
        weighted_sum(c[lo : lo + n], deltas[lo : lo + n], total)
        lo += n
    assert torch.equal(total, expected)


def test_the_stacked_step_is_the_weighted_average() -> None:
    deltas = torch.tensor([[1.0, 0.0], [0.0, 3.0], [2.0, 2.0]])
    updates = RoundUpdates(deltas, np.array([3, 1, 4]), np.array([1.0, 2.0, 4.0]))
    p = torch.tensor([3, 1, 4], dtype=torch.float32) / 8
    assert torch.allclose(build_strategy("fedavg").direction(updates), p @ deltas)
    a = torch.tensor([1.0, 2.0, 4.0])
    assert torch.allclose(build_strategy("fednova").direction(updates), float(p @ a) * ((p / a) @ deltas))


@pytest.mark.parametrize("name", ["median", "trimmed_mean", "multikrum"])
def test_robust_aggregators_are_never_streamed(name: str) -> None:
    model = build_model("logreg", (6,), 2)
    strategy = build_strategy(name)
    assert not streams(BatchedTrainer(model, LocalRecipe()), strategy)
    with pytest.raises(ValueError, match="every update"):
        RoundSum(strategy, np.ones(3), np.ones(3), dim=14)


def test_a_round_sum_refuses_chunks_out_of_order_twice_or_missing() -> None:
    total = RoundSum(build_strategy("fedavg"), np.ones(4), np.ones(4), dim=2)
    with pytest.raises(ValueError, match="member order"):
        total.add(2, torch.ones(2, 2))
    total.add(0, torch.ones(2, 2))
    with pytest.raises(ValueError, match="member order"):
        total.add(0, torch.ones(2, 2))  # the same members twice would count them twice
    with pytest.raises(ValueError, match="only 2 of 4"):
        total.step(torch.zeros(2))
    with pytest.raises(ValueError, match="5 updates"):
        total.add(2, torch.ones(3, 2))
    total.add(2, torch.ones(2, 2))
    assert torch.equal(total.step(torch.zeros(2)), torch.ones(2))
    sequential = SequentialTrainer(build_model("logreg", (6,), 2), LocalRecipe())
    assert not streams(sequential, build_strategy("fedavg"))
    with pytest.raises(ValueError, match="batched trainer"):
        train_and_aggregate(sequential, build_strategy("fedavg"), torch.zeros(14), torch.zeros(4, 6),
                            torch.zeros(4, dtype=torch.long), _cohort(np.array([2, 2]), LocalRecipe()),
                            torch.Generator())


def _sim(**extra) -> Simulation:
    return Simulation(build_config({"dataset": "digits", "partition": "dirichlet:0.5", "clients": 12, "model": "mlp",
                                    "rounds": 2, "local_epochs": 1, "lr": 0.1, "batch_size": 16, "seed": 4,
                                    "heterogeneity": 0.5, **extra}))


class _OneChunk(BatchedTrainer):
    """Hands the whole cohort over as one chunk (the unchunked path)."""

    def train_chunks(self, *args, **kwargs):
        return super().train_chunks(*args, **{**kwargs, "chunk": 10**9})


def _count_chunks(trainer: BatchedTrainer) -> list[int]:
    """The sizes of the chunks `trainer.train_chunks` yields from now on, in order."""
    seen: list[int] = []
    original = trainer.train_chunks

    def spy(*args, **kwargs):
        for first, part in original(*args, **kwargs):
            seen.append(len(part.deltas))
            yield first, part

    trainer.train_chunks = spy  # type: ignore[method-assign]
    return seen


@pytest.mark.parametrize("strategy", ["fedavg", "fednova", "fedadam"])
def test_the_simulation_streams_and_gets_the_stacked_updates_model(strategy: str) -> None:
    chunked, whole = _sim(strategy=strategy), _sim(strategy=strategy)
    chunked.trainer = BatchedTrainer(chunked.model, chunked.recipe, block=2)  # six blocks of two members
    whole.trainer = _OneChunk(whole.model, whole.recipe, block=2)
    seen = _count_chunks(chunked.trainer)
    for rnd in (1, 2):
        start = chunked.global_flat.clone()
        a, b = chunked.run_round(rnd), whole.run_round(rnd)
        assert a.model_hash == b.model_hash and a.train_loss == b.train_loss
        # the stacked path: train every member, then the strategy over all updates
        selected, survives = whole.sample(rnd)
        members = selected[survives]
        steps = budget_steps(whole.full_steps[members], whole.budgets[members])
        cohort = Cohort(whole.pool.offsets[members], whole.pool.counts[members], steps)
        local = BatchedTrainer(whole.model, whole.recipe, block=2).train(
            start, whole.pool.X, whole.pool.y, cohort, torch_generator(4, "round", rnd))
        if rnd == 1:  # server optimizers carry state: compare the first round from a fresh strategy
            stacked = build_strategy(strategy).step(start, RoundUpdates(local.deltas, cohort.counts, local.normalizers))
            assert torch.equal(stacked, chunked.global_flat)
    assert seen and max(seen) <= 2


_PEAK = textwrap.dedent("""
    import sys
    import numpy as np, torch
    from fedledger.learning import (BatchedTrainer, Cohort, LocalRecipe, RoundUpdates, build_strategy,
                                    train_and_aggregate)
    from fedledger.models import build_model, get_flat
    torch.set_num_threads(1)
    members, features = 6000, 300
    X = torch.randn(2 * members, features)
    y = torch.randint(0, 10, (2 * members,))
    cohort = Cohort(np.arange(members) * 2, np.full(members, 2), np.ones(members, dtype=np.int64))
    model = build_model("logreg", (features,), 10, seed=0)
    trainer = BatchedTrainer(model, LocalRecipe(batch_size=2), block=200)
    start = get_flat(model)

    def hwm():  # this process's own peak (ru_maxrss would start from the forking parent's size)
        return int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])

    few = Cohort(cohort.offsets[:400], cohort.counts[:400], cohort.steps[:400])
    train_and_aggregate(trainer, build_strategy("fedavg"), start, X, y, few, torch.Generator())  # warm-up: lazy inits
    local = trainer.train(start, X, y, few, torch.Generator())
    build_strategy("fedavg").step(start, RoundUpdates(local.deltas, few.counts, local.normalizers))
    del local
    before = hwm()
    if sys.argv[1] == "streamed":
        train_and_aggregate(trainer, build_strategy("fedavg"), start, X, y, cohort, torch.Generator())
    else:
        local = trainer.train(start, X, y, cohort, torch.Generator())
        build_strategy("fedavg").step(start, RoundUpdates(local.deltas, cohort.counts, local.normalizers))
    print(hwm() - before)
""")


@pytest.mark.slow
def test_a_streamed_round_holds_a_chunk_not_the_cohort() -> None:
    """6,000 members x 3,010 parameters: the stacked updates alone are 72 MB; a chunk of 200 is 2.4 MB."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    grown = {how: int(subprocess.run([sys.executable, "-c", _PEAK, how], env=env, capture_output=True, text=True,
                                     check=True, timeout=300).stdout) for how in ("streamed", "stacked")}
    deltas_kib = 6000 * 3010 * 4 // 1024
    assert grown["stacked"] > deltas_kib, grown  # the stacked path holds every update
    assert grown["streamed"] < deltas_kib / 4, grown


LINEAR = ["fedavg", "fednova", "fedadam", "fedyogi", "fedadagrad"]


@given(sizes=st.lists(st.integers(1, 9), min_size=1, max_size=6), d=st.integers(1, 30),
       strategy=st.sampled_from(LINEAR), seed=st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_a_round_sum_fed_chunk_by_chunk_is_the_whole_rounds_step(sizes: list[int], d: int, strategy: str,
                                                                  seed: int) -> None:
    """The accumulator's property: any split of the cohort into consecutive chunks gives the bits of the
    strategy's step over every update at once (sample counts and FedNova normalizers differing per member)."""
    g = torch.Generator().manual_seed(seed)
    m = sum(sizes)
    deltas = torch.randn(m, d, generator=g) * torch.logspace(-4, 4, m)[:, None]
    counts = torch.randint(1, 500, (m,), generator=g).numpy()
    normalizers = torch.randint(1, 30, (m,), generator=g).double().numpy()
    start = torch.randn(d, generator=g)
    whole = build_strategy(strategy).step(start, RoundUpdates(deltas, counts, normalizers))
    total = RoundSum(build_strategy(strategy), counts, normalizers, dim=d)
    first = 0
    for n in sizes:
        total.add(first, deltas[first : first + n])
        first += n
    assert torch.equal(total.step(start), whole)


def _plain(strategy: str, memory_mib: int | None = 1, **extra) -> Simulation:
    return _sim(strategy=strategy, dropout=0.3, momentum=0.5, train_memory_mib=memory_mib, **extra)


@pytest.mark.parametrize("strategy", LINEAR)
def test_chunked_and_unchunked_simulations_give_the_same_model_hash(strategy: str, monkeypatch) -> None:
    """The chunked plain simulation (many blocks of a 1 MiB budget, each chunk summed as it finishes) against
    the unchunked one of the same block (every update stacked, then the strategy's step), three rounds with
    dropouts, compute budgets and Dirichlet sample counts: the same model hash after every round (server
    optimizer state carried across rounds included)."""
    import fedledger.sim.federation as federation

    chunked = _plain(strategy)
    chunks = _count_chunks(chunked.trainer)
    streamed = [chunked.run_round(rnd) for rnd in (1, 2, 3)]
    monkeypatch.setattr(federation, "streams", lambda trainer, strategy: False)
    unchunked = _plain(strategy)
    stacked = [unchunked.run_round(rnd) for rnd in (1, 2, 3)]
    assert [r.model_hash for r in streamed] == [r.model_hash for r in stacked]
    assert [r.train_loss for r in streamed] == [r.train_loss for r in stacked]
    assert sum(r.dropped for r in streamed) > 0 and len(set(chunked.pool.counts.tolist())) > 1
    block = chunked.trainer.block_members(16, 64)
    assert 1 < block < 12 and len(chunks) > 3 and max(chunks) <= block  # several chunks per round


@pytest.mark.parametrize("strategy", ["median", "trimmed_mean", "multikrum"])
def test_robust_aggregators_get_the_same_model_whatever_the_chunk(strategy: str) -> None:
    """Robust aggregators take every update at once; the trainer's chunks (of the same block) change no bit."""
    chunked, whole = _plain(strategy), _plain(strategy)
    whole.trainer = _OneChunk(whole.model, whole.recipe, block_bytes=2**20)
    for rnd in (1, 2):
        assert chunked.run_round(rnd).model_hash == whole.run_round(rnd).model_hash


def test_the_block_budget_is_a_config_knob_and_a_flag() -> None:
    from fedledger.cli.main import build_parser, config_from_args
    from fedledger.learning.local import DEFAULT_BLOCK_BYTES

    assert _sim().trainer.block_bytes == DEFAULT_BLOCK_BYTES
    assert _sim(train_memory_mib=3).trainer.block_bytes == 3 * 2**20
    cfg = config_from_args(build_parser().parse_args(["run", "--plain", "--train-memory-mib", "64"]))
    assert cfg.train_memory_mib == 64
    with pytest.raises(ValueError, match="train_memory_mib"):
        build_config({"train_memory_mib": 0})
