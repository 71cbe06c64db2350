"""Chain-free parts of the ledger: compile cache, sizes, revert mapping, selection, claims, keys."""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from itertools import accumulate

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.core.errors import LedgerError, PrivacyBudgetExceeded
from fedledger.core.merkle import verify_proof
from fedledger.ledger import to_fixed
from fedledger.ledger.anvil import MISSING_HINT, AnvilNode
from fedledger.ledger.claims import leaf_data, reputation_tree, reward_tree
from fedledger.ledger.compiler import CONTRACTS, CONTRACTS_DIR, MAX_CODE_SIZE, compile_all, source_digest
from fedledger.ledger.errors import (
    MODULE_ERRORS,
    REVERT_OVERRIDES,
    REVERTS,
    AlreadySlashed,
    AlreadyVoted,
    BudgetExceeded,
    ChainUnavailable,
    KeyLoadError,
    LedgerRevert,
    NotAuthorized,
    NotCommitteeMember,
    QuorumNotReached,
    build_reverts,
    contract_reasons,
    contract_sources,
    reason_module,
    revert_error,
    unmapped_reasons,
)
from fedledger.ledger.keys import ENV_KEY, ENV_KEYSTORE, ENV_PASSWORD, load_signer
from fedledger.ledger.selection import draw, select_aggregator, select_cohort, select_committee
from fedledger.ledger.types import ReopenReason, RoundStatus, SlashReason
from fedledger.zk.onchain import DISPUTE_CONTRACT


def test_contracts_compile_and_fit_the_size_limit() -> None:
    arts = compile_all()
    assert set(arts) == set(CONTRACTS)
    for art in arts.values():
        assert 0 < art.code_size < MAX_CODE_SIZE, art.name
        assert art.abi and art.bytecode


def test_compile_cache_is_keyed_by_source(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FEDLEDGER_CACHE", str(tmp_path))
    compile_all.cache_clear()
    try:
        arts = compile_all()
        cached = list((tmp_path / "vyper").glob("*.json"))
        assert [p.stem for p in cached] == [source_digest()]
        assert json.loads(cached[0].read_text())["task_manager"]["abi"] == arts["task_manager"].abi
    finally:
        compile_all.cache_clear()


def test_every_revert_reason_maps_to_a_specific_error() -> None:
    """The revert table is generated from the contracts' own reasons: every reason's module has an
    error, no override or module entry is left behind by a removed reason or module, and no
    override repeats its module's error."""
    parsed = contract_reasons()
    assert DISPUTE_CONTRACT.resolve() in [p.resolve() for p in contract_sources()]
    assert len(parsed) > 100
    assert unmapped_reasons(parsed) == []
    stale_overrides = sorted(set(REVERT_OVERRIDES) - set(parsed))
    unused_modules = sorted(set(MODULE_ERRORS) - {reason_module(r) for r in parsed})
    redundant = sorted(r for r, cls in REVERT_OVERRIDES.items() if MODULE_ERRORS.get(reason_module(r)) is cls)
    assert (stale_overrides, unused_modules, redundant) == ([], [], [])
    assert set(REVERTS) == set(parsed)
    assert all(cls is not LedgerRevert for cls in REVERTS.values())
    # every quoted "module: reason" in a contract is a reason the parser saw (no revert form it misses)
    quoted = set()
    for path in [*CONTRACTS_DIR.glob("*.vy"), DISPUTE_CONTRACT]:
        quoted |= set(re.findall(r'"([a-z_0-9]+: [^"]+)"', path.read_text()))
    assert quoted <= set(parsed)
    # the reasons a caller acts on keep their errors across the module split
    assert REVERTS["votes: not a committee member"] is NotCommitteeMember
    assert REVERTS["votes: already voted"] is AlreadyVoted
    assert REVERTS["settlement: quorum not reached"] is QuorumNotReached
    assert REVERTS["dispute_hook: update already slashed this round"] is AlreadySlashed
    assert REVERTS["dispute_hook: only a registered dispute contract slashes for proofs"] is NotAuthorized
    assert REVERTS["round_machine: privacy spent above the round's bound"] is BudgetExceeded
    err = revert_error("round_machine: round would exceed the privacy budget", "open_round")
    assert isinstance(err, BudgetExceeded) and isinstance(err, PrivacyBudgetExceeded) and isinstance(err, LedgerError)
    assert type(revert_error("tasks: something new")) is LedgerRevert  # unknown at run time: the base class


def test_a_new_reason_maps_to_its_modules_error_and_an_unknown_module_is_unmapped() -> None:
    new = {"votes: a reason added later": "votes.vy", "newmodule: a reason": "newmodule.vy"}
    assert build_reverts(new) == {"votes: a reason added later": MODULE_ERRORS["votes"]}
    assert unmapped_reasons(new) == ["newmodule: a reason"]


def _vyper_constants(name: str) -> dict[str, int]:
    text = (CONTRACTS_DIR / name).read_text()
    return {k: int(v) for k, v in re.findall(r"^([A-Z_]+): constant\(uint256\) = (\d+)", text, re.M)}


def test_python_codes_are_the_modules_constants() -> None:
    """RoundStatus, ReopenReason and SlashReason decode what the modules encode, value for value."""
    status = _vyper_constants("round_book.vy")
    assert {s.name: s.value for s in RoundStatus} == {
        "NONE": status["NO_ROUND"],
        **{k: status[k] for k in ("OPEN", "SUBMITTED", "FINALIZED", "REJECTED", "SEALING")},
    }
    reopen = _vyper_constants("round_machine.vy")
    assert {r.name: r.value for r in ReopenReason} == {
        "MISSED_DEADLINE": reopen["MISSED_DEADLINE"],
        "VOTE_TIMEOUT": reopen["VOTE_TIMEOUT"],
        "REJECTED": reopen["REJECTED_RESULT"],
    }
    slash = _vyper_constants("slashing.vy")
    assert {r.name: r.value for r in SlashReason} == {
        k.removeprefix("SLASH_"): v for k, v in slash.items() if k.startswith("SLASH_")
    }


def test_fixed_point_rounds_up() -> None:
    assert to_fixed(3) == 3 * 10**18
    assert to_fixed("0.1") == 10**17
    assert to_fixed(1e-19) == 1


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=0, max_value=10**21), min_size=1, max_size=40).filter(lambda w: sum(w) > 0),
    seed=st.binary(min_size=32, max_size=32),
    size=st.integers(min_value=1, max_value=32),
)
def test_selection_draws_only_weighted_members_without_repeats(weights: list[int], seed: bytes, size: int) -> None:
    pool = [(Account.from_key((i + 1).to_bytes(32, "big")).address, w) for i, w in enumerate(weights)]
    eligible = {a for a, w in pool if w > 0}
    if len(eligible) < size:  # never a short committee: the contract refuses to seal, so does the replica
        with pytest.raises(ValueError, match="needs"):
            select_committee(seed, pool, size)
    else:  # always a full one, even when 128 draws do not fill it (the pool-order walk does)
        committee = select_committee(seed, pool, size)
        assert len(set(committee)) == len(committee) == size
        assert set(committee) <= eligible
    assert select_aggregator(seed, pool) in eligible
    # the bisection is the "first running sum above t" rule the Fenwick search implements
    prefix = list(accumulate(weights))
    for j in range(5):
        i = draw(seed, b"\x01" * 32, j, prefix)
        assert weights[i] > 0 and i == bisect_right(prefix, prefix[i] - 1)


def test_aggregator_redraw_avoids_the_excluded_member() -> None:
    pool = [(Account.from_key((i + 1).to_bytes(32, "big")).address, 1) for i in range(3)]
    seeds = [bytes([s]) * 32 for s in range(20)]
    for seed in seeds:
        first = select_aggregator(seed, pool)
        assert select_aggregator(seed, pool, excluded=first) != first
    solo = pool[:1]
    assert select_aggregator(seeds[0], solo, excluded=solo[0][0]) == solo[0][0]
    # an excluded member with almost all the weight: every redraw hits it, the next member with weight is taken
    heavy = [(pool[0][0], 1), (pool[1][0], 10**9), (pool[2][0], 0), (Account.from_key(b"\x09" * 32).address, 1)]
    for seed in seeds:
        assert select_aggregator(seed, heavy, excluded=heavy[1][0]) == heavy[3][0]
    assert select_aggregator(seeds[0], heavy[:2], excluded=heavy[1][0]) == heavy[0][0]  # wraps around


def test_cohort_is_a_seeded_public_sample() -> None:
    trainers = [Account.from_key((i + 1).to_bytes(32, "big")).address for i in range(50)]
    a = select_cohort(b"\x07" * 32, trainers, 10)
    assert a == select_cohort(b"\x07" * 32, list(reversed(trainers)), 10)
    assert len(set(a)) == 10 and a != select_cohort(b"\x08" * 32, trainers, 10)


def test_claim_trees_are_core_merkle_trees() -> None:
    accounts = {Account.from_key((i + 1).to_bytes(32, "big")).address: 10 * (i + 1) for i in range(7)}
    tree = reward_tree(3, 4, accounts)
    assert tree.total == sum(accounts.values())
    for a, v in accounts.items():
        verify_proof(tree.root, leaf_data(3, 4, a, v), tree.proof(a))
    with pytest.raises(ValueError):
        reputation_tree(3, 4, {next(iter(accounts)): 10_001})


def test_keys_come_from_env_or_an_encrypted_keystore(tmp_path, monkeypatch) -> None:
    for var in (ENV_KEY, ENV_KEYSTORE, ENV_PASSWORD):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(KeyLoadError, match="needs a key"):
        load_signer()
    acct = Account.create()
    monkeypatch.setenv(ENV_KEY, acct.key.hex())
    assert load_signer().address == acct.address
    store = tmp_path / "key.json"
    store.write_text(json.dumps(Account.encrypt(acct.key, "pw")))
    assert acct.key.hex()[2:] not in store.read_text()
    monkeypatch.setenv(ENV_KEYSTORE, str(store))
    monkeypatch.setenv(ENV_PASSWORD, "wrong")
    with pytest.raises(KeyLoadError, match="wrong password"):
        load_signer()
    monkeypatch.setenv(ENV_PASSWORD, "pw")
    assert load_signer().address == acct.address


def test_missing_anvil_fails_with_one_clear_line(monkeypatch) -> None:
    monkeypatch.setenv("FEDLEDGER_ANVIL", "/nonexistent/anvil")
    with pytest.raises(ChainUnavailable) as exc:
        AnvilNode(None).start()
    assert str(exc.value) == MISSING_HINT and "--chain memory" in str(exc.value) and "\n" not in str(exc.value)
