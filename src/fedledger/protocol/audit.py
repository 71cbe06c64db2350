"""`fedledger audit`: re-verify every finalized round of a task from the chain and the blob store alone.

Nothing in the run directory is trusted but the chain itself: the task is found on the chain (`find_task`: the
task whose spec blob the directory's content-addressed store holds and whose finalized rounds' evidence it
holds, or `--task`), the event index is rebuilt from the chain in memory (the cached `index.sqlite` is never
read), `federation.json` and results.json are not read at all, and the contracts named by
`chain/deployment.json` must carry the runtime code compiled from these sources.

Which chain: with `--chain URL` the node at URL (a node the run directory does not control). With
`--chain auto` the chain *is* the run directory's anvil state file (`chain/anvil-state.json`): the audit starts
a node on it and checks everything against it, so whoever can write the directory can rewrite the chain
(tested: editing a stored evidence root in the state file changes the verdict). The report says which
(`AuditReport.chain`, `chain_trust`); only an audit against a node you trust rests on nothing in the directory.
For each finalized round, in order:
- selection: the aggregator and committee the contract drew are the ones anyone recomputes from the seed;
- chain of models: the round's evidence names, as its starting point, the model the previous finalized
  round recorded (round 1: the initial model rebuilt from the task spec);
- the round, recomputed as a validator recomputes it (`roles.RoundChecker`): every signed message in the
  transcript against the keys registered on chain as they stood when the round opened (`registry_at`);
  under secure aggregation the SecAgg+ sum, the model, every proof, the linear check, blame and the faulty
  list, the state carried to the next round and the privacy spent; with visible updates the signed updates
  and the strategy's weights;
- finality: the accepting stake reached two thirds of the committee's stake and the task's quorum;
- rewards: the settlement is the committee's score consensus (`score_flow.check_scored`): the posted evidence is
  the bare evidence published for the score commit-reveal plus a settlement, and that settlement (rewards,
  reputation, consensus, why each party was or was not paid) is recomputed from the chain's revealed score
  vectors and their blobs; the reward root of the recomputed settlement is the one the round posted, and the
  rewards contract pays out against that root;
- privacy: the privacy spent never decreases and never exceeds the task's budget.

The first failure raises `IntegrityError` naming the round and the item.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from fedledger.core.blobstore import BlobStore
from fedledger.core.errors import DataError, IntegrityError
from fedledger.core.vectors import to_bytes
from fedledger.ledger import Ledger, RoundStatus
from fedledger.ledger.backends import AnvilBackend, open_backend
from fedledger.ledger.claims import reward_tree
from fedledger.ledger.client import _Session
from fedledger.ledger.compiler import CONTRACTS, compile_all
from fedledger.ledger.types import ZERO32
from fedledger.models import build_model, get_flat
from fedledger.protocol.evidence import RoundManifest
from fedledger.protocol.roles import Network, RoundChecker, RoundView
from fedledger.protocol.rules import model_shape, task_rules
from fedledger.protocol.signing import Registry

T = TypeVar("T")


#: what an audit against the run directory's own anvil state (`--chain auto`) takes on trust
LOCAL_CHAIN_TRUST = ("the chain is the run directory's own anvil state file (chain/anvil-state.json): whoever can "
                     "write the directory can rewrite it; audit with --chain URL against a node you trust for a "
                     "verdict that rests on nothing in the directory")


@dataclass
class AuditReport:
    task_id: int
    rounds: list[int] = field(default_factory=list)
    recomputed: list[int] = field(default_factory=list)  # rounds whose aggregate was recomputed from updates
    checks: int = 0
    privacy_spent: float = 0.0
    owner: str = ""  # the task's owner on chain
    chain: str = ""  # the chain audited against (chain id, the node, the task manager's address)
    chain_trust: str = ""  # what the verdict takes on trust about the chain ("": a node the directory does not control)

    def to_json(self) -> dict[str, object]:
        return {"task_id": self.task_id, "owner": self.owner, "chain": self.chain, "chain_trust": self.chain_trust,
                "finalized_rounds_verified": self.rounds, "aggregates_recomputed": self.recomputed,
                "checks": self.checks, "privacy_spent": self.privacy_spent, "ok": True}


class _Round:
    """Names the round and item of the next check, so a failure says where it is."""

    def __init__(self, report: AuditReport, round_id: int) -> None:
        self.report = report
        self.round_id = round_id

    def check(self, item: str, fn: Callable[..., T], *args: object) -> T:
        try:
            out = fn(*args)
        except IntegrityError as e:
            raise IntegrityError(f"round {self.round_id}: {item}: {e}") from None
        self.report.checks += 1
        return out

    def require(self, item: str, ok: bool, detail: str) -> None:
        if not ok:
            raise IntegrityError(f"round {self.round_id}: {item}: {detail}")
        self.report.checks += 1


def initial_model_hash(spec: dict[str, object]) -> bytes:
    shape, classes = model_shape(spec)
    model = build_model(str(spec["model"]), shape, classes, seed=int(str(spec["seed"])))
    return BlobStore.address(to_bytes(get_flat(model)))


def find_task(ledger: Ledger, blobs: BlobStore, task_id: int | None = None) -> int:
    """The task to audit, from the chain and the blob store only: `task_id` (whose spec blob this directory must
    hold), else the run's own task.

    A spec hash is no identity: anyone may create a task with another task's spec hash (a copy of the run's spec,
    created before or after it). Among the tasks whose spec blob this directory holds, the run's own task is the
    one whose first finalized round's evidence this directory holds (its root, filed in the store, re-hashes to the
    root on chain): a task made by copying the spec has no round whose evidence is here. If that leaves not exactly
    one task, the audit refuses with one line naming the candidates and their owners, never picks one."""
    count = ledger.task_count()
    if task_id is not None:
        if not 1 <= task_id <= count:
            raise DataError(f"the chain has no task {task_id} ({count} tasks)")
        if ledger.task(task_id).spec_hash not in blobs:
            raise DataError(f"task {task_id}'s spec is not in this directory's blob store: it is not this run's task")
        return task_id
    found = [t for t in range(1, count + 1) if ledger.task(t).spec_hash in blobs]
    if not found:
        raise DataError("no task on the chain has its spec in this directory's blob store: is this the run's chain?")
    if len(found) == 1:
        return found[0]
    holding = [t for t in found if _holds_first_round(ledger, blobs, t)]
    if len(holding) == 1:
        return holding[0]
    named = ", ".join(f"{t} (owner {ledger.task(t).owner})" for t in (holding or found))
    raise DataError(f"tasks {named} have this run's spec and {'each' if holding else 'none'} of them has its first "
                    "finalized round's evidence in this directory: name the run's task with --task N")


def _holds_first_round(ledger: Ledger, blobs: BlobStore, task_id: int) -> bool:
    """Whether this blob store holds the evidence of the task's first finalized round (checked against its root)."""
    for round_id in range(1, ledger.task(task_id).current_round + 1):
        record = ledger.round(task_id, round_id)
        if record.status is RoundStatus.FINALIZED:
            try:
                manifest = RoundManifest.find(blobs, record.evidence_root)
            except (IntegrityError, OSError):
                return False
            return manifest.model == record.model_hash and manifest.evidence in blobs
    return False


def check_contracts(ledger: Ledger) -> None:
    """The addresses `chain/deployment.json` names (a file in the run directory, editable) hold the runtime code
    compiled from these sources (followed by the immutables the constructor appended): a contract someone else
    wrote, deployed at an address put in the file, would answer whatever its author likes."""
    arts = compile_all()
    w3 = ledger.backend.w3
    for name in CONTRACTS:
        address = ledger.deployment.addresses.get(name)
        code = bytes(w3.eth.get_code(address)) if address else b""  # type: ignore[arg-type]
        if not code.startswith(arts[name].runtime):
            raise IntegrityError(f"contracts: the {name} at {address} (named by the run's deployment.json) is not "
                                 "the contract compiled from these sources")


def _ledger(chain: str, run_dir: Path) -> Ledger:
    """A read-only session whose event index is rebuilt from the chain in memory (no cached index)."""
    backend = open_backend(chain, run_dir)
    try:
        probe = Ledger.attach(backend, deploy_if_missing=False)
        return Ledger(_Session(backend, probe.deployment, None, owns_backend=True))
    except BaseException:
        backend.close()
        raise


def audit_run(run_dir: Path, chain: str = "auto", task_id: int | None = None) -> AuditReport:
    """Audit the task whose blobs `run_dir` holds, on `chain`: "auto" (the run's own anvil state), "memory",
    or the JSON-RPC URL of a node the run directory does not control."""
    if not run_dir.exists():
        raise DataError(f"{run_dir} does not exist")
    if not run_dir.is_dir():
        raise DataError(f"{run_dir} is not a directory: give the run's output directory (its --out)")
    if chain == "memory":
        raise DataError("an in-memory chain (--chain memory) lives only inside the process that ran it, so there is "
                        "nothing to audit; audit a run made with --chain auto, or name its node with --chain URL")
    if chain == "auto" and not (run_dir / "chain").is_dir():
        raise DataError(f"{run_dir} has no chain state (no chain/ directory): was it run with --chain? "
                        "Or audit against a node: --chain URL")
    if chain == "auto" and not (run_dir / "chain" / "deployment.json").is_file():
        # nothing to start a node on: a --chain memory run keeps no chain once it ends
        raise DataError(f"{run_dir} holds no saved chain (no chain/deployment.json): a --chain memory run keeps "
                        "no chain after it ends, so there is nothing to audit; audit a run made with --chain auto, "
                        "or name the node that holds it with --chain URL")
    if chain == "auto" and not (run_dir / "chain" / AnvilBackend.STATE_FILE).is_file():
        raise DataError(f"{run_dir} holds no anvil state (no chain/{AnvilBackend.STATE_FILE}): it ran on a node "
                        "elsewhere (--chain URL); audit it against that node with --chain URL")
    if not (run_dir / "blobs").is_dir():
        raise DataError(f"{run_dir} has no blob store (no blobs/ directory): is it a run's output directory?")
    blobs = BlobStore(run_dir / "blobs")
    with _ledger(chain, run_dir) as ledger:
        check_contracts(ledger)
        task_id = find_task(ledger, blobs, task_id)
        task = ledger.task(task_id)
        tm = ledger.deployment.addresses["task_manager"]
        node = f"the run directory's anvil state ({run_dir / 'chain'})" if chain == "auto" else chain
        report = AuditReport(task_id, owner=task.owner, chain=f"chain {ledger.backend.chain_id} at {node}, task "
                             f"manager {tm}", chain_trust=LOCAL_CHAIN_TRUST if chain == "auto" else "")
        try:
            spec = json.loads(blobs.get(task.spec_hash))
        except (IntegrityError, ValueError, OSError) as e:
            raise DataError(f"the task's spec blob is missing or corrupt: {e}") from None
        rules = task_rules(spec)
        bps = ledger.params()["validator_share_bps"]
        pool = task.reward_per_round - task.reward_per_round * bps // 10_000

        previous = initial_model_hash(spec)
        previous_root: bytes | None = None
        spent = 0
        for round_id in range(1, task.current_round + 1):
            record = ledger.round(task_id, round_id)
            if record.status is not RoundStatus.FINALIZED:
                continue
            r = _Round(report, round_id)
            r.check("selection", ledger.verify_selection, task_id, round_id)
            cohort = tuple(ledger.cohort(task_id, round_id, rules.cohort))
            members = {a: _member_number(ledger, a) for a in cohort}
            net = Network(ledger.backend.chain_id, tm, registry_at(ledger, record.opened_block), members)
            view = RoundView(record, cohort, previous, previous_root, 0)
            checker = RoundChecker(task_id, blobs, pool, net, rules.secure, rules.strategy, rules.private, ledger)
            checked = r.check("evidence", checker.verify, view)
            r.require("finality", 3 * record.accept_weight >= 2 * record.committee_weight,
                      f"accepting stake {record.accept_weight} is under 2/3 of {record.committee_weight}")
            rewards = checked.settlement.rewards
            recomputed_root = reward_tree(task_id, round_id, rewards).root if rewards else ZERO32
            r.require("rewards", record.reward_root == recomputed_root,
                      "the posted reward root is not the recomputed settlement's")
            r.require("rewards", ledger.reward_unpaid(task_id, round_id) == checked.settlement.unpaid(pool),
                      "the part of the pool posted as unpaid is not what the recomputed settlement leaves unpaid")
            root, _, _ = ledger.reward_pool(task_id, round_id)
            r.require("rewards", root == recomputed_root,
                      "the rewards contract pays against another root than the recomputed settlement's")
            r.require("privacy", spent <= record.privacy_spent <= task.privacy_budget,
                      f"privacy spent {record.privacy_spent} is below the previous round's or above the budget")
            spent = record.privacy_spent
            previous, previous_root = record.model_hash, record.evidence_root
            report.rounds.append(round_id)
            if checked.recomputed:
                report.recomputed.append(round_id)
        report.privacy_spent = spent / 10**18
    return report


def registry_at(ledger: Ledger, block: int) -> Registry:
    """The chain as PKI as it stood at `block` (a round's opening): each member's key and metadata from its last
    `MemberRegistered`/`MemberUpdated` event up to that block. A key rotated later (`Registry.update_member`,
    possible only outside every task) does not change what an old round's signed messages are checked against."""

    def lookup(address: str) -> tuple[bytes, bytes] | None:
        events = [e for name in ("MemberRegistered", "MemberUpdated") for e in ledger.events(name, member=address)
                  if e.block_number <= block]
        if not events:
            return None
        last = max(events, key=lambda e: (e.block_number, e.log_index)).args
        return _hex(last["pubkey"]), _hex(last["metadata"])

    return Registry(lookup)


def _hex(value: object) -> bytes:
    return value if isinstance(value, bytes) else bytes.fromhex(str(value).removeprefix("0x"))


def _member_number(ledger: Ledger, address: str) -> int:
    """A trainer's member number (its SecAgg+ id): its registration number among the trainers, from 0 (the
    `MemberRegistered` event's number in its role; fixed for life, unlike its place in a task's pool)."""
    registered = ledger.events("MemberRegistered", member=address)
    if not registered or ledger.member(address) is None:
        raise IntegrityError(f"cohort member {address} is not registered")
    return int(registered[0].args["pool_index"]) - 1  # type: ignore[call-overload]
