"""`fedledger report DIR [--out FILE]`: a self-contained HTML report of a run.

    fedledger report runs/digits            # writes runs/digits/report.html
    fedledger report runs/digits --out r.html

DIR is the `--out` directory of `fedledger run`. With a ledger, the report reopens DIR/chain
(the managed anvil node restarts from its state file) to read finalized rounds, balances,
reputation and slashing from the chain itself.
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
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from fedledger.report.html import write_report

    path = write_report(args.dir, args.out)
    print(path)
    return 0
