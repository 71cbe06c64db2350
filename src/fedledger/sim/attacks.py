"""Attacks injected into a simulated federation: who misbehaves, and how.

`--attack` takes a comma-separated list of `kind:fraction` (members) or `kind` (roles):

- `label_flip:F`: trains on labels c -> C-1-c. Stopped by robust aggregation; bounded by clipping;
  seen in the validators' accuracy check.
- `sign_flip:F`: sends minus its update. Robust aggregation; clipping bounds it.
- `boost:F[:S]`: sends its update scaled by S (default 10). Robust aggregation; DP clipping bounds it
  to one clip norm.
- `free_ride:F`: sends a zero update and still claims its reward. A zero row in the evidence; it adds nothing.
- `stale:F`: resends its first update every round. Robust aggregation; bounded.
- `mask_swap:F` (with `--proofs update`): commits to and proves its honest input, then feeds SecAgg+ another
  one. The validators' linear check fails, blame names it, the round is summed again without it and it is
  named as faulty in the result, so the contract slashes it when the round finalizes.
- `inflate:F`: claims 10^6 training examples so that FedAvg weighs its update above everyone's. The aggregator
  refuses an update claiming more examples than the member committed to when it joined (registered metadata).
- `impersonate:F`: also sends an update in another member's name. The signature does not verify against the
  key that member registered on chain: refused.
- `replay:F`: resends its signed message of an earlier round. The signature binds (chain, task manager, task,
  round, attempt, topic): refused.
- `malicious_aggregator`: the first aggregator drawn posts a tampered model whenever it is drawn. Validators
  recompute the aggregate from the signed transcript (also under secure aggregation) and reject; the round is
  reopened with another aggregator and the contract slashes the first.
- `framing_aggregator`: the first aggregator drawn drops an honest trainer's messages and names it faulty.
  Validators re-derive the faulty list (only a member whose own signed message fails a check) and reject.
- `privacy_underreport`: the first aggregator drawn posts the least privacy spent the contract takes (the
  task's spent so far). Validators recompute it and reject.
- `lazy_validator[:K]`: K validators accept without checking. Honest stake over 1/3 of the committee still
  rejects a bad round; if it does not, `fedledger audit` names the round.

Faults (not attacks, but injected the same way):
- `late_aggregator`: the aggregator drawn for round 1 crashes before submitting. The submission deadline
  passes, the round is reopened with another aggregator and the contract slashes the late one.
- `silent_validator[:K]`: K validators never vote. The round finalizes if the others reach 2/3 of the
  committee's stake; otherwise it is reopened with a new committee after the vote deadline.

Sybil identities without stake cannot be drawn at all: the cohort is drawn from staked trainers only.
Attacking members are a seeded choice of `ceil(F * members)` members, different per kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np
import torch

from fedledger.core.errors import ConfigError
from fedledger.core.rng import numpy_rng
from fedledger.protocol.messages import UPDATE_TOPIC, UpdateMessage
from fedledger.protocol.roles import Aggregator, RoundOutput, RoundView, Trainer
from fedledger.protocol.secure import TrainerSession
from fedledger.protocol.signing import Signed
from fedledger.protocol.transport import Envelope

R = TypeVar("R")

MEMBER_ATTACKS = ("label_flip", "sign_flip", "boost", "free_ride", "stale", "mask_swap", "inflate", "impersonate",
                  "replay")
ROLE_ATTACKS = ("malicious_aggregator", "framing_aggregator", "privacy_underreport", "lazy_validator",
                "late_aggregator", "silent_validator")


@dataclass(frozen=True)
class AttackPlan:
    attackers: dict[str, frozenset[int]] = field(default_factory=dict)
    boost_factor: float = 10.0
    malicious_aggregator: bool = False
    framing_aggregator: bool = False
    privacy_underreport: bool = False
    lazy_validators: int = 0
    late_aggregator: bool = False
    silent_validators: int = 0

    @property
    def active(self) -> bool:
        return (bool(self.attackers) or self.malicious_aggregator or self.lazy_validators > 0 or self.late_aggregator
                or self.silent_validators > 0 or self.framing_aggregator or self.privacy_underreport)

    @classmethod
    def parse(cls, spec: str, members: int, seed: int) -> AttackPlan:
        attackers: dict[str, frozenset[int]] = {}
        boost, aggregator, lazy, late, silent = 10.0, False, 0, False, 0
        roles: set[str] = set()
        for item in filter(None, (part.strip() for part in spec.split(","))):
            kind, *args = item.split(":")
            try:
                if kind in MEMBER_ATTACKS:
                    fraction = float(args[0]) if args else 0.1
                    if not 0 < fraction <= 1:
                        raise ValueError(f"fraction {fraction} is not in (0, 1]")
                    count = math.ceil(fraction * members)
                    chosen = numpy_rng(seed, "attack", kind).choice(members, size=count, replace=False)
                    attackers[kind] = frozenset(int(i) for i in chosen)
                    if kind == "boost" and len(args) > 1:
                        boost = float(args[1])
                elif kind == "malicious_aggregator":
                    aggregator = True
                elif kind in ("framing_aggregator", "privacy_underreport"):
                    roles.add(kind)
                elif kind == "lazy_validator":
                    lazy = int(args[0]) if args else 1
                elif kind == "late_aggregator":
                    late = True
                elif kind == "silent_validator":
                    silent = int(args[0]) if args else 1
                else:
                    raise ValueError(f"unknown attack {kind!r}")
            except (ValueError, IndexError) as e:
                kinds = ", ".join((*MEMBER_ATTACKS, *ROLE_ATTACKS))
                raise ConfigError(f"bad --attack item {item!r}: {e}; kinds: {kinds}") from None
        return cls(attackers, boost, aggregator, "framing_aggregator" in roles, "privacy_underreport" in roles, lazy,
                   late, silent)

    def members_doing(self, kind: str) -> frozenset[int]:
        return self.attackers.get(kind, frozenset())

    def poison_labels(self, y: torch.Tensor, offsets: np.ndarray, counts: np.ndarray, classes: int) -> None:
        """Flip the training labels of label-flipping members in place."""
        for i in self.members_doing("label_flip"):
            rows = slice(int(offsets[i]), int(offsets[i] + counts[i]))
            y[rows] = classes - 1 - y[rows]

    def tamper_updates(
        self, members: np.ndarray, deltas: torch.Tensor, first_seen: dict[int, torch.Tensor]
    ) -> torch.Tensor:
        """The updates the members actually send, given the ones they computed (rows follow `members`)."""
        if not self.attackers:
            return deltas
        out = deltas.clone()
        for row, i in enumerate(int(m) for m in members):
            first_seen.setdefault(i, deltas[row].clone())
            if i in self.members_doing("sign_flip"):
                out[row] = -deltas[row]
            elif i in self.members_doing("boost"):
                out[row] = self.boost_factor * deltas[row]
            elif i in self.members_doing("free_ride"):
                out[row] = 0.0
            elif i in self.members_doing("stale"):
                out[row] = first_seen[i]
        return out

    def summary(self) -> dict[str, object]:
        return {
            "members": {k: sorted(v) for k, v in self.attackers.items()},
            "boost_factor": self.boost_factor if "boost" in self.attackers else None,
            "malicious_aggregator": self.malicious_aggregator,
            "framing_aggregator": self.framing_aggregator,
            "privacy_underreport": self.privacy_underreport,
            "lazy_validators": self.lazy_validators,
            "late_aggregator": self.late_aggregator,
            "silent_validators": self.silent_validators,
        }


# -- role attacks, as wrappers around the real roles -----------------------------------------------------


def _rewrap(cls: type[R], role: object) -> R:
    """An instance of the attacking subclass `cls` that takes over `role`'s whole state. If `role` already
    carries an attack, the new class combines both (`cls`'s overrides first)."""
    base = type(role)
    if base is not cls.__mro__[1] and not issubclass(base, cls):
        cls = type(f"{cls.__name__}+{base.__name__}", (cls, base), {})  # type: ignore[assignment]
    out = cls.__new__(cls)
    out.__dict__.update(role.__dict__)
    return out


class TamperingAggregator(Aggregator):
    """`malicious_aggregator`: posts a model other than the aggregate, with evidence otherwise honest."""

    @classmethod
    def wrapping(cls, role: Aggregator) -> TamperingAggregator:
        return _rewrap(cls, role)

    def publish(self, view: RoundView, output: RoundOutput) -> RoundOutput:
        noise = 0.05 * torch.randn(output.model.shape, generator=torch.Generator().manual_seed(view.record.attempt))
        return replace(output, model=output.model + noise)


class FramingAggregator(Aggregator):
    """Drops an honest trainer's messages and names it faulty, so the contract would slash it."""

    victim: int = 0

    @classmethod
    def wrapping(cls, role: Aggregator, victim: int) -> FramingAggregator:
        out = _rewrap(cls, role)
        out.victim = victim
        return out

    def admit(self, member: int, kind: str, session: int) -> bool:
        # the victim takes part in key exchange (it cannot be told apart from a dropout) but its masked input
        # and what follows never reach the sum
        return member != self.victim or (kind == "secagg" and session == 0 and not self._past_shares(member))

    def _past_shares(self, member: int) -> bool:
        sessions = [s for s in self._sessions.values() if s.server is not None]
        return any(member in s.server.shared for s in sessions)

    def publish(self, view: RoundView, output: RoundOutput) -> RoundOutput:
        name = next(a for a, m in self.index_of.items() if m == self.victim)
        if name not in view.cohort or name in output.faulty:
            return output
        return replace(output, contributors=tuple(a for a in output.contributors if a != name),
                       faulty=tuple(sorted((*output.faulty, name))))


class UnderReportingAggregator(Aggregator):
    """Posts a privacy spent below what the round really spent (so the task could run past its budget)."""

    @classmethod
    def wrapping(cls, role: Aggregator) -> UnderReportingAggregator:
        return _rewrap(cls, role)

    def publish(self, view: RoundView, output: RoundOutput) -> RoundOutput:
        # the least the contract takes: the task's spent so far (it refuses a cumulative spent that falls)
        return replace(output, privacy_spent=self.ledger.task(self.task_id).privacy_spent)


class MaskSwapTrainer(Trainer):
    """`mask_swap`: commits to and proves its honest input, then feeds SecAgg+ another one."""

    @classmethod
    def wrapping(cls, role: Trainer) -> MaskSwapTrainer:
        return _rewrap(cls, role)

    def prepare_input(self, session: TrainerSession) -> TrainerSession:
        assert self.rules is not None
        session.wrapped[0] = (int(session.wrapped[0]) + 1) % (1 << self.rules.plan.bits)
        return session


INFLATED_EXAMPLES = 10**6


class InflatingTrainer(Trainer):
    """`inflate`: claims 10^6 examples, so that a FedAvg weighted by example counts follows its update."""

    @classmethod
    def wrapping(cls, role: Trainer) -> InflatingTrainer:
        return _rewrap(cls, role)

    def prepare_update(self, update: UpdateMessage) -> UpdateMessage:
        return replace(update, num_examples=INFLATED_EXAMPLES)


class ImpersonatingTrainer(Trainer):
    """`impersonate`: besides its own update, sends one in `victim`'s name (signed with its own key)."""

    victim: str = ""

    @classmethod
    def wrapping(cls, role: Trainer, victim: str) -> ImpersonatingTrainer:
        out = _rewrap(cls, role)
        out.victim = victim
        return out

    def send(self, recipient: str, key: tuple[int, int], topic: str, payload: bytes) -> None:
        super().send(recipient, key, topic, payload)
        if topic != UPDATE_TOPIC or self.net is None or self.identity is None:
            return
        own = UpdateMessage.from_bytes(payload)
        forged = replace(own, member=self.net.members[self.victim], num_examples=1, update=-10 * own.update)
        msg = Signed.make(self.identity, self.net.context(self.task_id, key, topic), self.victim, forged.to_bytes())
        self.transport.send(Envelope(self.victim, recipient, topic, msg.to_bytes()))


class ReplayingTrainer(Trainer):
    """`replay`: resends its signed message of the previous round (to whoever aggregates now)."""

    _last: Envelope | None = None

    @classmethod
    def wrapping(cls, role: Trainer) -> ReplayingTrainer:
        return _rewrap(cls, role)

    def send(self, recipient: str, key: tuple[int, int], topic: str, payload: bytes) -> None:
        if self._last is not None and topic == UPDATE_TOPIC:
            self.transport.send(replace(self._last, recipient=recipient))
        super().send(recipient, key, topic, payload)
        if topic == UPDATE_TOPIC and self.net is not None and self.identity is not None:
            msg = Signed.make(self.identity, self.net.context(self.task_id, key, topic), self.address, payload)
            self._last = Envelope(self.address, recipient, topic, msg.to_bytes())
