"""`fedledger watch DIR`: a live view of a run, updated as rounds finish.

    fedledger watch runs/demo              # a terminal dashboard until the run's last round (Ctrl-C leaves)
    fedledger watch runs/demo --once       # the dashboard as it stands now, then exit
    fedledger watch runs/demo > log        # not a terminal: one line per finished round, then exit

It reads only `DIR/results.json`, which `fedledger run` (and `fedledger.flower.LedgerStrategy`) rewrites
atomically after every round, so it can watch a run started in another terminal, by another user, or on a
shared file system; it never touches the run's chain or checkpoint. A directory without results yet is waited
for (`--once`: an error).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS = "results.json"
_BARS = "▁▂▃▄▅▆▇█"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "watch",
        help="a live terminal view of a run: rounds, accuracy, privacy, chain, time left",
        description="Follow DIR/results.json as rounds finish: a dashboard on a terminal (accuracy trend, the last "
                    "rounds with epsilon, chain status and stage times, the estimated time left), one line per "
                    "finished round otherwise. Exits when the run has done its planned rounds.",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="the run's output directory (its --out)")
    p.add_argument("--interval", type=float, default=1.0, metavar="S", help="seconds between reads (default 1)")
    p.add_argument("--once", action="store_true", help="show the run as it stands now and exit")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="give up after S seconds without the run finishing (default: wait for it)")
    p.set_defaults(func=cmd_watch)


# ------------------------------------------------------------------------------------------ reading
def read(run_dir: Path) -> dict[str, Any] | None:
    """DIR/results.json, or None while it does not exist yet (or is mid-replace on a non-POSIX file system)."""
    path = run_dir / RESULTS
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("rounds"), list):
        return None
    return data


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def _f(x: Any, digits: int = 4) -> str:
    v = _num(x)
    return "-" if math.isnan(v) else f"{v:.{digits}f}"


def sparkline(values: Sequence[float], width: int = 40) -> str:
    """Accuracy per round as block characters (0 to 1), the last `width` rounds."""
    out = []
    for v in values[-width:]:
        if math.isnan(v):
            out.append(" ")
        else:
            out.append(_BARS[min(len(_BARS) - 1, max(0, int(v * len(_BARS))))])
    return "".join(out)


def status(res: Mapping[str, Any]) -> dict[str, Any]:
    """What the dashboard shows, computed from a results file (pure: tested directly)."""
    cfg = res.get("config") or {}
    rounds = [r for r in res["rounds"] if isinstance(r, Mapping)]
    planned = cfg.get("rounds") if isinstance(cfg.get("rounds"), int) else None
    done = len(rounds)
    seconds = [_num(r.get("seconds")) for r in rounds]
    seconds = [s for s in seconds if not math.isnan(s)]
    left = (planned - done) * (sum(seconds) / len(seconds)) if planned and seconds and done < planned else 0.0
    ledger = res.get("ledger") or {}
    privacy = res.get("privacy") or {}
    last = rounds[-1] if rounds else {}
    return {
        "title": f"{cfg.get('model', '?')} on {cfg.get('dataset', '?')}, {cfg.get('clients', '?')} members, "
                 f"{cfg.get('strategy', '?')}",
        "done": done,
        "planned": planned,
        "complete": planned is not None and done >= planned,
        "accuracy": _num(last.get("accuracy")) if rounds else math.nan,
        "best": max((_num(r.get("accuracy")) for r in rounds if not math.isnan(_num(r.get("accuracy")))),
                    default=math.nan),
        "centralized": _num(res.get("centralized_accuracy")) if res.get("centralized_accuracy") is not None
        else math.nan,
        "epsilon": _num(last.get("epsilon_spent")) if last.get("epsilon_spent") is not None else math.nan,
        "budget": _num(privacy.get("epsilon_budget")) if privacy.get("epsilon_budget") is not None else math.nan,
        "finalized": ledger.get("finalized_rounds") if isinstance(ledger, Mapping) else None,
        "slashed": len(ledger.get("slashed") or []) if isinstance(ledger, Mapping) else 0,
        "elapsed": sum(seconds),
        "left": left,
        "trend": sparkline([_num(r.get("accuracy")) for r in rounds]),
    }


def round_line(r: Mapping[str, Any], planned: int | None) -> str:
    """One finished round as a line (what the non-terminal mode prints)."""
    parts = [f"round {r.get('round')}/{planned if planned is not None else '?'}",
             f"accuracy {_f(r.get('accuracy'))}", f"loss {_f(r.get('loss'))}", f"{_f(r.get('seconds'), 1)} s"]
    if r.get("epsilon_spent") is not None:
        parts.append(f"epsilon {_f(r.get('epsilon_spent'), 3)}")
    if r.get("finalized") is not None:
        parts.append(f"chain {'finalized' if r.get('finalized') else 'not finalized'}"
                     f" ({r.get('attempts', 1)} attempt{'s' if r.get('attempts', 1) != 1 else ''})")
    parts.append(f"{r.get('participants')} took part, {r.get('dropped')} dropped")
    return "  ".join(parts)


# ------------------------------------------------------------------------------------------ drawing
def dashboard(res: Mapping[str, Any], run_dir: Path, rows: int = 12) -> Any:
    """The dashboard as a rich renderable."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    s = status(res)
    head = Table.grid(padding=(0, 3))
    for _ in range(4):
        head.add_column()
    planned = s["planned"] if s["planned"] is not None else "?"
    state = Text("complete", style="bold green") if s["complete"] else Text("running", style="bold yellow")
    head.add_row(Text.assemble("status ", state), f"rounds {s['done']} / {planned}",
                 f"elapsed {s['elapsed']:.0f} s", f"left ~{s['left']:.0f} s" if not s["complete"] else "")
    acc = f"accuracy {_f(s['accuracy'])} (best {_f(s['best'])})"
    if not math.isnan(s["centralized"]):
        acc += f", centralized {_f(s['centralized'])}"
    eps = (f"epsilon {_f(s['epsilon'], 3)} of {_f(s['budget'], 3)}" if not math.isnan(s["epsilon"])
           else "no DP")
    chain = (f"{s['finalized']} finalized on chain, {s['slashed']} slashed" if s["finalized"] is not None
             else "no ledger")
    head.add_row(acc, eps, chain, "")
    trend = Text.assemble(("accuracy per round  ", "dim"), (s["trend"] or "-", "cyan"))

    table = Table(expand=False, header_style="bold")
    for name, justify in (("round", "right"), ("accuracy", "right"), ("loss", "right"), ("epsilon", "right"),
                          ("took part", "right"), ("dropped", "right"), ("chain", "left"), ("seconds", "right"),
                          ("slowest stage", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in res["rounds"][-rows:]:
        stages = r.get("stages") or {}
        slow = max(stages.items(), key=lambda kv: kv[1]) if stages else None
        chain_cell = ("-" if r.get("finalized") is None else
                      f"finalized, {r.get('attempts', 1)} att." if r.get("finalized") else "not finalized")
        table.add_row(str(r.get("round")), _f(r.get("accuracy")), _f(r.get("loss")),
                      _f(r.get("epsilon_spent"), 3) if r.get("epsilon_spent") is not None else "-",
                      str(r.get("participants")), str(r.get("dropped")), chain_cell, _f(r.get("seconds"), 1),
                      f"{slow[0]} {float(slow[1]):.1f} s" if slow else "-")
    return Panel(Group(head, trend, table), title=f"fedledger watch {run_dir}: {s['title']}", title_align="left")


# ------------------------------------------------------------------------------------------ command
def cmd_watch(args: argparse.Namespace) -> int:
    from fedledger.core.errors import DataError

    run_dir: Path = args.dir
    if run_dir.exists() and not run_dir.is_dir():
        raise DataError(f"{run_dir} is not a directory (give the run's --out directory)")
    if args.interval <= 0:
        raise DataError("--interval must be positive")
    res = read(run_dir)
    if args.once:
        if res is None:
            raise DataError(f"{run_dir / RESULTS} does not exist or cannot be read yet: has the run started?")
        _print_static(res, run_dir)
        return 0
    if sys.stdout.isatty():
        return _live(run_dir, args.interval, args.timeout)
    return _lines(run_dir, args.interval, args.timeout)


def _print_static(res: Mapping[str, Any], run_dir: Path) -> None:
    from rich.console import Console

    Console(width=120 if not sys.stdout.isatty() else None).print(dashboard(res, run_dir))


def _expired(start: float, timeout: float | None) -> bool:
    return timeout is not None and time.monotonic() - start > timeout


def _follow(run_dir: Path, interval: float, timeout: float | None, show: Callable[[dict[str, Any]], bool]) -> int:
    """Read the results every `interval` seconds and hand them to `show` until it says the run is complete."""
    start = time.monotonic()
    try:
        while True:
            res = read(run_dir)
            if res is not None and show(res):
                return 0
            if _expired(start, timeout):
                return _timed_out(run_dir, timeout)
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0


def _live(run_dir: Path, interval: float, timeout: float | None) -> int:
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    waiting = Text(f"waiting for {run_dir / RESULTS} (the run writes it after its first round) ...", style="dim")
    with Live(waiting, console=Console(), refresh_per_second=4, transient=False) as live:

        def show(res: dict[str, Any]) -> bool:
            live.update(dashboard(res, run_dir))
            return bool(status(res)["complete"])

        return _follow(run_dir, interval, timeout, show)


def _lines(run_dir: Path, interval: float, timeout: float | None) -> int:
    """Not a terminal: print each round once, as it appears, and exit when the run is complete."""
    shown, announced = 0, False

    def show(res: dict[str, Any]) -> bool:
        nonlocal shown, announced
        s = status(res)
        if not announced:
            print(f"watching {run_dir}: {s['title']}", flush=True)
            announced = True
        for r in res["rounds"][shown:]:
            print(round_line(r, s["planned"]), flush=True)
        shown = len(res["rounds"])
        if s["complete"]:
            print(f"complete: {s['done']} rounds, final accuracy {_f(s['accuracy'])}", flush=True)
        return bool(s["complete"])

    return _follow(run_dir, interval, timeout, show)


def _timed_out(run_dir: Path, timeout: float | None) -> int:
    from fedledger.core.errors import DataError

    raise DataError(f"{run_dir} did not finish its planned rounds within {timeout:g} s")
