"""Benchmark of the ledger: gas per operation, transactions per round, chain seconds per round.

    python -m bench.bench_ledger [--quick]      # prints JSON (make bench writes bench/results/ledger.json)

- gas: every operation of a federation's life on anvil (deploy, register, stake, rounds, claims,
  reputation, reopen with a slash, a governance cycle, unbond and withdraw), from the receipts;
- transactions per round with 10, 100 and 1,000 registered, staked trainers who joined the task, all
  of them in the round's cohort and in its reward tree: open + seal + submit + one vote per committee
  member + finalize, the same number whatever the trainer count (claims are pulled by members later,
  off the round);
- gas before and after: every operation's mean gas next to the same figures of the code before the
  chain rules of issue 12 (bench/before.py's BEFORE_COMMIT: its src/ and its own bench_ledger.py, run
  in a fresh process in the same run; written to bench/results/ledger_before.json, which is read back
  only when that commit is not in this checkout's history);
- seconds of chain work per round (open to finalize, committee of 5, no learning) on anvil and on
  the in-process py-evm chain (`memory`);
- the contracts' runtime sizes against the 24,576-byte limit;
- the gas of the slashing paths: `submit_result` and `finalize` with 0, 1, 8 and 32 trainers named
  as faulty (each slashed on finalization), a rejection by quorum (the aggregator slashed), reopen
  after a missed deadline, after a rejection and after a vote timeout with 3, 4 and 5 silent
  committee members (each slashed), and a bad proof disputed through the task's dispute contract.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.before import BEFORE_COMMIT, before_tree
from fedledger.ledger import DeployParams, GovAction, Ledger, Role, RoundResult, TaskSpec, to_fixed
from fedledger.ledger.backends import AnvilBackend, Backend, MemoryBackend
from fedledger.ledger.claims import reputation_tree, reward_tree
from fedledger.ledger.compiler import MAX_CODE_SIZE, compile_all
from fedledger.secagg.keys import Identity

E = 10**18
PARAMS = DeployParams(unbonding_delay=5_000, voting_period=600, timelock=300, max_window=2_000)
COMMITTEE = 5
WINDOW = 2_000
ROUNDS = 50
ROUND_OPS = ("open_round", "seal", "submit_result", "vote", "finalize")
BEFORE = Path(__file__).parent / "results" / "ledger_before.json"


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


class Federation:
    """Members registered and staked on a ledger; runs rounds with the whole trainer set as cohort."""

    def __init__(self, ledger: Ledger, trainers: int, validators: int = 7, aggregators: int = 3) -> None:
        self.ledger = ledger
        self.owner = self._member(1, Role.TASK_OWNER, 0)
        self.aggregators = [self._member(100 + i, Role.AGGREGATOR, 200) for i in range(aggregators)]
        self.validators = [self._member(200 + i, Role.VALIDATOR, 100 + 50 * i) for i in range(validators)]
        self.trainers = [self._member(1_000 + i, Role.TRAINER, 10) for i in range(trainers)]
        self.by = {m.address: m for m in [*self.aggregators, *self.validators]}
        spec = TaskSpec(h("bench task"), 100 * E, ROUNDS, to_fixed(1_000), COMMITTEE, 6667, WINDOW, WINDOW)
        ledger.transfer_utility(self.owner.address, 100 * E * ROUNDS)  # the escrowed reward budget
        self.task = self.owner.create_task(spec)
        for m in [*self.aggregators, *self.validators, *self.trainers]:
            m.join_task(self.task)

    def _member(self, i: int, role: Role, stake: int) -> Ledger:
        m = self.ledger.dev(i)
        self.ledger.transfer_utility(m.address, 1_000 * E)
        m.register(role, Identity(h(f"x25519 {i}")).public_bytes)
        if stake:
            m.stake(stake * E)
        return m

    def submit(
        self, info: Any, faulty: tuple[str, ...] = (), *, proofs_root: bytes = b"\x00" * 32, challenge: int = 0
    ) -> None:
        spent = self.ledger.task(self.task).privacy_spent
        self.by[info.aggregator].submit_result(
            self.task,
            info.round_id,
            RoundResult(h(f"model {info.round_id}"), h("evidence"), h("survivors"), 10, spent, faulty=faulty),
            proofs_root=proofs_root,
            challenge=challenge,
        )

    def round(self, *, reputation: bool = False) -> tuple[Any, Any, float]:
        """One round; returns (RoundInfo, reward tree, seconds of chain work)."""
        start = time.perf_counter()
        spent = self.ledger.task(self.task).privacy_spent
        info = self.owner.open_round(self.task)
        t0 = time.perf_counter()  # off chain: the cohort from the index, the reward and reputation trees
        cohort = self.ledger.cohort(self.task, info.round_id, len(self.trainers))
        tree = reward_tree(self.task, info.round_id, dict.fromkeys(cohort, 20 * E // max(len(cohort), 1)))
        rep = reputation_tree(self.task, info.round_id, dict.fromkeys(cohort[:5], 6_000)) if reputation else None
        offchain = time.perf_counter() - t0
        self.by[info.aggregator].submit_result(
            self.task,
            info.round_id,
            RoundResult(
                model_hash=h(f"model {info.round_id}"),
                evidence_root=h("evidence"),
                survivor_root=h("survivors"),
                survivor_count=len(cohort),
                privacy_spent=spent + to_fixed(0.1),
                reputation_root=rep.root if rep else b"\x00" * 32,
                reward_root=tree.root,
            ),
        )
        for v in info.committee:
            self.by[v].vote(self.task, info.round_id, True)
        self.owner.finalize(self.task, info.round_id)
        return info, (tree, rep), time.perf_counter() - start - offchain


def _tx_counts(ledger: Ledger) -> dict[str, int]:
    return {op: len(v) for op, v in ledger.gas_log.items()}


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {op: after.get(op, 0) - before.get(op, 0) for op in after if after.get(op, 0) != before.get(op, 0)}


def gas_per_operation() -> dict[str, Any]:
    with Ledger.attach(AnvilBackend(), params=PARAMS, owns_backend=True) as ledger:
        fed = Federation(ledger, trainers=20)
        for r in range(3):
            info, (tree, rep), _ = fed.round(reputation=r == 0)
            for t in fed.trainers[:5]:
                if t.address in tree.values:
                    t.claim_reward(fed.task, info.round_id, tree.values[t.address], tree.proof(t.address))
            if rep is not None:
                epoch = ledger.reputation_epoch(fed.task, info.round_id)
                for t in rep.values:  # roots score trainers (aggregators and validators: chain facts)
                    fed.owner.apply_reputation(epoch, t, 6_000, rep.proof(t))
        info = fed.owner.open_round(fed.task)
        ledger.advance_time(WINDOW + 1)
        fed.owner.reopen(fed.task, info.round_id)
        pid = fed.validators[-1].propose(GovAction.SLASH_BPS, value=2_000)
        ledger.advance_time(1)
        for v in fed.validators:
            v.vote_proposal(pid, True)
        ledger.advance_time(PARAMS.voting_period + 1)
        fed.owner.queue(pid)
        ledger.advance_time(PARAMS.timelock)
        fed.owner.execute(pid)
        fed.trainers[0].unbond(10 * E)
        ledger.advance_time(PARAMS.unbonding_delay)
        fed.trainers[0].withdraw()
        return {
            op: {"count": int(r["count"]), "mean": round(r["mean"]), "max": int(r["max"])}
            for op, r in ledger.gas_report().items()
        }


def transactions_per_round(sizes: list[int], rounds: int) -> list[dict[str, Any]]:
    out = []
    for n in sizes:
        with Ledger.attach(AnvilBackend(), params=PARAMS, owns_backend=True) as ledger:
            t0 = time.perf_counter()
            fed = Federation(ledger, trainers=n)
            ledger.index.sync()  # the setup's events: indexing them is setup work, not round work
            setup_s = time.perf_counter() - t0
            per_round, gas, seconds = [], [], []
            for _ in range(rounds):
                before, g0 = _tx_counts(ledger), {op: sum(v) for op, v in ledger.gas_log.items()}
                _, _, s = fed.round()
                d = _delta(before, _tx_counts(ledger))
                per_round.append(sum(d.values()))
                gas.append(sum(sum(v) - g0.get(op, 0) for op, v in ledger.gas_log.items()))
                seconds.append(s)
            out.append(
                {
                    "trainers": n,
                    "committee": COMMITTEE,
                    "transactions_per_round": per_round,
                    "by_operation": d,
                    "gas_per_round": gas,
                    "chain_seconds_per_round": round(statistics.mean(seconds), 4),
                    "chain_seconds_each_round": [round(s, 4) for s in seconds],
                    "setup_seconds": round(setup_s, 2),
                    "setup_transactions": sum(_tx_counts(ledger).values()) - sum(per_round),
                }
            )
    return out


def seconds_per_round(backend: Backend, rounds: int) -> dict[str, Any]:
    with Ledger.attach(backend, params=PARAMS, owns_backend=True) as ledger:
        fed = Federation(ledger, trainers=10)
        ledger.index.sync()
        secs = [fed.round()[2] for _ in range(rounds)]
        return {
            "chain": backend.kind,
            "rounds": rounds,
            "transactions_per_round": 4 + COMMITTEE,
            "seconds_per_round_mean": round(statistics.mean(secs), 4),
            "seconds_per_round_max": round(max(secs), 4),
            "transactions_per_second": round((4 + COMMITTEE) / statistics.mean(secs), 1),
        }


ACCEPT_ALL_VERIFIER = """# pragma version ~=0.4.3
@external
@view
def verifyProof(a: uint256[2], b: uint256[2][2], c: uint256[2], input: uint256[12]) -> bool:
    return True
"""


def slashing_gas() -> dict[str, Any]:
    """Gas of each slashing path, every scenario from the same chain state (snapshot and revert)."""
    from fedledger.zk.onchain import evidence_tree, sign_submission

    with Ledger.attach(AnvilBackend(), params=PARAMS, owns_backend=True) as ledger:
        fed = Federation(ledger, trainers=32)
        base = ledger.snapshot()
        tm = ledger.contracts["task_manager"].functions
        out: dict[str, Any] = {"committee": COMMITTEE}

        def last(op: str) -> int:
            return int(ledger.gas_log[op][-1])

        def fresh() -> None:
            nonlocal base
            ledger.revert(base)
            base = ledger.snapshot()

        accepted = {}
        for k in (0, 1, 8, 32):
            info = fed.owner.open_round(fed.task)
            fed.submit(info, tuple(t.address for t in fed.trainers[:k]))
            for v in info.committee:
                fed.by[v].vote(fed.task, info.round_id, True)
            fed.owner.finalize(fed.task, info.round_id)
            assert len(ledger.slashes(fed.task)) == k
            accepted[k] = {"submit_result": last("submit_result"), "finalize": last("finalize")}
            fresh()
        out["accepted_with_faulty_trainers"] = accepted

        info = fed.owner.open_round(fed.task)
        fed.submit(info)
        for v in info.committee:
            fed.by[v].vote(fed.task, info.round_id, False)
        fed.owner.finalize(fed.task, info.round_id)
        out["finalize_rejected_by_quorum"] = last("finalize")  # one slash: the aggregator
        fed.owner.reopen(fed.task, info.round_id)
        out["reopen_after_rejection"] = last("reopen")  # no slash, a new draw without the aggregator
        fresh()

        info = fed.owner.open_round(fed.task)
        ledger.advance_time(WINDOW + 1)
        fed.owner.reopen(fed.task, info.round_id)
        out["reopen_missed_deadline"] = last("reopen")  # one slash: the aggregator
        fresh()

        timeout = {}
        for voters in (0, 1, 2):
            info = fed.owner.open_round(fed.task)
            fed.submit(info)
            weight = {v: int(tm.committee_weight_of(fed.task, info.round_id, v).call()) for v in info.committee}
            for v in sorted(info.committee, key=weight.__getitem__)[:voters]:
                fed.by[v].vote(fed.task, info.round_id, True)
            ledger.advance_time(WINDOW + 1)
            fed.owner.reopen(fed.task, info.round_id)
            timeout[len(info.committee) - voters] = last("reopen")
            fresh()
        out["reopen_vote_timeout_by_silent_members"] = timeout

        # a bad proof disputed through the task's registered dispute contract (a verifier that
        # accepts everything stands in: the offence is a wrong norm bound, found before any pairing)
        verifier = fed.owner.deploy_verifier(ACCEPT_ALL_VERIFIER)
        dispute = fed.owner.deploy_dispute(verifier, fed.task, chunk_size=16, chunks=1, bound2x=1, bound2e=1)
        pid = fed.validators[-1].propose_task_dispute(fed.task, dispute)
        ledger.advance_time(1)
        for v in fed.validators:
            v.vote_proposal(pid, True)
        ledger.advance_time(PARAMS.voting_period + 1)
        fed.owner.queue(pid)
        ledger.advance_time(PARAMS.timelock)
        fed.owner.execute(pid)
        domain = ledger.dispute_domain(fed.task)
        info = fed.owner.open_round(fed.task)
        public = [0, 0, 1, 1, 0, 0, 0, 12345, 1, 0, 2, 1]  # claims bound2x = 2, the task's is 1
        subs = [
            sign_submission(bytes(t.account.key), domain, info.round_id, info.attempt, bytes(256), public)
            for t in fed.trainers[:8]
        ]
        root, paths = evidence_tree([x.leaf() for x in subs])
        fed.submit(info, proofs_root=root, challenge=12345)
        out["submit_result_with_proofs_root"] = last("submit_result")
        for v in info.committee:
            fed.by[v].vote(fed.task, info.round_id, True)
        fed.owner.finalize(fed.task, info.round_id)
        fed.trainers[-1].dispute_proof(subs[0], paths[0])
        out["dispute_proof_8_leaves"] = last("dispute_proof")
        out["deploy_update_dispute"] = last("deploy:update_dispute")
        return out


def contract_sizes() -> dict[str, Any]:
    return {
        name: {"bytes": a.code_size, "limit": MAX_CODE_SIZE, "share": round(a.code_size / MAX_CODE_SIZE, 3)}
        for name, a in compile_all().items()
    }


#: run inside the before commit's tree (its src/ and bench/ on the path, not this checkout's: `python -P`)
_BEFORE_SCRIPT = """
import json, os, subprocess
import bench.bench_ledger as b
print(json.dumps({"commit": open(".commit").read().strip() if os.path.exists(".commit") else None,
                  "contract_sizes": b.contract_sizes(), "gas_per_operation": b.gas_per_operation(),
                  "slashing_gas": b.slashing_gas(),
                  "transactions_per_round": b.transactions_per_round(%r, %d)}))
"""


def measure_before(sizes: list[int], rounds: int) -> dict[str, Any]:
    """BEFORE_COMMIT's own bench_ledger on its own src/, in a fresh process: gas per operation, contract sizes,
    the slashing paths' gas, transactions per round. Written to BEFORE; if the commit cannot be extracted, the
    last such file is used."""
    try:
        tree = before_tree(BEFORE_COMMIT, ("src", "bench"))
    except (OSError, subprocess.CalledProcessError) as e:
        if BEFORE.exists():
            return {**json.loads(BEFORE.read_text()), "note": f"read from {BEFORE.name}: {e}"}
        return {"error": f"the before code is unavailable: {e}"}
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}"}
    done = subprocess.run([sys.executable, "-P", "-c", _BEFORE_SCRIPT % (sizes, rounds)], env=env, cwd=tree,
                          capture_output=True, text=True, timeout=3_600)
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-800:]}"}
    out = json.loads(done.stdout.strip().splitlines()[-1])
    BEFORE.write_text(json.dumps(out, indent=2) + "\n")
    return out


def before_and_after(after: dict[str, Any], before_figures: dict[str, Any] | None = None) -> dict[str, Any]:
    """Mean gas of each operation before the issue-12 rules and now (None: no such operation)."""
    if before_figures is None or "gas_per_operation" not in before_figures:
        if not BEFORE.exists():
            return {}
        before_figures = json.loads(BEFORE.read_text())
    before = before_figures["gas_per_operation"]
    ops = sorted(set(before) | set(after))
    return {op: {"before": before.get(op, {}).get("mean"), "after": after.get(op, {}).get("mean")} for op in ops}


def run(quick: bool = False) -> dict[str, Any]:
    sizes = [10, 100] if quick else [10, 100, 1_000]
    rounds = 2 if quick else 5
    gas = gas_per_operation()
    before = measure_before(sizes[:2], rounds)
    return {
        "contract_sizes": contract_sizes(),
        "gas_per_operation": gas,
        "before": {"commit": BEFORE_COMMIT, **{k: before[k] for k in (
            "contract_sizes", "transactions_per_round", "slashing_gas", "error", "note") if k in before}},
        "gas_before_and_after": before_and_after(gas, before),
        "slashing_gas": slashing_gas(),
        "transactions_per_round": transactions_per_round(sizes, rounds),
        "chain_seconds_per_round": [
            seconds_per_round(AnvilBackend(), rounds),
            seconds_per_round(MemoryBackend(), 2 if quick else 3),
        ],
        **_stamp(),
    }


def _stamp() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "git_commit": commit,
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(quick=parser.parse_args().quick), indent=2))
