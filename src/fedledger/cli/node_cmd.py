"""`fedledger node` (one member's daemon) and `fedledger task create|status` (the task owner's side).

    fedledger node --chain URL --keystore FILE --listen HOST:PORT --state DIR
                   [--roles trainer|aggregator|validator|owner]
                   [--data shard|shard:I|file:PATH] [--tasks ID,...] [--deployment FILE] [--advertise HOST:PORT]
                   [--metrics HOST:PORT] [--password-file F] [--patience S]
    fedledger task create --config FILE.toml --chain URL --keystore FILE --state DIR [--deployment FILE]
    fedledger task status --chain URL [TASK] [--deployment FILE | --state DIR] [--json]

The keystore password comes from --password-file or $FEDLEDGER_KEYSTORE_PASSWORD. See docs/node.md.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from fedledger.core.errors import ConfigError

TOKEN = 10**18


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("node", help="run one member's node: its role, on a chain, over the network")
    p.add_argument("--chain", required=True, metavar="URL", help="JSON-RPC URL of the chain")
    p.add_argument("--keystore", required=True, type=Path, metavar="FILE", help="the member's encrypted keystore")
    p.add_argument("--password-file", type=Path, metavar="F", 
                   help="keystore password (else $FEDLEDGER_KEYSTORE_PASSWORD)")
    p.add_argument("--listen", required=True, metavar="HOST:PORT", help="where the node's gRPC server listens")
    p.add_argument("--advertise", metavar="HOST:PORT", help="the endpoint published on chain (default: --listen)")
    p.add_argument("--state", type=Path, metavar="DIR", help="state directory (default: ./fedledger-node-ADDRESS)")
    p.add_argument("--roles", default="trainer", help="trainer, aggregator, validator or owner (one per account)")
    p.add_argument("--data", default="shard", help="shard, shard:I or file:PATH")
    p.add_argument("--tasks", default="", metavar="ID,...", help="tasks to join and run")
    p.add_argument("--deployment", type=Path, metavar="FILE", help="the contracts' deployment.json (kept in --state)")
    p.add_argument("--metrics", metavar="HOST:PORT", help="serve /metrics (Prometheus) and /healthz here")
    p.add_argument("--patience", type=float, default=10.0, metavar="S",
                   help="seconds without progress before a role acts on what it has (collection, vote)")
    p.set_defaults(func=cmd_node)

    task = subparsers.add_parser("task", help="create a task (the owner) or show tasks")
    sub = task.add_subparsers(dest="task_command", required=True)
    c = sub.add_parser("create", help="publish a task spec by hash and create the task on chain")
    c.add_argument("--config", required=True, type=Path, metavar="FILE.toml")
    c.add_argument("--chain", required=True, metavar="URL")
    c.add_argument("--keystore", required=True, type=Path, metavar="FILE")
    c.add_argument("--password-file", type=Path, metavar="F")
    c.add_argument("--state", required=True, type=Path, metavar="DIR",
                   help="the owner node's state directory: the spec blob is served from there")
    c.add_argument("--deployment", type=Path, metavar="FILE")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_task_create)
    s = sub.add_parser("status", help="a task's rounds as the chain has them")
    s.add_argument("task", nargs="?", type=int)
    s.add_argument("--chain", required=True, metavar="URL")
    s.add_argument("--deployment", type=Path, metavar="FILE")
    s.add_argument("--state", type=Path, metavar="DIR", help="a node's state directory (holds the deployment)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_task_status)


def _tasks(text: str) -> tuple[int, ...]:
    parts = [t.strip() for t in text.split(",") if t.strip()]
    if not all(t.isdigit() and int(t) > 0 for t in parts):
        raise ConfigError(f"--tasks {text!r}: task ids are positive integers, comma separated")
    return tuple(int(t) for t in parts)


def cmd_node(args: argparse.Namespace) -> int:
    from fedledger.node.chain import load_keystore, read_password
    from fedledger.node.daemon import NodeDaemon, NodeOptions, parse_role
    from fedledger.node.work import DataChoice

    role = parse_role(args.roles)
    data = DataChoice.parse(args.data)
    tasks = _tasks(args.tasks)
    if not args.keystore.exists():
        raise ConfigError(f"--keystore {args.keystore}: no such file")
    password = read_password(args.password_file)
    state = args.state
    if state is None:
        state = Path(f"fedledger-node-{load_keystore(args.keystore, password).address}")
    opts = NodeOptions(chain=args.chain, keystore=args.keystore, password=password, listen=args.listen, state=state,
                       role=role, data=data, tasks=tasks, deployment=args.deployment, advertise=args.advertise,
                       metrics=args.metrics, patience=args.patience)
    daemon = NodeDaemon(opts)
    signal.signal(signal.SIGTERM, lambda *_: daemon.stopping.set())
    try:
        daemon.start()
    except BaseException:
        daemon.close()
        raise
    try:
        daemon.run()
    except KeyboardInterrupt:
        daemon.stopping.set()
    return 0


def load_task_config(path: Path) -> tuple[Any, dict[str, Any]]:
    """(FederationConfig, the [task] table: reward_per_round in tokens, submit_window, vote_window, quorum_bps)."""
    from fedledger.core.config import build_config, resolve_paths

    try:
        values = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"--config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config {path}: not TOML ({e})") from None
    task = values.pop("task", {})
    known = {"reward_per_round", "submit_window", "vote_window", "quorum_bps"}
    if not isinstance(task, dict) or set(task) - known:
        raise ConfigError(f"--config {path}: [task] takes {', '.join(sorted(known))}")
    values.setdefault("ledger", {})
    if isinstance(values["ledger"], dict):
        values["ledger"]["chain"] = "auto"
    return build_config(resolve_paths(values, path.parent)), task


def cmd_task_create(args: argparse.Namespace) -> int:
    from fedledger.core.blobstore import BlobStore
    from fedledger.data import load_data
    from fedledger.ledger import Role, TaskSpec
    from fedledger.node.chain import load_keystore, open_chain, read_password
    from fedledger.node.daemon import role_identity
    from fedledger.protocol.terms import terms_from_spec
    from fedledger.sim.onchain import QUORUM_BPS, REWARD_PER_ROUND

    cfg, task = load_task_config(args.config)
    data = load_data(cfg)
    spec = {**cfg.model_dump(exclude={"out", "baseline"}), "input_shape": list(data.input_shape),
            "num_classes": data.num_classes}
    terms = terms_from_spec(spec)  # what every member checks the chain against before it joins
    account = load_keystore(args.keystore, read_password(args.password_file))
    blobs = BlobStore(args.state / "blobs")
    spec_hash = blobs.put(json.dumps(spec, sort_keys=True).encode())  # as `fedledger run` publishes it
    with open_chain(args.chain, args.state, deployment=args.deployment, signer=account) as ledger:
        me = ledger.member()
        if me is None:
            ledger.register(Role.TASK_OWNER, role_identity(account).public_bytes)
        elif me.role is not Role.TASK_OWNER:
            raise ConfigError(f"{ledger.address} is registered as {me.role.name.lower()}; a task owner needs its own "
                              "account")
        reward = int(float(task.get("reward_per_round", REWARD_PER_ROUND / TOKEN)) * TOKEN)
        need = reward * cfg.rounds + ledger.params()["task_deposit"]
        if ledger.utility_balance() < need:
            raise ConfigError(f"{ledger.address} holds {ledger.utility_balance() / TOKEN:g} utility tokens; the task "
                              f"escrows {need / TOKEN:g} (rewards for {cfg.rounds} rounds and the deposit)")
        spec_tx = TaskSpec(spec_hash=spec_hash, reward_per_round=reward, rounds=terms.rounds,
                           privacy_budget=terms.privacy_budget, privacy_per_round=terms.privacy_per_round,
                           committee_size=terms.committee_size, quorum_bps=int(task.get("quorum_bps", QUORUM_BPS)),
                           submit_window=int(task.get("submit_window", 3600)),
                           vote_window=int(task.get("vote_window", 3600)))
        task_id = int(ledger.create_task(spec_tx))
    payload = {"task": task_id, "spec_hash": "0x" + spec_hash.hex(), "owner": account.address,
               "rounds": cfg.rounds, "spec_blob": str(blobs._path(spec_hash))}
    print(json.dumps(payload) if args.json else
          f"task {task_id} created by {account.address}; spec 0x{spec_hash.hex()} in {args.state / 'blobs'}: "
          f"run `fedledger node --roles owner --state {args.state} --tasks {task_id}` to serve it and run the rounds")
    return 0


def cmd_task_status(args: argparse.Namespace) -> int:
    from fedledger.cli.chain_cmd import status_payload
    from fedledger.node.chain import open_chain

    with tempfile.TemporaryDirectory(prefix="fedledger-status-") as tmp:
        state = args.state if args.state is not None else Path(tmp)
        with open_chain(args.chain, state, deployment=args.deployment) as ledger:
            payload = status_payload(ledger)
            tasks = payload["tasks"]
            if args.task is not None:
                tasks = [t for t in tasks if t["task"] == args.task]
                if not tasks:
                    raise ConfigError(f"no task {args.task} on this chain ({len(payload['tasks'])} tasks)")
                rounds = []
                for rid in range(1, (tasks[0]["current_round"] or {}).get("round", 0) + 1):
                    r = ledger.round(args.task, rid)
                    rounds.append({"round": rid, "status": r.status.name.lower(), "attempt": r.attempt,
                                   "aggregator": r.aggregator, "model_hash": "0x" + r.model_hash.hex()})
                tasks[0]["rounds_on_chain"] = rounds
    if args.json:
        print(json.dumps(tasks if args.task is None else tasks[0], indent=2))
        return 0
    for t in tasks:
        cur = t["current_round"]
        now = f"round {cur['round']} {cur['status']} (attempt {cur['attempt']})" if cur else "no round opened"
        print(f"task {t['task']}  owner {t['owner']}  finalized {t['finalized_rounds']}/{t['rounds']}  {now}")
        for r in t.get("rounds_on_chain", []):
            print(f"  round {r['round']}: {r['status']} (attempt {r['attempt']}) model {r['model_hash'][:18]}")
    sys.stdout.flush()
    return 0
