"""What a member checks before it joins a task: the terms the owner committed on chain are those its spec fixes.

The chain records a task's terms (rounds, committee size, privacy budget, the most privacy one round may spend)
next to the hash of its spec, but it cannot read the spec. An owner could therefore commit terms its own spec
contradicts. The sharpest case: a per-round privacy spend below what the spec's plan spends. Every honest result
would then exceed its round's bound, so the drawn aggregator could not post it, would miss its deadline, and
would be slashed.

Nobody but the member can protect the member here, so the check runs in the member's own join path
(`join_task`). The member derives the terms from the spec (fetched by its on-chain hash and re-hashed) with the
same rules validators use (`protocol.rules`), and refuses to join on any difference. Only joined members are
drawn, and a round needs a full committee, so a task with false terms never gets one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from fedledger.core.blobstore import BlobStore
from fedledger.core.errors import IntegrityError
from fedledger.ledger import Ledger, to_fixed
from fedledger.ledger.types import TaskInfo
from fedledger.protocol.rules import privacy_per_round, task_config

#: the budget a task that spends no privacy commits (the contract takes no zero budget)
NO_PRIVACY_BUDGET = 1


class TaskTermsError(IntegrityError):
    """A task's committed terms differ from what its spec fixes, or its spec cannot be read."""


@dataclass(frozen=True, slots=True)
class TaskTerms:
    """The terms of a task that follow from its spec. Privacy amounts are 18-decimal fixed point."""

    rounds: int
    committee_size: int
    privacy_budget: int
    privacy_per_round: int


def terms_from_spec(spec: dict[str, Any], *, dim: int | None = None) -> TaskTerms:
    """The terms a task with spec `spec` must commit. `dim` (the model's size) saves rebuilding the model."""
    cfg = task_config(spec)
    budget = NO_PRIVACY_BUDGET if cfg.privacy.dp == "none" else to_fixed(cfg.privacy.epsilon)
    per_round = privacy_per_round(spec, dim=dim) if cfg.privacy.dp == "member" else None
    return TaskTerms(rounds=cfg.rounds, committee_size=cfg.ledger.committee, privacy_budget=budget,
                     privacy_per_round=budget if per_round is None else per_round)


@lru_cache(maxsize=8)
def _terms_of_spec_bytes(raw: bytes) -> TaskTerms:
    # a pure function of the spec: members sharing one process (a simulation) derive the terms once
    return terms_from_spec(json.loads(raw))


def check_task_terms(task: TaskInfo, spec: dict[str, Any] | bytes) -> TaskTerms:
    """Raise `TaskTermsError` naming every committed term that differs from the spec's; return the terms."""
    expected = _terms_of_spec_bytes(spec) if isinstance(spec, bytes) else terms_from_spec(spec)
    differences = [f"{name} {getattr(task, name)} (the spec fixes {want})"
                   for name, want in asdict(expected).items() if getattr(task, name) != want]
    if differences:
        raise TaskTermsError(f"task {task.task_id} committed terms its spec does not: " + "; ".join(differences)
                             + ". Not joining")
    return expected


def read_spec(task: TaskInfo, fetch: Callable[[bytes], bytes]) -> bytes:
    """The task's spec, fetched by the hash on chain and re-hashed here (whatever `fetch` claims)."""
    try:
        raw = fetch(task.spec_hash)
    except IntegrityError as e:
        raise TaskTermsError(f"task {task.task_id}: its spec 0x{task.spec_hash.hex()} cannot be read: {e}") from None
    if BlobStore.address(raw) != task.spec_hash:
        raise TaskTermsError(f"task {task.task_id}: the spec fetched does not match the hash on chain")
    try:
        json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise TaskTermsError(f"task {task.task_id}: its spec is not JSON") from None
    return raw


def join_task(member: Ledger, task_id: int, fetch: Callable[[bytes], bytes]) -> TaskTerms:
    """Join task `task_id` as `member` (its signer) after checking the committed terms against the spec."""
    task = member.task(task_id)
    if task.closed:
        raise TaskTermsError(f"task {task_id} is closed")
    terms = check_task_terms(task, read_spec(task, fetch))
    member.join_task(task_id)
    return terms
