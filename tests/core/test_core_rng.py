"""Entropy: secrets from the OS unless a run asks for the deterministic source, and child streams that
never collide across (purpose, member, round, attempt)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.cli.main import main
from fedledger.core.config import build_config
from fedledger.core.errors import ConfigError
from fedledger.core.rng import DeterministicEntropy, Purpose, SystemEntropy, entropy_for

small = st.one_of(st.none(), st.integers(-(2**40), 2**40))
contexts = st.tuples(st.sampled_from(list(Purpose)), small, small, small)


@given(st.lists(contexts, min_size=2, max_size=12, unique=True), st.integers(0, 2**64))
def test_child_streams_for_different_contexts_never_collide(ctxs, seed) -> None:
    root = DeterministicEntropy(seed)
    keys, heads = set(), set()
    for purpose, member, rnd, attempt in ctxs:
        keys.add(root.key(purpose, member=member, round=rnd, attempt=attempt))
        heads.add(root.stream(purpose, member=member, round=rnd, attempt=attempt).bytes(32))
    assert len(keys) == len(ctxs) and len(heads) == len(ctxs)


@given(contexts, contexts)
def test_children_are_separated_from_each_other_and_from_their_parent(a, b) -> None:
    root = DeterministicEntropy(7)
    pa, ma, ra, aa = a
    pb, mb, rb, ab = b
    child = root.child(pa, member=ma, round=ra, attempt=aa)
    assert child.key(pb, member=mb, round=rb, attempt=ab) != root.key(pb, member=mb, round=rb, attempt=ab)
    other = root.child(pb, member=mb, round=rb, attempt=ab)
    if a != b:
        assert child.key(Purpose.DP_NOISE) != other.key(Purpose.DP_NOISE)


def test_none_and_zero_are_different_contexts() -> None:
    root = DeterministicEntropy(0)
    assert root.key(Purpose.DP_NOISE, attempt=None) != root.key(Purpose.DP_NOISE, attempt=0)
    assert root.key(Purpose.DP_NOISE, round=1, attempt=2) != root.key(Purpose.DP_NOISE, round=2, attempt=1)


def test_deterministic_source_reproduces_and_says_so() -> None:
    a, b, c = DeterministicEntropy(3), DeterministicEntropy(3), DeterministicEntropy(4)
    ctx = {"member": 1, "round": 2, "attempt": 0}
    assert a.key(Purpose.SECAGG, **ctx) == b.key(Purpose.SECAGG, **ctx) != c.key(Purpose.SECAGG, **ctx)
    draw = [x.numpy(Purpose.DPSGD, **ctx).integers(0, 2**62, 4) for x in (a, b)]
    assert (draw[0] == draw[1]).all()
    assert a.describe()["deterministic"] is True


def test_system_source_never_repeats_but_a_child_redraws_its_own_secrets() -> None:
    system = SystemEntropy()
    assert not system.deterministic and system.describe()["deterministic"] is False
    assert system.key(Purpose.DP_NOISE, round=1) != system.key(Purpose.DP_NOISE, round=1)
    one, two = system.child(Purpose.ATTEMPT, round=1, attempt=0), system.child(Purpose.ATTEMPT, round=1, attempt=0)
    assert not one.deterministic
    assert one.stream(Purpose.DP_NOISE).bytes(32) == one.stream(Purpose.DP_NOISE).bytes(32)  # the re-sum's noise
    assert one.stream(Purpose.DP_NOISE).bytes(32) != two.stream(Purpose.DP_NOISE).bytes(32)
    t1, t2 = system.torch(Purpose.DPSGD), system.torch(Purpose.DPSGD)
    assert t1.initial_seed() != t2.initial_seed()


def test_the_run_decides_in_one_place() -> None:
    assert isinstance(entropy_for(False, 1), SystemEntropy)
    assert entropy_for(True, 1).key(Purpose.IDENTITY, member=0) == DeterministicEntropy(1).key(Purpose.IDENTITY,
                                                                                                member=0)


def test_deterministic_mode_is_off_by_default_and_refused_on_an_external_chain() -> None:
    assert build_config({}).deterministic is False
    assert build_config({"deterministic": True, "ledger": {"enabled": True, "chain": "memory"}}).deterministic
    with pytest.raises(ConfigError, match=r"deterministic mode .* not for https://rpc\.example\.org"):
        build_config({"deterministic": True, "ledger": {"enabled": True, "chain": "https://rpc.example.org"}})


def test_cli_refuses_deterministic_on_an_external_chain_with_one_line(capsys, tmp_path) -> None:
    code = main(["run", "--deterministic", "--chain", "http://127.0.0.1:9", "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("fedledger: error:") and "deterministic" in err
    assert not any(tmp_path.iterdir())  # refused before anything ran
