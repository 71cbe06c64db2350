"""`fedledger report DIR [--out FILE]`: a self-contained HTML report of a run.

    fedledger report runs/digits            # writes runs/digits/report.html
    fedledger report runs/digits --out r.html

DIR is the `--out` directory of `fedledger run` (or of a Flower run through `fedledger.flower`). With a
ledger, the report first audits the run as `fedledger audit DIR` does and shows the verdict at the top
(`--no-audit` skips it), then reopens DIR/chain (the managed anvil node restarts from its state file) to read
finalized rounds, balances, reputation and slashing from the chain itself. A failed audit still writes the
page (it says where the audit failed) and then exits 5.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of a run (DIR/report.html)",
        description="Write one offline HTML page: accuracy and loss, privacy spent, participation, and with a "
                    "ledger the finalized rounds, gas, token balances, reputation and slashing events.",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="the run's output directory (holds results.json)")
    p.add_argument("--out", type=Path, metavar="FILE", help="where to write the page (default DIR/report.html)")
    p.add_argument("--no-audit", dest="audit", action="store_false",
                   help="do not re-verify the run from the chain first (the page then shows no audit verdict)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    import sys

    from fedledger.core.errors import IntegrityError
    from fedledger.report.html import build_report

    path, verdict = build_report(args.dir, args.out, audit=getattr(args, "audit", True))
    print(path)
    if verdict is not None and verdict.status != "not run":
        print(f"audit {verdict.status}: {verdict.detail}", file=sys.stderr)
    if verdict is not None and not verdict.ok:
        raise IntegrityError(f"the audit failed ({verdict.detail}); the report says so at the top")
    return 0
