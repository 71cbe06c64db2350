"""An owner who commits on chain other terms than its task's spec fixes (a larger committee, a privacy budget the
spec does not spend) cannot draw members in: a real `fedledger node` trainer process, with the spec in hand, checks
the committed terms against it before it joins (`protocol.terms.check_task_terms` in `NodeDaemon.join`), logs
why it refuses, and never joins on chain, while it joins the same owner's honest task at once; and once it has
joined, a change of the committed terms (a governance decision) stops it before the next round."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from fedledger.core.config import WHOLE_SYSTEM, load_config
from fedledger.ledger import GovAction, Ledger, Role, to_fixed
from fedledger.ledger.anvil import find_anvil
from fedledger.ledger.backends import AnvilBackend
from fedledger.ledger.types import TaskSpec
from fedledger.node.daemon import STAKES, role_identity
from fedledger.node.testnet import PASSWORD_FILE, Testnet, node_argv

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed (make node)")]


def log_events(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def test_a_trainer_node_refuses_a_task_whose_committed_terms_its_spec_does_not_fix(tmp_path: Path) -> None:
    cfg = load_config(None, {"dataset": "digits", "model": "logreg", "rounds": 2, "max_samples": 300, "proofs": "none",
                             "privacy.dp": "none", "privacy.secagg": False, "ledger.chain": "auto",
                             "ledger.enabled": True, "ledger.committee": 3}, base=WHOLE_SYSTEM)
    net = Testnet(tmp_path)
    m = net.create(cfg, 1, aggregators=1)
    backend = AnvilBackend(tmp_path)
    ledger = Ledger.attach(backend, owns_backend=True)
    trainer = m.node("m01")
    proc: subprocess.Popen[bytes] | None = None
    try:
        m.chain_url = backend.url
        m.save(tmp_path)
        net.fund(ledger, m)
        honest = net._create_task(ledger, m.node("owner"))  # `fedledger task create`: the terms its spec fixes
        m.task_id = honest
        m.save(tmp_path)
        net._hand_out_spec(ledger, m)  # the trainer holds the spec the chain names
        info = ledger.task(honest)
        password = (tmp_path / PASSWORD_FILE).read_text().strip()
        key = Account.decrypt(json.loads((m.node("owner").dir(tmp_path) / "keystore.json").read_text()), password)
        owner = ledger.as_account(Account.from_key(key))
        lie = TaskSpec(spec_hash=info.spec_hash, reward_per_round=info.reward_per_round, rounds=info.rounds,
                       privacy_budget=info.privacy_budget, committee_size=info.committee_size,
                       privacy_per_round=info.privacy_per_round)
        bigger_committee = int(owner.create_task(TaskSpec(**{**_fields(lie),
                                                             "committee_size": info.committee_size + 2})))
        budget = to_fixed(8.0)  # the spec spends no privacy: it fixes the no-privacy budget
        more_privacy = int(owner.create_task(TaskSpec(**{**_fields(lie), "privacy_budget": budget,
                                                         "privacy_per_round": budget})))
        assert ledger.task(bigger_committee).spec_hash == ledger.task(more_privacy).spec_hash == info.spec_hash

        argv = node_argv(tmp_path, m, trainer)
        argv[argv.index("--tasks") + 1] = f"{bigger_committee},{more_privacy},{honest}"  # told of all three
        log = trainer.dir(tmp_path) / "node.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=trainer.dir(tmp_path), start_new_session=True)
        refused: dict[int, str] = {}
        end = time.monotonic() + 600
        while time.monotonic() < end:
            for e in log_events(log):
                if e.get("event") == "join_failed" and e.get("task") in (bigger_committee, more_privacy):
                    refused[e["task"]] = e["error"]
            if len(refused) == 2 and ledger.joined(honest, trainer.address):
                break
            assert "Traceback" not in log.read_text(errors="replace"), log.read_text()[-2000:]
            time.sleep(1.0)
        assert ledger.joined(honest, trainer.address), log.read_text()[-2000:]  # the node can join: a live control
        assert "committee_size 5 (the spec fixes 3)" in refused[bigger_committee]
        assert f"privacy_budget {budget} (the spec fixes 1)" in refused[more_privacy]
        time.sleep(3.0)  # several more passes of its loop: it keeps refusing
        assert not ledger.joined(bigger_committee, trainer.address)
        assert not ledger.joined(more_privacy, trainer.address)
        events = log_events(log)
        assert any(e.get("event") == "joined" and e.get("task") == honest for e in events)
        assert not any(e.get("event") == "joined" and e.get("task") in (bigger_committee, more_privacy) for e in events)

        # once joined: governance moves the honest task's committee size away from its spec's (a passed proposal
        # of the staked validators); before each round the node re-checks the terms, logs it and does nothing
        gov = ledger.contracts["governance"].functions
        voters = []
        for v in (n for n in m.nodes if n.role == "validator"):
            account = Account.from_key(Account.decrypt(json.loads((v.dir(tmp_path) / "keystore.json").read_text()),
                                                       password))
            voter = ledger.as_account(account)
            voter.register(Role.VALIDATOR, role_identity(account).public_bytes)
            voter.stake(STAKES[Role.VALIDATOR])
            voters.append(voter)
        ledger.advance_time(1)
        pid = voters[0].propose(GovAction.TASK_COMMITTEE_SIZE, key=honest, value=info.committee_size + 1)
        ledger.advance_time(1)
        for voter in voters:
            voter.vote_proposal(pid, True)
        ledger.advance_time(int(gov.voting_period().call()) + 1)
        voters[0].queue(pid)
        ledger.advance_time(int(gov.timelock().call()))
        voters[0].execute(pid)
        assert ledger.task(honest).committee_size == info.committee_size + 1
        seen = len(log_events(log))
        end = time.monotonic() + 120
        changed: list[dict[str, Any]] = []
        while not changed and time.monotonic() < end:
            changed = [e for e in log_events(log)[seen:] if e.get("event") == "terms_changed"]
            time.sleep(0.5)
        assert changed and changed[0]["task"] == honest, log.read_text()[-2000:]
        assert f"committee_size {info.committee_size + 1} (the spec fixes 3)" in changed[0]["error"]
        assert not any(e.get("event") in ("acted", "round") for e in log_events(log)[seen:])
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        ledger.close()


def _fields(spec: TaskSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in TaskSpec.__dataclass_fields__}
