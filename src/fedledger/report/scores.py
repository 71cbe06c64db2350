"""What the report shows of the committee's contribution scores: per finalized round, each member's consensus score,
reward and reputation (from the round's settlement, in its evidence blob, whose root is on chain), and why the
aggregator and each validator was or was not paid (the settlement's own reasons, and the validators' flat share paid
on chain for an accepting vote)."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fedledger.core.blobstore import BlobStore
from fedledger.core.errors import FedLedgerError
from fedledger.ledger import Ledger, RoundStatus
from fedledger.protocol.evidence import Evidence, RoundManifest

TOKEN = 10**18


@dataclass(frozen=True, slots=True)
class PartyRow:
    label: str
    role: str  # "trainer" | "aggregator" | "validator"
    score: float | None  # trainer: consensus score; validator: agreement with the consensus
    reward: float  # tokens from the round's reward root
    onchain: float  # validator: flat share minted on chain for its accepting vote
    reputation: int | None  # after the round (the settlement's reputation root)
    why: str


@dataclass(frozen=True, slots=True)
class RoundScores:
    round: int
    rows: tuple[PartyRow, ...]
    note: str = ""  # why the round has no score rows


def read_scores(ledger: Ledger, blobs: BlobStore, task_id: int, label: Callable[[str], str]) -> tuple[RoundScores, ...]:
    """Every finalized round's settlement, read from its evidence (by the root on chain)."""
    out = []
    voted = {}
    for ev in ledger.events("Voted", task_id=task_id):
        voted[(int(ev.args["round_id"]), int(ev.args["attempt"]), str(ev.args["voter"]))] = bool(ev.args["accept"])  # type: ignore[call-overload]
    paid_on_chain = {int(ev.args["round_id"]): int(ev.args["validator_reward"])  # type: ignore[call-overload]
                     for ev in ledger.events("RoundFinalized", task_id=task_id)}
    for r in range(1, ledger.task(task_id).current_round + 1):
        rec = ledger.round(task_id, r)
        if rec.status is not RoundStatus.FINALIZED:
            continue
        try:
            s = Evidence.from_bytes(blobs.get(RoundManifest.find(blobs, rec.evidence_root).evidence)).settlement
        except (FedLedgerError, OSError, KeyError, ValueError) as e:
            out.append(RoundScores(r, (), f"the round's evidence is not in this directory's blob store ({e})"))
            continue
        scores = s.scores or {}
        consensus, agreement, why = scores.get("consensus", {}), scores.get("agreement", {}), scores.get("why", {})
        rows = []
        for a in s.contributors:
            c = consensus.get(a)
            rows.append(PartyRow(label(a), "trainer", c, s.rewards.get(a, 0) / TOKEN, 0.0, s.reputation.get(a),
                                 "named faulty: nothing" if a in s.faulty else
                                 "paid by its consensus score" if s.rewards.get(a, 0) else
                                 "consensus score <= 0 (no useful update): nothing"))
        rows.append(PartyRow(label(rec.aggregator), "aggregator", None, s.rewards.get(rec.aggregator, 0) / TOKEN, 0.0,
                             s.reputation.get(rec.aggregator), why.get(rec.aggregator, "not scored")))
        for v in rec.committee:
            vote = voted.get((r, rec.attempt, v))
            flat = paid_on_chain.get(r, 0) / TOKEN if vote else 0.0
            onchain = ("accepted: flat share paid on chain" if vote else
                       "rejected: no flat share" if vote is False else "did not vote: no flat share")
            rows.append(PartyRow(label(v), "validator", agreement.get(v), s.rewards.get(v, 0) / TOKEN, flat,
                                 s.reputation.get(v), f"{onchain}; scores: {why.get(v, 'not scored')}"))
        out.append(RoundScores(r, tuple(rows), "" if s.scores is not None else "settled without committee scores"))
    return tuple(out)


def _e(x: object) -> str:
    return html.escape(str(x))


def _num(x: float | int | None, digits: int = 4) -> str:
    return "" if x is None else f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def render_scores(rounds: Sequence[RoundScores]) -> str:
    """HTML: each member's score, reward and reputation over the rounds, then per round why each was (not) paid."""
    if not rounds:
        return "<p>No finalized round: no contribution scores.</p>"
    members: dict[str, str] = {}
    for rs in rounds:
        for row in rs.rows:
            members.setdefault(row.label, row.role)
    head = "".join(f"<th>round {rs.round}<br>score / reward / reputation</th>" for rs in rounds)
    body = []
    for m, role in members.items():
        cells = []
        for rs in rounds:
            found = next((x for x in rs.rows if x.label == m), None)
            cells.append("<td></td>" if found is None else
                         f'<td class="num">{_num(found.score)} / {_num(found.reward + found.onchain)} / '
                         f"{_num(found.reputation)}</td>")
        body.append(f"<tr><td>{_e(m)}</td><td>{_e(role)}</td>{''.join(cells)}</tr>")
    parts = [
        "<p class=\"note\">Trainers' score: the committee's consensus (stake-weighted median of the revealed score "
        "vectors, Yuma-style clipping); validators' score: their agreement with it. Reward: reward tokens from the "
        "round's reward root (validators: plus the flat share paid on chain for an accepting vote). Reputation: "
        "the round's reputation root (applied on chain for trainers).</p>",
        f"<table><thead><tr><th>member</th><th>role</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>",
    ]
    for rs in rounds:
        parts.append(f"<h4>Round {rs.round}: who was paid and why</h4>")
        if rs.note:
            parts.append(f'<p class="note">{_e(rs.note)}</p>')
        rows = "".join(
            f"<tr><td>{_e(x.label)}</td><td>{_e(x.role)}</td><td class=\"num\">{_num(x.score)}</td>"
            f"<td class=\"num\">{_num(x.reward)}</td><td class=\"num\">{_num(x.onchain)}</td>"
            f"<td class=\"num\">{_num(x.reputation)}</td><td>{_e(x.why)}</td></tr>" for x in rs.rows)
        parts.append("<table><thead><tr><th>member</th><th>role</th><th>score / agreement</th><th>reward (root)</th>"
                     "<th>on-chain validator share</th><th>reputation after</th><th>why</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table>")
    return "".join(parts)


__all__ = ["PartyRow", "RoundScores", "read_scores", "render_scores"]
