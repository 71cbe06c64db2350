"""`fedledger chain up|status|deploy`: the ledger's chain from the shell.

    fedledger chain up     [--out DIR] [--force-deploy] [--once]   # managed anvil for DIR, deployed
    fedledger chain status [--out DIR] [--chain auto|memory|URL] [--json]
    fedledger chain deploy [--out DIR] [--chain auto|memory|URL] [--force] [--keystore FILE]
    fedledger chain advance SECONDS [--out DIR]                    # dev chains: move the clock on

The chain state, the deployment file and the event index live in DIR/chain/. `up` keeps the node
running until Ctrl-C (or SIGTERM), so `status` or a run in another terminal attaches to it;
without a running node `status` starts one on the saved state for as long as it reads.
An RPC chain signs with `$FEDLEDGER_KEYSTORE` (+ `$FEDLEDGER_KEYSTORE_PASSWORD`) or
`$FEDLEDGER_PRIVATE_KEY`; keys are never written to disk.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from typing import Any

DEFAULT_OUT = "runs/latest"


def register(subparsers: argparse._SubParsersAction) -> None:
    chain = subparsers.add_parser("chain", help="start, inspect or deploy the ledger's chain")
    sub = chain.add_subparsers(dest="chain_command", required=True)

    def common(p: argparse.ArgumentParser, *, chain_flag: bool = True) -> None:
        p.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), metavar="DIR",
                       help="run directory (chain state in DIR/chain)")
        if chain_flag:
            p.add_argument("--chain", default="auto", metavar="auto|memory|URL",
                           help="auto (managed anvil), memory (py-evm) or an http(s):// URL")
            p.add_argument("--keystore", type=Path, metavar="FILE", help="encrypted JSON keystore for an RPC chain")

    p = sub.add_parser("up", help="start the managed anvil for a run directory and deploy (or find) the contracts")
    common(p, chain_flag=False)
    p.add_argument("--force-deploy", action="store_true", help="deploy a fresh set of contracts")
    p.add_argument("--once", action="store_true", help="deploy or check, print, stop the node and exit")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("status", help="block number, contract addresses, tasks and rounds")
    common(p)
    p.add_argument("--deployment", type=Path, metavar="FILE",
                   help="with --chain URL: the contracts' deployment.json (else DIR/chain/deployment.json)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("deploy", help="deploy the contracts to the chosen chain and write OUT/chain/deployment.json")
    common(p)
    p.add_argument("--force", action="store_true", help="deploy even if a deployment is already there")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("advance", help="dev chains: move the chain's clock on (past a deadline or a timelock)")
    common(p, chain_flag=False)
    p.add_argument("seconds", type=int, help="seconds to move on")
    p.set_defaults(func=cmd_advance)


def _addresses(ledger: Any) -> dict[str, str]:
    return dict(ledger.deployment.addresses)


def status_payload(ledger: Any) -> dict[str, Any]:
    """Everything `chain status` prints, as a dict."""
    from fedledger.ledger.types import RoundStatus, from_fixed

    tasks = []
    for task_id in range(1, ledger.task_count() + 1):
        t = ledger.task(task_id)
        current = None
        if t.current_round:
            r = ledger.round(task_id, t.current_round)
            current = {
                "round": t.current_round,
                "status": RoundStatus(r.status).name.lower(),
                "attempt": r.attempt,
                "aggregator": r.aggregator,
                "committee": len(r.committee),
            }
        tasks.append(
            {
                "task": task_id,
                "owner": t.owner,
                "finalized_rounds": t.finalized_rounds,
                "rounds": t.rounds,
                "privacy_spent": from_fixed(t.privacy_spent),
                "privacy_budget": from_fixed(t.privacy_budget),
                "reward_per_round": t.reward_per_round,
                "current_round": current,
            }
        )
    ledger.index.sync()
    return {
        "chain": ledger.backend.describe(),
        "chain_id": ledger.backend.chain_id,
        "block": ledger.block_number,
        "deployment_block": ledger.deployment.block_number,
        "contracts": _addresses(ledger),
        "indexed_events": ledger.index.count(),
        "tasks": tasks,
    }


def _print_status(payload: dict[str, Any]) -> None:
    print(f"chain     {payload['chain']} (chain id {payload['chain_id']})")
    print(f"block     {payload['block']} (deployed at {payload['deployment_block']})")
    for name, address in payload["contracts"].items():
        print(f"  {name:<14} {address}")
    if not payload["tasks"]:
        print("tasks     none")
    for t in payload["tasks"]:
        cur = t["current_round"]
        now = f"round {cur['round']} {cur['status']} (attempt {cur['attempt']})" if cur else "no round opened"
        print(
            f"task {t['task']}: {t['finalized_rounds']}/{t['rounds']} rounds finalized, "
            f"privacy {t['privacy_spent']:.4g}/{t['privacy_budget']:.4g}, {now}"
        )


def cmd_status(args: argparse.Namespace) -> int:
    from fedledger.core.errors import DataError
    from fedledger.ledger import Ledger

    if args.chain == "auto" and not (args.out / "chain").is_dir():  # reading must not create a chain directory
        raise DataError(f"no chain state in {args.out} (no {args.out / 'chain'} directory): name a run with --out DIR, "
                        "start one with `fedledger chain up --out DIR`, or give a node with --chain URL")

    if getattr(args, "deployment", None) is not None:  # a node's view: the deployment file names the contracts
        import tempfile

        from fedledger.node.chain import open_chain

        with tempfile.TemporaryDirectory(prefix="fedledger-status-") as tmp, \
                open_chain(args.chain, Path(tmp), deployment=args.deployment) as ledger:
            payload = status_payload(ledger)
    else:
        with Ledger.connect(
            args.chain, args.out, deploy_if_missing=args.chain == "memory", keystore=args.keystore
        ) as ledger:
            payload = status_payload(ledger)
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        _print_status(payload)
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from fedledger.ledger import Ledger

    with Ledger.connect(args.chain, args.out, force_deploy=args.force, keystore=args.keystore) as ledger:
        print(f"deployed on {ledger.backend.describe()} (chain id {ledger.backend.chain_id})")
        for name, address in _addresses(ledger).items():
            print(f"  {name:<14} {address}")
        if ledger.backend.chain_dir is not None and ledger.backend.kind != "memory":
            print(f"deployment file: {ledger.backend.chain_dir / 'deployment.json'}")
    return 0


def cmd_advance(args: argparse.Namespace) -> int:
    from fedledger.core.errors import ConfigError, DataError
    from fedledger.ledger import Ledger

    if args.seconds <= 0:
        raise ConfigError(f"seconds must be positive, not {args.seconds}")
    if not (args.out / "chain").is_dir():
        raise DataError(f"no chain state in {args.out} (no {args.out / 'chain'} directory)")
    with Ledger.connect("auto", args.out, deploy_if_missing=False) as ledger:
        ledger.advance_time(args.seconds)
        ledger.persist()
        print(f"block {ledger.block_number}, chain time {ledger.timestamp}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from fedledger.ledger import Ledger
    from fedledger.ledger.backends import AnvilBackend

    with Ledger.connect("auto", args.out, force_deploy=args.force_deploy) as ledger:
        backend = ledger.backend
        assert isinstance(backend, AnvilBackend)
        _print_status(status_payload(ledger))
        if not backend.owner:
            print(f"a node for {args.out} is already running at {backend.url}")
            return 0
        if args.once:
            return 0
        print(f"serving {backend.url} for {args.out}; Ctrl-C to stop", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        while not stop.wait(1.0):
            if backend.node is None or not backend.node.running:
                print("the node stopped")
                return 1
    print("stopped; state saved in", args.out / "chain")
    return 0
