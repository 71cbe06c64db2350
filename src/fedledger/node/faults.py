"""Link faults injected at a node's transport: a partition (drop) or a slow link (delay), from a file.

A testnet (or an operator rehearsing an outage) writes a small JSON file next to a node, and the node's
`GrpcTransport` reads it again whenever it changed (at most every `poll` seconds), so a fault starts and ends
while the process runs, without a restart:

    {"drop": ["*"], "delay": 0.0}                       # partitioned: every peer, both directions
    {"drop": ["0xabc..."], "delay": 0.0}                # cut off from one peer only
    {"drop": [], "delay": 0.25, "jitter": 0.05}         # a slow link: every call waits 0.25-0.30 s each way

`drop`: peers (member addresses, or "*" for all) whose traffic this node drops in both directions: its calls
to them fail as UNAVAILABLE would (so the sender's retries and backoff run, then `TransportError`), and their
calls to it are answered UNAVAILABLE. `delay`: seconds added before every outgoing attempt and before every
incoming call is answered (plus uniform `jitter`). A missing or empty file is a healthy link; a file that does
not parse is treated as healthy and reported in `LinkFaults.error` (a fault plan never crashes a node).

The fault is the node's own: the chain, the roles and the messages are untouched, so what the federation sees
is exactly a member whose network failed (a dropped trainer is a dropout, an unreachable aggregator misses its
deadline and is replaced).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

FAULT_FILE = "faults.json"


@dataclass(frozen=True)
class FaultPlan:
    drop: frozenset[str] = frozenset()  # lower-case member addresses, or "*"
    delay: float = 0.0
    jitter: float = 0.0

    @classmethod
    def parse(cls, text: str) -> FaultPlan:
        raw = json.loads(text) if text.strip() else {}
        if not isinstance(raw, dict):
            raise ValueError("a fault plan is a JSON object")
        drop = raw.get("drop", [])
        if isinstance(drop, str):
            drop = [drop]
        if not isinstance(drop, list) or not all(isinstance(p, str) for p in drop):
            raise ValueError("drop is a list of member addresses or '*'")
        delay, jitter = float(raw.get("delay", 0.0)), float(raw.get("jitter", 0.0))
        if not (0 <= delay <= 3600 and 0 <= jitter <= 3600):
            raise ValueError("delay and jitter are seconds in [0, 3600]")
        return cls(frozenset(p.lower() for p in drop), delay, jitter)

    def to_json(self) -> dict[str, object]:
        return {"drop": sorted(self.drop), "delay": self.delay, "jitter": self.jitter}

    def drops(self, peer: str) -> bool:
        return "*" in self.drop or peer.lower() in self.drop

    @property
    def healthy(self) -> bool:
        return not self.drop and self.delay == 0 and self.jitter == 0


def write_plan(path: Path, plan: FaultPlan | None) -> None:
    """Set (or, with None, clear) the fault plan at `path`, atomically."""
    if plan is None or plan.healthy:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(plan.to_json()))
    os.replace(tmp, path)


@dataclass
class LinkFaults:
    """The fault plan in `path`, re-read when the file changes (checked at most every `poll` seconds)."""

    path: Path
    poll: float = 0.2
    plan: FaultPlan = field(default_factory=FaultPlan)
    error: str = ""
    dropped: int = 0  # calls dropped so far, both directions
    _stamp: tuple[int, int] | None = None
    _checked: float = -1e9
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rng: random.Random = field(default_factory=lambda: random.Random(os.urandom(16)))  # jitter: no secrecy

    def current(self) -> FaultPlan:
        now = time.monotonic()
        with self._lock:
            if now - self._checked < self.poll:
                return self.plan
            self._checked = now
            try:
                st = self.path.stat()
                stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
            except OSError:
                stamp = None
            if stamp == self._stamp:
                return self.plan
            self._stamp = stamp
            if stamp is None:
                self.plan, self.error = FaultPlan(), ""
                return self.plan
            try:
                self.plan, self.error = FaultPlan.parse(self.path.read_text()), ""
            except (OSError, ValueError) as e:
                self.plan, self.error = FaultPlan(), f"{self.path}: {e}"
            return self.plan

    def wait(self, plan: FaultPlan) -> None:
        """The slow link's pause for one call."""
        if plan.delay or plan.jitter:
            time.sleep(plan.delay + (self._rng.uniform(0.0, plan.jitter) if plan.jitter else 0.0))

    def outgoing(self, peer: str) -> bool:
        """Before a call to `peer`: wait out the delay; True if the call is to be dropped."""
        plan = self.current()
        self.wait(plan)
        if plan.drops(peer):
            with self._lock:
                self.dropped += 1
            return True
        return False

    incoming = outgoing  # the same rule for a call from `peer`
