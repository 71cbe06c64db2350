"""`fedledger testnet`: a federation of node processes on this machine's loopback (fedledger.node.testnet).

    fedledger testnet up --members N --out DIR [--config FILE.toml] [run flags]   # runs the task to the end
    fedledger testnet status DIR [--json]
    fedledger testnet down DIR
    fedledger testnet kill|pause|resume|start DIR NODE
    fedledger testnet fault DIR NODE [--drop all|ADDRESS,...] [--delay S] [--jitter S] [--clear]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: `run` flags `testnet up` takes too (the rest come from --config or the whole system's defaults)
UP_FLAGS = ("dataset", "partition", "fraction", "rounds", "model", "strategy", "local_epochs", "local_steps",
            "batch_size", "lr", "max_samples", "seed", "deterministic", "proofs", "privacy.dp", "privacy.epsilon",
            "privacy.secagg", "ledger.committee")


def register(subparsers: argparse._SubParsersAction) -> None:
    tn = subparsers.add_parser("testnet", help="run a federation of `fedledger node` processes on loopback")
    sub = tn.add_subparsers(dest="testnet_command", required=True)

    p = sub.add_parser("up", help="start a managed anvil and one node process per member, run the task to the end "
                                  "and write DIR/results.json")
    p.add_argument("--members", type=int, required=True, metavar="N", help="trainer nodes (as run --clients)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="the testnet's directory")
    p.add_argument("--config", type=Path, help="TOML file with FederationConfig fields; flags override it")
    p.add_argument("--dataset", metavar="NAME")
    p.add_argument("--partition", help="iid | dirichlet:ALPHA | shards:K | natural")
    p.add_argument("--fraction", type=float, help="share of members sampled each round")
    p.add_argument("--rounds", type=int)
    p.add_argument("--model", metavar="NAME")
    p.add_argument("--strategy", metavar="NAME")
    p.add_argument("--local-epochs", type=float, dest="local_epochs")
    p.add_argument("--local-steps", type=int, dest="local_steps")
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--lr", type=float)
    p.add_argument("--max-samples", type=int, dest="max_samples")
    p.add_argument("--seed", type=int)
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="derive every secret from --seed (tests only; results.json says so)")
    p.add_argument("--proofs", choices=["none", "update", "training"])
    p.add_argument("--dp", choices=["none", "record", "member"], dest="privacy.dp")
    p.add_argument("--epsilon", type=float, dest="privacy.epsilon")
    p.add_argument("--secagg", action=argparse.BooleanOptionalAction, default=None, dest="privacy.secagg")
    p.add_argument("--committee", type=int, dest="ledger.committee", help="validators per round (one node each)")
    p.add_argument("--aggregators", type=int, default=3, metavar="K", help="aggregator nodes the round's "
                   "aggregator is drawn among")
    p.add_argument("--stall", type=float, default=5.0, metavar="S",
                   help="move the dev chain's clock past a deadline after S seconds with nothing happening on chain")
    p.add_argument("--wall-clock", action="store_true", help="never move the clock (deadlines in real time)")
    p.add_argument("--keep", action="store_true", help="keep the nodes and the chain running after the task ends, "
                                                       "until `testnet down` or Ctrl-C")
    p.add_argument("--timeout", type=float, metavar="S", help="give up if the task has not finished after S seconds")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("status", help="which nodes are alive and the task's progress on chain")
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("down", help="stop every node and the chain cleanly (state kept; `up` resumes)")
    p.add_argument("dir", type=Path, metavar="DIR")
    p.set_defaults(func=cmd_down)

    for name, text in (("kill", "SIGKILL a node's process"), ("pause", "SIGSTOP a node's process"),
                       ("resume", "SIGCONT a paused node"), ("start", "start a node that is down (after kill)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("dir", type=Path, metavar="DIR")
        p.add_argument("node", metavar="NODE", help="a node's name (see `testnet status`)")
        p.set_defaults(func=cmd_signal, action=name)

    p = sub.add_parser("fault", help="cut (drop) or slow (delay) a node's network at its transport; --clear heals")
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument("node", metavar="NODE")
    p.add_argument("--drop", metavar="all|NODE,...", help="peers whose traffic the node drops (both directions)")
    p.add_argument("--delay", type=float, default=0.0, metavar="S", help="seconds added to every call each way")
    p.add_argument("--jitter", type=float, default=0.0, metavar="S", help="plus up to S seconds at random")
    p.add_argument("--clear", action="store_true", help="remove the node's fault")
    p.set_defaults(func=cmd_fault)


def _config(args: argparse.Namespace) -> Any:
    from fedledger.cli.main import _RUN_FIELDS, config_from_args

    ns = argparse.Namespace(**{k: None for k in _RUN_FIELDS})
    ns.plain, ns.config = False, args.config
    for k in UP_FLAGS:
        setattr(ns, k, getattr(args, k))
    ns.clients = args.members
    ns.out = str(args.out)
    setattr(ns, "ledger.chain", "auto")
    return config_from_args(ns)


def cmd_up(args: argparse.Namespace) -> int:
    from fedledger.cli.main import check_out_dir
    from fedledger.node.testnet import Testnet

    cfg = _config(args)
    check_out_dir(args.out)
    net = Testnet(args.out)
    seen: dict[str, Any] = {}

    def show(status: dict[str, Any]) -> None:
        task = status.get("task") or {}
        cur = task.get("current_round") or {}
        line = (f"task {task.get('task')}: {task.get('finalized_rounds')}/{task.get('rounds')} finalized, "
                f"round {cur.get('round')} {cur.get('status')} (attempt {cur.get('attempt')}), "
                f"{sum(n['state'] == 'running' for n in status['nodes'])}/{len(status['nodes'])} nodes running"
                if task else "waiting for the task")
        if line != seen.get("line") and not args.quiet:
            print(line, file=sys.stderr, flush=True)
        seen["line"] = line

    if not args.quiet:
        print(f"testnet: {args.members} members ({cfg.dataset}, {cfg.rounds} rounds) in {args.out}; "
              f"`fedledger testnet status {args.out}` from another terminal", file=sys.stderr, flush=True)
    payload = net.up(cfg, args.members, aggregators=args.aggregators, stall=None if args.wall_clock else args.stall,
                     keep=args.keep, timeout=args.timeout, on_status=show)
    if not args.quiet:
        from fedledger.cli.main import summary_table

        print(summary_table(payload))
        print(f"results: {args.out / 'results.json'}   audit: fedledger audit {args.out}")
    return 0


def _fmt_bytes(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MiB"


def cmd_status(args: argparse.Namespace) -> int:
    from fedledger.node.testnet import Testnet

    status = Testnet(args.dir).status(metrics=True)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    task = status["task"]
    if task is None:
        print(f"testnet {args.dir}: chain {'down' if not status['chain'] else status['chain']}, task "
              f"{status['task_id'] or 'not created'}")
    else:
        cur = task["current_round"] or {}
        print(f"testnet {args.dir}: task {task['task']} {task['finalized_rounds']}/{task['rounds']} rounds "
              f"finalized; round {cur.get('round', '-')} {cur.get('status', '-')} (attempt {cur.get('attempt', '-')})"
              f", block {task['block']}")
    for n in status["nodes"]:
        fault = f"  fault {json.dumps(n['fault'])}" if n["fault"] else ""
        fig = n.get("figures")
        acted = (f"  acted {fig['rounds_acted']} sent {_fmt_bytes(fig['bytes_sent'])} received "
                 f"{_fmt_bytes(fig['bytes_received'])}") if fig else ""
        print(f"  {n['name']:<6} {n['role']:<10} {n['state']:<8} pid {n['pid'] or '-':<8} {n['listen']:<16} "
              f"rss {_fmt_bytes(n['rss'])}  {n['address']}{acted}{fault}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from fedledger.node.testnet import Testnet

    stopped = Testnet(args.dir).down()
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    return 0


def cmd_signal(args: argparse.Namespace) -> int:
    from fedledger.node.testnet import Testnet

    pid = getattr(Testnet(args.dir), args.action)(args.node)
    print(f"{args.action}: {args.node} (pid {pid})")
    return 0


def cmd_fault(args: argparse.Namespace) -> int:
    from fedledger.core.errors import ConfigError
    from fedledger.node.faults import FaultPlan
    from fedledger.node.testnet import Testnet

    net = Testnet(args.dir)
    plan = None
    if not args.clear:
        drop: set[str] = set()
        for name in (args.drop or "").split(","):
            name = name.strip()
            if not name:
                continue
            drop.add("*" if name in ("all", "*") else net.manifest.node(name).address.lower()
                     if not name.startswith("0x") else name.lower())
        if not drop and not args.delay and not args.jitter:
            raise ConfigError("give --drop, --delay or --jitter (or --clear)")
        plan = FaultPlan(frozenset(drop), args.delay, args.jitter)
    path = net.fault(args.node, plan)
    print(f"{args.node}: {'healed' if plan is None else json.dumps(plan.to_json())} ({path})")
    return 0
