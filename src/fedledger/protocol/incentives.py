"""What a round pays and how it moves reputation: pure functions every validator recomputes.

The aggregator posts a reward root and a reputation root with the round's result; the per-member
values behind them travel in the round's evidence. Validators recompute both from the cohort (drawn
from the round seed), the survivor list and the members named as faulty, and vote against a round whose
values differ, so the aggregator cannot pay itself or favour anyone.

Rewards: the contributors' pool is split equally among the members whose update is in the aggregate;
members named as faulty get nothing. (Contribution-weighted shares are the next step: the tree format
already carries arbitrary amounts.)

Reputation: a score in [0, MAX_SCORE] per trainer, DEFAULT_SCORE for a member never scored. Each round,
for the members of its cohort only: a contributor moves a fraction GAIN of the way toward MAX_SCORE; a
member that was drawn but did not contribute (dropped out) loses a fraction DROP_LOSS of its score; a
member named as faulty loses a fraction FAULT_LOSS. Scores weight selection on chain (stake x
(5000 + score) / 10000), so reliable members are drawn as aggregators and validators more often.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

MAX_SCORE = 10_000
DEFAULT_SCORE = 5_000
GAIN = 0.1
DROP_LOSS = 0.05
FAULT_LOSS = 0.5


def reward_shares(pool: int, contributors: Iterable[str], faulty: Collection[str] = ()) -> dict[str, int]:
    """Equal shares of `pool` (integer token units) for the contributors not named as faulty."""
    paid = sorted(set(contributors) - set(faulty))
    if not paid:
        return {}
    return dict.fromkeys(paid, pool // len(paid))


def next_reputation(previous: Mapping[str, int], cohort: Iterable[str], contributors: Collection[str],
                    faulty: Collection[str] = ()) -> dict[str, int]:
    """Every member's score after the round: `previous` carried forward, the cohort's members updated."""
    scores = dict(previous)
    contributed, named = set(contributors), set(faulty)
    for member in cohort:
        score = scores.get(member, DEFAULT_SCORE)
        if member in named:
            score = round(score * (1 - FAULT_LOSS))
        elif member in contributed:
            score = score + round((MAX_SCORE - score) * GAIN)
        else:
            score = round(score * (1 - DROP_LOSS))
        scores[member] = max(0, min(MAX_SCORE, score))
    return scores
