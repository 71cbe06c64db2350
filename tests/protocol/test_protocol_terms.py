"""A member's check of a task's committed terms against its spec (`protocol.terms`), before it joins."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from fedledger.core.blobstore import BlobStore
from fedledger.core.config import build_config
from fedledger.ledger import to_fixed
from fedledger.ledger.types import TaskId, TaskInfo
from fedledger.protocol.rules import privacy_per_round
from fedledger.protocol.terms import NO_PRIVACY_BUDGET, TaskTermsError, check_task_terms, read_spec, terms_from_spec

BASE = {"dataset": "digits", "clients": 5, "model": "logreg", "rounds": 3, "proofs": "none",
        "ledger": {"enabled": True, "chain": "auto", "committee": 3}}


def spec_of(**overrides: object) -> dict[str, object]:
    cfg = build_config({**BASE, **overrides})
    return {**cfg.model_dump(exclude={"out", "baseline"}), "input_shape": [64], "num_classes": 10}


def task_committing(spec: dict[str, object]) -> TaskInfo:
    """The chain's record of a task whose owner committed exactly the terms `spec` fixes."""
    honest = terms_from_spec(spec)
    raw = json.dumps(spec, sort_keys=True).encode()
    return TaskInfo(TaskId(1), "0x" + "11" * 20, BlobStore.address(raw), reward_per_round=1, rounds=honest.rounds,
                    privacy_budget=honest.privacy_budget, privacy_spent=0, committee_size=honest.committee_size,
                    quorum_bps=6666, submit_window=3600, vote_window=3600, finalized_rounds=0, current_round=0,
                    privacy_per_round=honest.privacy_per_round)


MEMBER_DP = {"privacy": {"dp": "member", "secagg": True, "epsilon": 8.0, "bits": 20}}


def test_the_terms_of_a_member_level_task_follow_its_plan() -> None:
    spec = spec_of(**MEMBER_DP)
    terms = terms_from_spec(spec)
    assert terms.privacy_budget == to_fixed(8.0)
    assert 0 < terms.privacy_per_round < terms.privacy_budget  # three rounds share the budget
    assert terms.privacy_per_round == privacy_per_round(spec)
    assert (terms.rounds, terms.committee_size) == (3, 3)


def test_a_task_without_privacy_commits_the_placeholder_budget_and_no_per_round_limit() -> None:
    terms = terms_from_spec(spec_of())
    assert terms.privacy_budget == terms.privacy_per_round == NO_PRIVACY_BUDGET
    record = terms_from_spec(spec_of(privacy={"dp": "record", "epsilon": 3.0}))
    assert record.privacy_budget == record.privacy_per_round == to_fixed(3.0)


def test_honest_terms_pass() -> None:
    spec = spec_of(**MEMBER_DP)
    assert check_task_terms(task_committing(spec), spec) == terms_from_spec(spec)


@pytest.mark.parametrize("term, change", [
    ("privacy_per_round", lambda v: v // 2),  # every honest result would exceed its round's bound
    ("privacy_per_round", lambda v: v + 1),  # looser than the plan: no honest round needs it
    ("privacy_budget", lambda v: v * 2),  # more privacy than the members agreed to spend
    ("rounds", lambda v: v + 1),  # more releases than the noise was planned for
    ("committee_size", lambda v: v - 1),
])
def test_every_term_the_spec_fixes_is_checked(term: str, change: object) -> None:
    spec = spec_of(**MEMBER_DP)
    honest = task_committing(spec)
    false = replace(honest, **{term: change(getattr(honest, term))})  # type: ignore[operator]
    with pytest.raises(TaskTermsError, match=term):
        check_task_terms(false, spec)


def test_the_spec_is_checked_against_the_hash_on_chain_whatever_the_fetcher_returns() -> None:
    spec = spec_of(**MEMBER_DP)
    task = task_committing(spec)
    raw = json.dumps(spec, sort_keys=True).encode()
    assert read_spec(task, lambda address: raw) == raw
    looser = json.dumps({**spec, "rounds": 1}, sort_keys=True).encode()
    with pytest.raises(TaskTermsError, match="does not match"):
        read_spec(task, lambda address: looser)
