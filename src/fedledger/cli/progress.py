"""Progress of `fedledger run`: a bar on a terminal, one flushed line per round otherwise.

On a terminal the bar shows the round, the stage running now (training, privacy, proofs, secagg, chain,
validation), the elapsed time and an estimate of the time left from the rounds done so far. When stdout
is not a terminal (`make demo`, `run > log`, CI) each finished round prints one line, flushed at once:

    run: 10 rounds of digits / mlp / fedavg, 10 members, chain auto, dp member, proofs update -> runs/latest
    round 3/10  12.4 s  acc 0.9120  loss 0.3112  eps 1.23  chain finalized (attempt 1, 14 txs)  [training 1.1 s, ...]
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

#: the order stages are listed in a round line
STAGE_ORDER = ("training", "privacy", "secagg", "proofs", "chain", "validation")


def round_line(record: Any, total: int) -> str:
    """One line for a finished round (a RoundRecord)."""
    parts = [f"round {record.round}/{total}", f"{record.seconds:.1f} s", f"acc {record.accuracy:.4f}",
             f"loss {record.loss:.4f}"]
    if record.epsilon_spent is not None:
        parts.append(f"eps {record.epsilon_spent:.3g}")
    if not record.aggregated:
        parts.append("not aggregated (too few survivors)")
    if record.finalized is not None:
        status = "finalized" if record.finalized else "not finalized"
        parts.append(f"chain {status} (attempt {record.attempts or 1}, {record.chain_txs} txs)")
    if record.proofs:
        parts.append(f"proofs {record.proofs.get('verified', 0)}/{record.proofs.get('made', 0)} verified")
    stages = sorted(record.stages.items(), key=lambda kv: (*STAGE_ORDER, kv[0]).index(kv[0]))
    shown = [f"{name} {seconds:.1f} s" for name, seconds in stages if seconds >= 0.05]
    if shown:
        parts.append("[" + ", ".join(shown) + "]")
    return "  ".join(parts)


class RunProgress:
    """Receives the simulation's events (resume, stage start, round end) and shows them."""

    def __init__(self, total: int, *, quiet: bool = False, stream: TextIO | None = None,
                 terminal: bool | None = None) -> None:
        self.total = total
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.done = 0
        self.bar: Any = None
        self._stop = threading.Event()

    def _open_bar(self) -> Any:
        if self.bar is None and self.terminal and not self.quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.done, desc=f"round {self.done + 1}", unit="round",
                            leave=False, file=self.stream, dynamic_ncols=True,
                            bar_format="rounds {n_fmt}/{total_fmt} |{bar}| {elapsed}<{remaining}{postfix} | {desc}")
            # redraw every second, so the elapsed time moves while a long stage (proofs) runs
            threading.Thread(target=self._tick, args=(self.bar,), daemon=True, name="progress").start()
        return self.bar

    def _tick(self, bar: Any) -> None:
        while not self._stop.wait(1.0):
            bar.refresh()

    def starting(self, what: str) -> None:
        """Said once before any work (loading data, keys and the chain can take a while)."""
        if not self.quiet:
            print(what, file=self.stream, flush=True)

    def resumed(self, after_round: int) -> None:
        self.done = after_round
        if not self.quiet:
            print(f"resumed after round {after_round}", file=self.stream, flush=True)

    def stage(self, name: str) -> None:
        bar = self._open_bar()
        if bar is not None:
            bar.set_description_str(f"round {self.done + 1}: {name}", refresh=True)

    def round_done(self, record: Any) -> None:
        self.done = record.round
        if self.quiet:
            return
        bar = self._open_bar()
        if bar is None:
            print(round_line(record, self.total), file=self.stream, flush=True)
            return
        bar.set_postfix_str(f"acc {record.accuracy:.3f}"
                            + (f" eps {record.epsilon_spent:.3g}" if record.epsilon_spent is not None else ""),
                            refresh=False)
        bar.set_description_str(f"round {min(record.round + 1, self.total)}: starting", refresh=False)
        bar.update(record.round - bar.n)
        bar.write(round_line(record, self.total), file=self.stream)

    def close(self) -> None:
        self._stop.set()
        if self.bar is not None:
            self.bar.close()
            self.bar = None
