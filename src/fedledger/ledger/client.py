"""`Ledger`: the typed client a round coordinator, a member or the CLI calls.

One `Ledger` is a session on one chain and one deployment, signing as one account;
`as_account(acct)` (or `dev(i)` on dev chains) gives another signer on the same session, so
the nonce tracking, the event index and the gas record are shared. Every state-changing
method sends one transaction (`stake` may add an `approve`), waits for its receipt within a
bounded time, raises a typed `LedgerRevert` subclass on a revert, records the gas used under
the method's name and feeds the receipt's events to the index.

    with Ledger.connect("auto", run_dir) as owner:
        task = owner.create_task(TaskSpec(spec_hash, reward_per_round=..., rounds=10, privacy_budget=to_fixed(8)))
        for m in members: owner.as_account(m).join_task(task)        # only joined members are drawn
        info = owner.open_round(task)   # commit, then seal: RoundInfo (bound from the task's privacy plan)
        owner.as_account(agg_key).submit_result(task, info.round_id, RoundResult(...))
        for v in committee_keys: owner.as_account(v).vote(task, info.round_id, accept=True)
        owner.finalize(task, info.round_id)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3.exceptions import ContractLogicError

from fedledger.core.errors import IntegrityError
from fedledger.ledger.backends import AnvilBackend, Backend, open_backend
from fedledger.ledger.compiler import compile_source
from fedledger.ledger.deploy import DEPLOYMENT_FILE, Deployment, DeployParams, check_deployment, contracts_for, deploy
from fedledger.ledger.errors import DeploymentError, InvalidArgument, LedgerError, TransactionFailed
from fedledger.ledger.index import EventIndex
from fedledger.ledger.selection import pool_id, select_aggregator, select_cohort, select_committee
from fedledger.ledger.tx import TxSender
from fedledger.ledger.types import (
    ZERO32,
    Endpoint,
    Event,
    GovAction,
    Member,
    ProofBinding,
    Proposal,
    Role,
    RoundId,
    RoundInfo,
    RoundRecord,
    RoundResult,
    RoundStatus,
    ScoringRecord,
    Slash,
    SlashReason,
    TaskId,
    TaskInfo,
    TaskSpec,
)
from fedledger.secagg.keys import check_identity_key

if TYPE_CHECKING:
    from fedledger.zk.onchain import DisputeDomain, Submission

INDEX_FILE = "index.sqlite"
SEAL_WAIT = 120.0  # seconds to wait for a round's committed block on a chain that mines by itself
SEAL_TRIES = 4  # re-commits (a lapsed block hash) before giving up
ZERO_ADDRESS = "0x" + "00" * 20
MAX_ENDPOINT = 128  # bytes of a node endpoint string (registry.vy MAX_ENDPOINT)


def _b32(value: bytes | str, what: str) -> bytes:
    raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)
    if len(raw) != 32:
        raise InvalidArgument(f"{what} must be 32 bytes, got {len(raw)}")
    return raw


def _hexb(value: Any) -> bytes:
    return bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)


class _Session:
    """What all signers of one ledger session share."""

    def __init__(
        self,
        backend: Backend,
        deployment: Deployment,
        index_path: Path | None,
        owns_backend: bool,
        sender: TxSender | None = None,
    ) -> None:
        self.backend = backend
        self.deployment = deployment
        self.w3 = backend.w3
        self.c = contracts_for(self.w3, deployment)
        self.sender = sender or TxSender(self.w3, backend.chain_id, estimate=not backend.dev)
        self.index = EventIndex(
            self.w3,
            self.c,
            path=index_path,
            start_block=deployment.block_number,
            key=deployment.key,
            live=backend.kind != "memory",  # py-evm in-process: every tx is ours, receipts suffice
        )
        self.sender.hooks.append(self.index.ingest_receipt)
        if not self.index.live:
            self.index.sync(fetch=True)  # once: the deployment's own events
        self.owns_backend = owns_backend
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):  # a node already gone: the next session syncs instead
            self.index.sync()  # so a restart resumes from here, not from the deployment block
        self.index.close()
        if self.owns_backend:
            self.backend.close()


class Ledger:
    def __init__(self, session: _Session, account: LocalAccount | None = None) -> None:
        self._s = session
        self._account = account

    @property
    def account(self) -> LocalAccount:
        """The signer (by default the backend's deployer/funder, loaded at first use)."""
        if self._account is None:
            self._account = self._s.backend.funder
        return self._account

    # ------------------------------------------------------------------ sessions
    @classmethod
    def connect(
        cls,
        chain: str = "auto",
        run_dir: Path | str | None = None,
        *,
        params: DeployParams | None = None,
        deploy_if_missing: bool = True,
        force_deploy: bool = False,
        keystore: Path | str | None = None,
    ) -> Ledger:
        """Open the chain (`auto`, `memory` or a URL) for `run_dir`, and find or deploy the contracts."""
        backend = open_backend(chain, run_dir, keystore=keystore)
        try:
            return cls.attach(
                backend,
                params=params,
                deploy_if_missing=deploy_if_missing,
                force_deploy=force_deploy,
                owns_backend=True,
            )
        except BaseException:
            backend.close()
            raise

    @classmethod
    def attach(
        cls,
        backend: Backend,
        *,
        params: DeployParams | None = None,
        deploy_if_missing: bool = True,
        force_deploy: bool = False,
        owns_backend: bool = False,
    ) -> Ledger:
        """A session on an open backend; the deployment comes from its chain dir or is made now."""
        chain_dir = backend.chain_dir
        dep_path = chain_dir / DEPLOYMENT_FILE if chain_dir is not None and backend.kind != "memory" else None
        deployment: Deployment | None = None
        sender = TxSender(backend.w3, backend.chain_id, estimate=not backend.dev)  # records deploy gas too
        if dep_path is not None and dep_path.exists() and not force_deploy:
            deployment = Deployment.load(dep_path)
            check_deployment(backend.w3, deployment)
        if deployment is None:
            if not deploy_if_missing and not force_deploy:
                raise DeploymentError(f"no deployment for {backend.describe()}: run `fedledger chain deploy`")
            deployment = deploy(backend.w3, sender, backend.funder, params or DeployParams())
            if dep_path is not None:
                deployment.save(dep_path)
            backend.persist()
        index_path = chain_dir / INDEX_FILE if chain_dir is not None and backend.kind != "memory" else None
        return cls(_Session(backend, deployment, index_path, owns_backend, sender))

    def as_account(self, account: LocalAccount) -> Ledger:
        """The same session, signing as `account`."""
        return Ledger(self._s, account)

    def dev(self, i: int) -> Ledger:
        """The same session as the i-th deterministic dev account (dev chains: funded with ether)."""
        return self.as_account(self._s.backend.dev_account(i))

    def close(self) -> None:
        self._s.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def address(self) -> str:
        return str(self.account.address)

    @property
    def backend(self) -> Backend:
        return self._s.backend

    @property
    def deployment(self) -> Deployment:
        return self._s.deployment

    @property
    def contracts(self) -> dict[str, Any]:
        return self._s.c

    @property
    def index(self) -> EventIndex:
        return self._s.index

    @property
    def block_number(self) -> int:
        return int(self._s.w3.eth.block_number)

    @property
    def timestamp(self) -> int:
        return int(self._s.w3.eth.get_block("latest")["timestamp"])

    def _tx(self, op: str, call: Any) -> Any:
        return self._s.sender.transact(self.account, op, call)

    def _events(self, receipt: Any, name: str) -> list[Event]:
        return [e for e in self._s.index.ingest_receipt(receipt) if e.name == name]

    def _fn(self, contract: str) -> Any:
        return self._s.c[contract].functions

    # ------------------------------------------------------------------ dev chains
    def advance_time(self, seconds: int) -> None:
        self._s.backend.advance_time(seconds)

    def snapshot(self) -> Any:
        return self._s.backend.snapshot()

    def revert(self, snap: Any) -> None:
        """Revert the chain to a snapshot and forget the events and nonces past it."""
        self._s.backend.revert(snap)
        self._s.sender.reset_nonces()
        self._s.index.rollback_to_head()

    def persist(self) -> None:
        self._s.backend.persist()

    # ------------------------------------------------------------------ gas and events
    def gas_report(self) -> dict[str, dict[str, float]]:
        return self._s.sender.gas_report()

    @property
    def gas_log(self) -> dict[str, list[int]]:
        return self._s.sender.gas

    def events(self, name: str | None = None, **where: Any) -> list[Event]:
        """Indexed events, e.g. `events("Voted", task_id=1, round_id=2)`; addresses are checksummed."""
        where = {k: to_checksum_address(v) if isinstance(v, str) and len(v) == 42 else v for k, v in where.items()}
        return self._s.index.events(name, **where)

    # ------------------------------------------------------------------ tokens
    def utility_balance(self, address: str | None = None) -> int:
        return int(self._fn("utility_token").balanceOf(address or self.address).call())

    def reward_balance(self, address: str | None = None) -> int:
        return int(self._fn("reward_token").balanceOf(address or self.address).call())

    def transfer_utility(self, to: str, amount: int) -> None:
        self._tx("transfer", self._fn("utility_token").transfer(to_checksum_address(to), amount))

    def transfer_reward(self, to: str, amount: int) -> None:
        self._tx("transfer_reward", self._fn("reward_token").transfer(to_checksum_address(to), amount))

    # ------------------------------------------------------------------ registry
    def register(self, role: Role, pubkey: bytes, metadata: bytes = ZERO32) -> Member:
        """Register the signer with `role` and its Ed25519 identity key (32 bytes; it signs the member's messages
        and gives its X25519 key agreement). A malformed, non-canonical or small-order key is refused here
        (`secagg.InvalidKey`), before any transaction: such a key would let anyone forge the member's signatures or
        break its neighbours' key agreement."""
        check_identity_key(pubkey)
        self._tx(
            "register", self._fn("registry").register(int(role), _b32(pubkey, "pubkey"), _b32(metadata, "metadata"))
        )
        member = self.member()
        assert member is not None
        return member

    def update_member(self, pubkey: bytes, metadata: bytes = ZERO32) -> None:
        check_identity_key(pubkey)
        self._tx(
            "update_member", self._fn("registry").update_member(_b32(pubkey, "pubkey"), _b32(metadata, "metadata"))
        )

    def member(self, address: str | None = None, task_id: int | None = None) -> Member | None:
        """A registered member; `pool_index` and `weight` are its place and weight in task
        `task_id`'s pool of its role (0 without a task or if it did not join it)."""
        a = to_checksum_address(address or self.address)
        role, pubkey, metadata = self._fn("registry").members(a).call()
        if role == 0:
            return None
        pool = pool_id(task_id or 0, role)
        return Member(
            address=a,
            role=Role(role),
            pubkey=bytes(pubkey),
            metadata=bytes(metadata),
            pool_index=int(self._fn("registry").index_of(pool, a).call()) if task_id else 0,
            stake=self.stake_of(a),
            weight=int(self._fn("registry").weight_in(pool, a).call()) if task_id else 0,
        )

    def set_endpoint(self, url: str, tls_fingerprint: bytes) -> None:
        """Publish where the signer's node listens ("host:port", at most 128 bytes) and the SHA-256 of its DER TLS
        certificate: peers connect there and accept no other certificate for this address."""
        if not url or len(url.encode()) > MAX_ENDPOINT:
            raise InvalidArgument(f"an endpoint is 1 to {MAX_ENDPOINT} bytes, not {len(url.encode())}")
        self._tx("set_endpoint", self._fn("registry").set_endpoint(url, _b32(tls_fingerprint, "tls_fingerprint")))

    def endpoint(self, address: str | None = None) -> Endpoint | None:
        """A member's published node endpoint and TLS fingerprint, as the chain has them now (None if unset)."""
        a = to_checksum_address(address or self.address)
        url, fingerprint = self._fn("registry").endpoints(a).call()
        if not url:
            return None
        return Endpoint(address=a, url=str(url), tls_fingerprint=bytes(fingerprint))

    def endpoints(self) -> dict[str, Endpoint]:
        """Every member that published an endpoint, with its latest one (from the `EndpointSet` events)."""
        out: dict[str, Endpoint] = {}
        for e in self.events("EndpointSet"):
            a = to_checksum_address(str(e.args["member"]))
            out[a] = Endpoint(address=a, url=str(e.args["url"]), tls_fingerprint=_hexb(e.args["tls_fingerprint"]))
        return out

    def weight_in(self, task_id: int, address: str | None = None) -> int:
        """The member's selection weight in a task it joined (0 otherwise)."""
        m = self.member(address, task_id)
        return 0 if m is None else m.weight

    def refresh_weight(self, task_id: int, address: str) -> None:
        self._tx("refresh_weight", self._fn("registry").refresh_weight(task_id, to_checksum_address(address)))

    def join_task(self, task_id: int) -> None:
        """Opt in to a task with the signer's role and stake: it can now be drawn (or be in a
        cohort) for the task, and the task's rules may slash its stake."""
        self._tx("join_task", self._fn("registry").join_task(task_id))

    def leave_task(self, task_id: int) -> None:
        """Opt out of a task between its rounds."""
        self._tx("leave_task", self._fn("registry").leave_task(task_id))

    def joined(self, task_id: int, address: str | None = None) -> bool:
        return bool(self._fn("registry").joined(task_id, to_checksum_address(address or self.address)).call())

    def pool(self, task_id: int, role: Role, *, before: tuple[int, int] | None = None) -> list[tuple[str, int]]:
        """[(address, weight)] of a task's selection pool of a role, in pool order, from the event index.

        With `before=(block, log_index)` it is the pool as it stood just before that event, which
        is what the contract drew a round's roles from.
        """
        idx = self._s.index
        pid = pool_id(task_id, role)
        entered = idx.events("PoolEntered", before=before, pool=pid)
        order = {str(e.args["member"]): int(e.args["pool_index"]) for e in entered}  # type: ignore[call-overload]
        weights = dict.fromkeys(order, 0)
        for e in idx.events("PoolWeightChanged", before=before, sync=False, pool=pid):
            weights[str(e.args["member"])] = int(e.args["weight"])  # type: ignore[call-overload]
        return sorted(weights.items(), key=lambda kv: order[kv[0]])

    # ------------------------------------------------------------------ staking
    def stake_of(self, address: str | None = None) -> int:
        return int(self._fn("staking").stake_of(to_checksum_address(address or self.address)).call())

    def unbonding_of(self, address: str | None = None) -> tuple[int, int]:
        """(amount unbonding, earliest withdrawal time)."""
        a = to_checksum_address(address or self.address)
        return int(self._fn("staking").unbonding_of(a).call()), int(self._fn("staking").release_time(a).call())

    def stake(self, amount: int) -> None:
        """Stake `amount` utility tokens (approving the staking contract first if needed)."""
        staking = self._s.c["staking"].address
        if int(self._fn("utility_token").allowance(self.address, staking).call()) < amount:
            self._tx("approve", self._fn("utility_token").approve(staking, amount))
        self._tx("stake", self._fn("staking").stake(amount))

    def unbond(self, amount: int) -> None:
        self._tx("unbond", self._fn("staking").unbond(amount))

    def withdraw(self) -> None:
        self._tx("withdraw", self._fn("staking").withdraw())

    # ------------------------------------------------------------------ tasks
    def create_task(self, spec: TaskSpec) -> TaskId:
        """Create a task: the signer (a registered task owner) pays the deposit and the reward
        budget (reward_per_round * rounds) in utility tokens into escrow, approved here first."""
        tm = self._s.c["task_manager"].address
        cost = spec.reward_per_round * spec.rounds + int(self._fn("task_manager").task_deposit().call())
        if cost and int(self._fn("utility_token").allowance(self.address, tm).call()) < cost:
            self._tx("approve", self._fn("utility_token").approve(tm, cost))
        receipt = self._tx(
            "create_task",
            self._fn("task_manager").create_task(
                _b32(spec.spec_hash, "spec_hash"),
                spec.reward_per_round,
                spec.rounds,
                spec.privacy_budget,
                spec.privacy_budget if spec.privacy_per_round is None else spec.privacy_per_round,
                spec.committee_size,
                spec.quorum_bps,
                spec.submit_window,
                spec.vote_window,
            ),
        )
        return TaskId(int(self._events(receipt, "TaskCreated")[0].args["task_id"]))  # type: ignore[call-overload]

    def task(self, task_id: int) -> TaskInfo:
        raw = self._fn("task_manager").tasks(task_id).call()
        if int(raw[0], 16) == 0:
            raise InvalidArgument(f"unknown task {task_id}", "task")
        n = [int(x) for x in raw[2:14]]
        return TaskInfo(
            TaskId(task_id), raw[0], bytes(raw[1]), n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[8], n[9],
            escrow=n[10], deposit=n[11], closed=bool(raw[14]), privacy_per_round=int(raw[15]),
        )

    def close_task(self, task_id: int) -> None:
        """Task owner: close the task; the unspent budget (and the deposit, unless the task is
        abandoned after opening a round and before finishing) go back to the owner."""
        self._tx("close_task", self._fn("task_manager").close_task(task_id))

    def task_count(self) -> int:
        return int(self._fn("task_manager").task_count().call())

    # ------------------------------------------------------------------ rounds
    def _round_info(self, receipt: Any) -> RoundInfo:
        ev = self._events(receipt, "RoundOpened")[0]
        a = ev.args
        return RoundInfo(
            task_id=TaskId(int(a["task_id"])),  # type: ignore[call-overload]
            round_id=RoundId(int(a["round_id"])),  # type: ignore[call-overload]
            attempt=int(a["attempt"]),  # type: ignore[call-overload]
            seed=_hexb(a["seed"]),
            aggregator=str(a["aggregator"]),
            committee=tuple(str(x) for x in a["committee"]),  # type: ignore[attr-defined]
            committee_weight=int(a["committee_weight"]),  # type: ignore[call-overload]
            submit_deadline=int(a["submit_deadline"]),  # type: ignore[call-overload]
            privacy_bound=int(a["privacy_bound"]),  # type: ignore[call-overload]
            block_number=ev.block_number,
        )

    def open_round(self, task_id: int) -> RoundInfo:
        """Task owner: open the next round. Its privacy bound (the task's cumulative privacy spent once
        it is finalized) is the contract's, from the plan fixed at creation: min(spent + per-round
        spend, budget). Opening commits the round to a future block (`commit_round`); this then
        waits for that block and seals the draw (`seal_round`), returning the round's roles."""
        return self.seal_round(task_id, self.commit_round(task_id))

    def commit_round(self, task_id: int) -> RoundId:
        """Task owner: open the next round without sealing it: the round commits to a future block
        and the registry freezes the task's pools for its draw; nobody (the caller included) can
        know the draw yet, nor change it afterwards. Returns the round id."""
        receipt = self._tx("open_round", self._fn("task_manager").open_round(task_id))
        return RoundId(int(self._events(receipt, "RoundCommitted")[0].args["round_id"]))  # type: ignore[call-overload]

    def seal_round(self, task_id: int, round_id: int) -> RoundInfo:
        """Anyone: fix a committed round's seed from the committed block and draw its aggregator
        and committee. Waits for the block first (a dev chain mines one); a lapsed block makes
        the contract commit again, and this tries again."""
        for _ in range(SEAL_TRIES):
            self._await_block(int(self._fn("task_manager").rounds(task_id, round_id).call()[18]) + 1)
            receipt = self._tx("seal", self._fn("task_manager").seal(task_id, round_id))
            if self._events(receipt, "RoundOpened"):
                return self._round_info(receipt)
        raise TransactionFailed(f"round {task_id}/{round_id}: the committed block lapsed {SEAL_TRIES} times")

    def _await_block(self, number: int) -> None:
        """Return once the chain's head is at least block `number` (dev chains mine empty blocks)."""
        deadline = time.monotonic() + SEAL_WAIT
        while self.block_number < number:
            if self._s.backend.dev:
                self._s.backend.mine()
            elif time.monotonic() > deadline:
                raise TransactionFailed(f"block {number} not mined within {SEAL_WAIT:.0f} s")
            else:
                time.sleep(1.0)

    def submit_result(
        self,
        task_id: int,
        round_id: int,
        result: RoundResult,
        *,
        proofs_root: bytes = ZERO32,
        challenge: int = 0,
    ) -> None:
        """The round's aggregator: post the result in one transaction. `result.faulty` names the
        trainers to slash (FAULTY_UPDATE) if the committee finalizes it (at most 32, trainers only).
        `proofs_root` (the `evidence_tree` root of the trainers' signed proof submissions) and
        `challenge` (the linear-check challenge they answer) are what a dispute checks a proof
        against once the round is finalized (`round_binding`); zero when proofs are not used."""
        if not 0 <= challenge < 2**256:
            raise InvalidArgument(f"challenge must be a uint256, got {challenge}", "submit_result")
        if len(result.faulty) > 32:
            raise InvalidArgument(f"at most 32 faulty trainers per result, got {len(result.faulty)}", "submit_result")
        self._tx(
            "submit_result",
            self._fn("task_manager").submit_result(
                task_id,
                round_id,
                _b32(result.model_hash, "model_hash"),
                _b32(result.evidence_root, "evidence_root"),
                _b32(result.survivor_root, "survivor_root"),
                result.survivor_count,
                result.privacy_spent,
                _b32(result.reputation_root, "reputation_root"),
                _b32(result.reward_root, "reward_root"),
                result.reward_unpaid,
                [to_checksum_address(a) for a in result.faulty],
                _b32(proofs_root, "proofs_root"),
                challenge,
            ),
        )

    def report_abort(self, task_id: int, round_id: int, evidence_root: bytes) -> None:
        """The round's aggregator, before its deadline: report that the attempt aborted (too few members
        answered for secure aggregation to finish), with the signed messages it did receive under
        `evidence_root`. Posted as a result with an empty model hash; the committee checks and votes on it
        like a result: accepted, the round is rejected without a slash and nobody is paid (the owner reopens
        it, this aggregator is not drawn first); rejected, the aggregator is slashed (REJECTED_RESULT)."""
        spent = self.task(task_id).privacy_spent  # nothing is released by an abort: the task's own figure
        self.submit_result(task_id, round_id, RoundResult(
            model_hash=ZERO32, evidence_root=evidence_root, survivor_root=ZERO32, survivor_count=0,
            privacy_spent=spent, reputation_root=ZERO32, reward_root=ZERO32, faulty=()))

    def round_binding(self, task_id: int, round_id: int) -> ProofBinding:
        """(proofs root, challenge, attempt) the round's current attempt posted with its result:
        what the task's dispute contract checks proofs against, once the round is finalized."""
        root, challenge, attempt = self._fn("task_manager").round_binding(task_id, round_id).call()
        return ProofBinding(bytes(root), int(challenge), int(attempt))

    def vote(self, task_id: int, round_id: int, accept: bool) -> None:
        """A committee member: accept or reject the submitted result (once)."""
        self._tx("vote", self._fn("task_manager").vote(task_id, round_id, accept))

    def finalize(self, task_id: int, round_id: int) -> RoundStatus:
        """Anyone: finalize at quorum (slashing the trainers the result names as faulty), or record a
        rejection: by a quorum (slashing the aggregator, REJECTED_RESULT) or, once every member has
        voted, a split. Raises `QuorumNotReached` otherwise (wait, or `reopen` after the vote
        deadline). A finalized round is made durable."""
        receipt = self._tx("finalize", self._fn("task_manager").finalize(task_id, round_id))
        status = RoundStatus.FINALIZED if self._events(receipt, "RoundFinalized") else RoundStatus.REJECTED
        if status is RoundStatus.FINALIZED:
            self._s.index.sync()
            self._s.backend.persist()
        return status

    def finalize_outcome(self, task_id: int, round_id: int) -> RoundStatus | None:
        """What `finalize` would do now, asked of the contract itself (one `eth_call`, nothing sent):
        FINALIZED, REJECTED, or None if it would revert (no quorum either way and votes still
        missing, or the round is not awaiting votes). A round driver calls `finalize` when this is
        not None, and `reopen` once the vote deadline has passed while it is None."""
        call = self._fn("task_manager").finalize(task_id, round_id)
        try:
            status = int(call.call({"from": self.address}))
        except Exception as e:  # ContractLogicError on RPC chains, eth-tester's own error on `memory`
            if isinstance(e, ContractLogicError) or "revert" in str(e).lower():
                return None
            raise
        return RoundStatus(status)

    def reopen(self, task_id: int, round_id: int) -> RoundInfo:
        """Restart a round with a new seed after a missed submission deadline (slashing the
        aggregator, MISSED_DEADLINE), after the vote deadline without a quorum either way (slashing
        each committee member that did not vote, MISSED_VOTE; not the aggregator) or after a
        rejection: the task owner at once, anyone else one window later. Each member is slashed
        for a missed deadline or vote at most once per round. The slashes are in
        `slashes(task_id)`. The new draw is sealed as in `open_round`."""
        self.recommit(task_id, round_id)
        return self.seal_round(task_id, round_id)

    def recommit(self, task_id: int, round_id: int) -> None:
        """`reopen` without sealing: the round commits to a future block."""
        self._tx("reopen", self._fn("task_manager").reopen(task_id, round_id))

    def round(self, task_id: int, round_id: int) -> RoundRecord:
        tm = self._fn("task_manager")
        r = tm.rounds(task_id, round_id).call()
        return RoundRecord(
            task_id=TaskId(task_id),
            round_id=RoundId(round_id),
            status=RoundStatus(r[0]),
            attempt=int(r[1]),
            seed=bytes(r[2]),
            opened_block=int(r[3]),
            aggregator=str(r[4]),
            submit_deadline=int(r[5]),
            vote_deadline=int(r[6]),
            privacy_bound=int(r[7]),
            model_hash=bytes(r[8]),
            evidence_root=bytes(r[9]),
            survivor_root=bytes(r[10]),
            survivor_count=int(r[11]),
            privacy_spent=int(r[12]),
            reputation_root=bytes(r[13]),
            reward_root=bytes(r[14]),
            committee_weight=int(r[15]),
            accept_weight=int(r[16]),
            reject_weight=int(r[17]),
            commit_block=int(r[18]),
            excluded=str(r[19]),
            committee=tuple(str(a) for a in tm.committee(task_id, round_id).call()),
            faulty=tuple(str(a) for a in tm.faulty(task_id, round_id).call()),
        )

    def is_committee_member(self, task_id: int, round_id: int, address: str | None = None) -> bool:
        """One storage read on chain: the member's weight in the current attempt's committee."""
        a = to_checksum_address(address or self.address)
        return int(self._fn("task_manager").committee_weight_of(task_id, round_id, a).call()) > 0

    def committee_weight(self, task_id: int, round_id: int, address: str) -> int:
        """The member's weight in the current attempt's committee (0: not a member)."""
        return int(self._fn("task_manager").committee_weight_of(task_id, round_id, to_checksum_address(address)).call())

    def _opened_event(self, task_id: int, round_id: int, attempt: int | None) -> Event:
        opened = self.events("RoundOpened", task_id=task_id, round_id=round_id)
        if attempt is not None:
            opened = [e for e in opened if int(e.args["attempt"]) == attempt]  # type: ignore[call-overload]
        if not opened:
            raise InvalidArgument(f"round {task_id}/{round_id} was never opened", "selection")
        return opened[-1]

    def _committed_at(self, task_id: int, round_id: int, opened: Event) -> tuple[int, int]:
        """(block, log index) of the commitment `opened` sealed: the last `RoundCommitted` of its attempt
        before it. The registry froze the task's pools there; the draw reads them as they stood then."""
        at = (opened.block_number, opened.log_index)
        commits = [e for e in self._s.index.events("RoundCommitted", before=at, task_id=task_id, round_id=round_id)
                   if int(e.args["attempt"]) == int(opened.args["attempt"])]  # type: ignore[call-overload]
        if not commits:
            raise InvalidArgument(f"round {task_id}/{round_id} was opened without a commitment", "selection")
        return commits[-1].block_number, commits[-1].log_index

    def expected_selection(self, task_id: int, round_id: int, attempt: int | None = None) -> tuple[str, list[str]]:
        """(aggregator, committee) recomputed off chain from the seed and the pools' weights as
        they stood when the round (attempt) committed, exactly as the contract draws them."""
        ev = self._opened_event(task_id, round_id, attempt)
        at = self._committed_at(task_id, round_id, ev)
        seed = _hexb(ev.args["seed"])
        excluded = None
        reopened = [
            e
            for e in self.events("RoundReopened", task_id=task_id, round_id=round_id)
            if int(e.args["attempt"]) == int(ev.args["attempt"])  # type: ignore[call-overload]
        ]
        if reopened and int(str(reopened[-1].args["excluded"]), 16) != 0:
            excluded = str(reopened[-1].args["excluded"])
        size = self._committee_size_at(task_id, at)
        aggregator = select_aggregator(seed, self.pool(task_id, Role.AGGREGATOR, before=at), excluded)
        committee = select_committee(seed, self.pool(task_id, Role.VALIDATOR, before=at), size)
        return aggregator, committee

    def _committee_size_at(self, task_id: int, at: tuple[int, int]) -> int:
        size = int(self.events("TaskCreated", task_id=task_id)[0].args["committee_size"])  # type: ignore[call-overload]
        for e in self._s.index.events("ParameterSet", before=at, sync=False, param=6, task_id=task_id):
            size = int(e.args["value"])  # type: ignore[call-overload]
        return size

    def verify_selection(self, task_id: int, round_id: int) -> None:
        """Raise `IntegrityError` unless the chain's aggregator and committee match the off-chain draw."""
        rec = self.round(task_id, round_id)
        aggregator, committee = self.expected_selection(task_id, round_id, rec.attempt)
        if aggregator != rec.aggregator or tuple(committee) != rec.committee:
            raise IntegrityError(f"round {task_id}/{round_id}: on-chain selection differs from the off-chain draw")

    def cohort(self, task_id: int, round_id: int, size: int) -> list[str]:
        """The round's trainer cohort: `size` trainers who joined the task with non-zero weight
        when the sealed attempt committed (before its randomness existed: a trainer joining or
        topping up once it is known changes nothing), ranked by the seed. Computed off chain by
        everyone; nothing is sent."""
        ev = self._opened_event(task_id, round_id, None)
        trainers = [a for a, w in self.pool(task_id, Role.TRAINER, before=self._committed_at(task_id, round_id, ev))
                    if w > 0]
        return select_cohort(_hexb(ev.args["seed"]), trainers, size)

    # ------------------------------------------------------------------ slashing
    def slashes(self, task_id: int | None = None) -> list[Slash]:
        """Every slash (of one task, or all), in chain order, from the event index."""
        where: dict[str, Any] = {} if task_id is None else {"task_id": int(task_id)}
        return [_slash(e) for e in self._s.index.events("Slashed", contract="staking", **where)]

    def is_punished(self, task_id: int, round_id: int, trainer: str) -> bool:
        """Whether `trainer` was slashed for its update in this round (FAULTY_UPDATE or BAD_PROOF)."""
        return bool(self._fn("task_manager").is_punished(task_id, round_id, to_checksum_address(trainer)).call())

    def task_dispute(self, task_id: int) -> str | None:
        """The dispute contract governance registered for a task (None: proofs cannot be disputed)."""
        a = str(self._fn("task_manager").task_dispute(task_id).call())
        return None if int(a, 16) == 0 else to_checksum_address(a)

    def deploy_verifier(self, source: str) -> str:
        """Deploy a Groth16 verifier from its Vyper source (`Groth16Backend.export_vyper(keys)`)."""
        art = compile_source(source, "verifier")
        factory = self._s.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
        return str(self._tx("deploy:verifier", factory.constructor())["contractAddress"])

    def deploy_dispute(
        self,
        verifier: str,
        task_id: int,
        *,
        chunk_size: int,
        chunks: int,
        bound2x: int,
        bound2e: int,
    ) -> str:
        """Deploy task `task_id`'s `UpdateDispute` contract (`fedledger.zk`) on this deployment's task
        manager, which provides each round's proofs root and challenge and slashes offenders. It
        slashes nothing until governance registers it for the task (`propose_task_dispute`)."""
        from fedledger.zk.onchain import DISPUTE_CONTRACT

        art = compile_source(DISPUTE_CONTRACT.read_text(), "update_dispute")
        factory = self._s.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
        receipt = self._tx(
            "deploy:update_dispute",
            factory.constructor(
                to_checksum_address(verifier),
                self._s.c["task_manager"].address,
                task_id,
                chunk_size,
                chunks,
                bound2x,
                bound2e,
            ),
        )
        return str(receipt["contractAddress"])

    def dispute_contract(self, address: str) -> Any:
        """A web3 handle on a deployed `UpdateDispute` contract."""
        from fedledger.zk.onchain import DISPUTE_CONTRACT

        art = compile_source(DISPUTE_CONTRACT.read_text(), "update_dispute")
        return self._s.w3.eth.contract(address=to_checksum_address(address), abi=art.abi)  # type: ignore[arg-type]

    def dispute_domain(
        self, task_id: int, dispute: str | None = None, *, verifier_source: str | None = None
    ) -> DisputeDomain:
        """Where a trainer's proof submissions for task `task_id` can be disputed: this chain and the
        task's registered dispute contract (or `dispute`, checked to serve this task on this
        deployment). Sign submissions with it (`fedledger.zk.onchain.sign_submission`).

        `verifier_source` (`Groth16Backend.export_vyper(keys)` of the keys the task's spec commits
        to, checked with `require_task_keys`): the dispute contract's verifier must run exactly the
        code compiled from it, else `IntegrityError`. A trainer passes it before signing: a dispute
        contract whose verifier holds another setup's key would find its honest proofs invalid (and
        slash it) and let proofs made for that other key through."""
        from fedledger.zk.onchain import DisputeDomain

        address = dispute or self.task_dispute(task_id)
        if address is None:
            raise InvalidArgument(f"task {task_id} has no dispute contract", "dispute_domain")
        contract = self.dispute_contract(address)
        if to_checksum_address(contract.functions.task_manager().call()) != self._s.c["task_manager"].address:
            raise InvalidArgument(
                f"dispute contract {address} does not slash through this deployment", "dispute_domain"
            )
        if int(contract.functions.task_id().call()) != task_id:
            raise InvalidArgument(f"dispute contract {address} does not serve task {task_id}", "dispute_domain")
        if verifier_source is not None:
            verifier = to_checksum_address(contract.functions.verifier().call())
            deployed = bytes(self._s.w3.eth.get_code(verifier))  # type: ignore[arg-type]
            if deployed != compile_source(verifier_source, "verifier").runtime:
                raise IntegrityError(
                    f"dispute contract {address} verifies with {verifier}, which is not the verifier of the task's "
                    "committed key: a proof made for another key would pass it, an honest one fail"
                )
        return DisputeDomain(self._s.backend.chain_id, to_checksum_address(address), task_id)

    def propose_task_dispute(self, task_id: int, dispute: str | None) -> int:
        """Governance proposal registering `dispute` as the task's dispute contract (None removes it);
        vote, `queue` and `execute` it as any proposal."""
        return self.propose(GovAction.TASK_DISPUTE, key=task_id, account=dispute or ZERO_ADDRESS)

    def dispute_proof(self, submission: Submission, path: Sequence[bytes]) -> Slash:
        """Anyone: show that a trainer's signed proof in a finalized round's proofs root is an
        offence; the task manager slashes the trainer (BAD_PROOF). The dispute contract is the
        one the submission was signed for (`submission.domain`). Raises `NotAnOffence` for a
        proof that verifies or that the trainer did not sign for this task, round and attempt,
        `AlreadySlashed` for an offence already slashed, `WrongState` before the round is
        finalized, `NotAuthorized` if the contract is not the task's registered dispute contract."""
        domain = submission.domain
        if domain.chain_id != self._s.backend.chain_id:
            raise InvalidArgument(f"submission signed for chain {domain.chain_id}", "dispute_proof")
        contract = self.dispute_contract(domain.dispute)
        if to_checksum_address(contract.functions.task_manager().call()) != self._s.c["task_manager"].address:
            raise InvalidArgument(
                f"dispute contract {domain.dispute} does not slash through this deployment", "dispute_proof"
            )
        receipt = self._tx(
            "dispute_proof", contract.functions.dispute(*submission.args(), [_b32(p, "path") for p in path])
        )
        return _slash(self._events(receipt, "Slashed")[0])

    # ------------------------------------------------------------------ rewards
    # ------------------------------------------------------------------ score commit-reveal (Scores)
    def publish_scoring(self, task_id: int, round_id: int, evidence_root: bytes) -> None:
        """The round's aggregator: open the committee's score commit-reveal over `evidence_root`."""
        self._tx("publish_scoring", self._fn("scores").publish(task_id, round_id, _b32(evidence_root, "evidence root")))

    def commit_scores(self, task_id: int, round_id: int, commitment: bytes) -> None:
        """A committee member: commit to its score vector (`scores_commitment`)."""
        self._tx("commit_scores", self._fn("scores").commit(task_id, round_id, _b32(commitment, "commitment")))

    def reveal_scores(self, task_id: int, round_id: int, scores_hash: bytes, salt: bytes) -> None:
        """A committer: reveal (scores hash, salt) once commits closed; raises `InvalidProof` on a mismatch."""
        self._tx("reveal_scores", self._fn("scores").reveal(task_id, round_id, _b32(scores_hash, "scores hash"),
                                                            _b32(salt, "salt")))

    def scoring(self, task_id: int, round_id: int, attempt: int) -> ScoringRecord:
        """The scoring record of one attempt (`evidence_root` zero: nothing published)."""
        root, commit_deadline, reveal_deadline, commits, reveals, size = \
            self._fn("scores").attempt_of(task_id, round_id, attempt).call()
        return ScoringRecord(bytes(root), int(commit_deadline), int(reveal_deadline), int(commits), int(reveals),
                             int(size))

    def scores_commitment_of(self, task_id: int, round_id: int, attempt: int, validator: str) -> bytes:
        return bytes(self._fn("scores").commitment_of(task_id, round_id, attempt, validator).call())

    def revealed_scores(self, task_id: int, round_id: int, attempt: int, validator: str) -> bytes:
        """The validator's revealed scores hash in that attempt (zero: none)."""
        return bytes(self._fn("scores").revealed_of(task_id, round_id, attempt, validator).call())

    def reward_unpaid(self, task_id: int, round_id: int) -> int:
        """The part of the round's contributors' pool its current result's reward root pays nobody."""
        return int(self._fn("task_manager").reward_unpaid(task_id, round_id).call())

    def reward_pool(self, task_id: int, round_id: int) -> tuple[bytes, int, int]:
        """(reward root, pool minted for contributors, claimed so far)."""
        root, amount, claimed = self._fn("rewards").pools(task_id, round_id).call()
        return bytes(root), int(amount), int(claimed)

    def claim_reward(
        self, task_id: int, round_id: int, amount: int, proof: Sequence[bytes], account: str | None = None
    ) -> None:
        """Claim `account`'s (default: the signer's) reward with its Merkle proof."""
        a = to_checksum_address(account or self.address)
        self._tx(
            "claim_reward", self._fn("rewards").claim(task_id, round_id, a, amount, [_b32(p, "proof") for p in proof])
        )

    def is_claimed(self, task_id: int, round_id: int, account: str | None = None) -> bool:
        return bool(
            self._fn("rewards").is_claimed(task_id, round_id, to_checksum_address(account or self.address)).call()
        )

    # ------------------------------------------------------------------ reputation
    def reputation_of(self, address: str | None = None, task_id: int | None = None) -> int:
        """The member's score in a task (scores are per task); without a task, in the last task
        it joined (the default score if it joined none)."""
        a = to_checksum_address(address or self.address)
        if task_id is None:
            joined = self._fn("registry").joined_tasks(a).call()
            task_id = int(joined[-1]) if joined else 0
        return int(self._fn("reputation").score_of(task_id, a).call())

    def reputation_epoch(self, task_id: int, round_id: int) -> int:
        """The reputation epoch a finalized round opened (0 if its result carried no root)."""
        evs = self.events("ReputationRootPosted", task_id=task_id, round_id=round_id)
        return int(evs[-1].args["epoch"]) if evs else 0  # type: ignore[call-overload]

    def apply_reputation(self, epoch: int, member: str, score: int, proof: Sequence[bytes]) -> None:
        self._tx(
            "apply_reputation",
            self._fn("reputation").apply(epoch, to_checksum_address(member), score, [_b32(p, "proof") for p in proof]),
        )

    # ------------------------------------------------------------------ governance
    def propose(self, action: GovAction, *, key: int = 0, value: int = 0, account: str | None = None) -> int:
        receipt = self._tx(
            "propose",
            self._fn("governance").propose(
                int(action), key, value, to_checksum_address(account) if account else "0x" + "00" * 20
            ),
        )
        return int(self._events(receipt, "Proposed")[0].args["proposal_id"])  # type: ignore[call-overload]

    def vote_proposal(self, proposal_id: int, support: bool) -> None:
        self._tx("gov_vote", self._fn("governance").vote(proposal_id, support))

    def queue(self, proposal_id: int) -> None:
        self._tx("gov_queue", self._fn("governance").queue(proposal_id))

    def execute(self, proposal_id: int) -> None:
        self._tx("gov_execute", self._fn("governance").execute(proposal_id))

    def proposal(self, proposal_id: int) -> Proposal:
        r = self._fn("governance").proposals(proposal_id).call()
        if int(r[1]) == 0:
            raise InvalidArgument(f"unknown proposal {proposal_id}", "proposal")
        return Proposal(
            proposal_id=proposal_id,
            proposer=str(r[0]),
            action=GovAction(r[1]),
            key=int(r[2]),
            value=int(r[3]),
            account=str(r[4]),
            snapshot_block=int(r[5]),
            vote_end=int(r[6]),
            for_votes=int(r[7]),
            against_votes=int(r[8]),
            eta=int(r[9]),
            executed=bool(r[10]),
        )

    def params(self) -> dict[str, int]:
        """The governable global parameters as they stand."""
        tm, st = self._fn("task_manager"), self._fn("staking")
        out = {
            "max_reward_per_round": int(tm.max_reward_per_round().call()),
            "slash_bps": int(tm.slash_bps().call()),
            "validator_share_bps": int(tm.validator_share_bps().call()),
            "unbonding_delay": int(st.unbonding_delay().call()),
            "task_deposit": int(tm.task_deposit().call()),
            "min_window": int(tm.min_window().call()),
            "max_window": int(tm.max_window().call()),
            "min_committee": int(tm.min_committee().call()),
            "max_committee": int(tm.max_committee().call()),
        }
        for role in (Role.TRAINER, Role.AGGREGATOR, Role.VALIDATOR, Role.TASK_OWNER):
            out[f"min_stake_{role.name.lower()}"] = int(st.min_stake(int(role)).call())
        return out


def _slash(e: Event) -> Slash:
    a = e.args
    return Slash(
        member=to_checksum_address(str(a["member"])),
        amount=int(a["amount"]),  # type: ignore[call-overload]
        reason=SlashReason(int(a["reason"])),  # type: ignore[call-overload]
        evidence=_hexb(a["evidence"]),
        task_id=int(a["task_id"]),  # type: ignore[call-overload]
        round_id=int(a["round_id"]),  # type: ignore[call-overload]
        attempt=int(a["attempt"]),  # type: ignore[call-overload]
        block_number=e.block_number,
        tx_hash=e.tx_hash,
    )


@contextlib.contextmanager
def open_ledger(chain: str = "auto", run_dir: Path | str | None = None, **kwargs: Any) -> Any:
    """`with open_ledger("auto", run_dir) as ledger:` closes (and stops a managed node) on exit."""
    ledger = Ledger.connect(chain, run_dir, **kwargs)
    try:
        yield ledger
    finally:
        ledger.close()


def node_for(run_dir: Path | str) -> AnvilBackend:
    """The managed anvil of a run directory (started, or attached to if already running)."""
    return AnvilBackend(run_dir)


__all__ = ["Ledger", "LedgerError", "node_for", "open_ledger"]
