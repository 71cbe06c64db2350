"""`fedledger audit [--chain URL] [--task N] DIR`: exit 0 only if every finalized round of the task re-verifies
from the chain and the blobs (nothing else in DIR is read). With `--chain auto` the chain is DIR's own anvil state
file, and the output says so: only `--chain URL`, a node DIR does not control, rests on nothing in DIR."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("audit", help="re-verify every finalized round from the chain and the blob store")
    p.add_argument("dir", type=Path, metavar="DIR", help="the run's output directory")
    p.add_argument("--chain", default="auto", metavar="auto|memory|URL",
                   help="auto (the run's own anvil state file, trusted as the chain), memory, or the JSON-RPC URL "
                        "of any node with the chain")
    p.add_argument("--task", type=int, default=None, metavar="N",
                   help="task id on the chain (default: the task whose spec and first finalized round's evidence "
                        "DIR holds)")
    p.add_argument("--json", action="store_true", help="print the audit report as JSON")
    p.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    from fedledger.protocol.audit import audit_run

    report = audit_run(args.dir, args.chain, args.task)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(f"audit ok: task {report.task_id}, {len(report.rounds)} finalized rounds, {report.checks} checks, "
              f"aggregates recomputed in {len(report.recomputed)} rounds, privacy spent {report.privacy_spent:g}")
        print(f"  against {report.chain}; task owner {report.owner}")
        if report.chain_trust:
            print(f"  trusted: {report.chain_trust}")
    return 0
