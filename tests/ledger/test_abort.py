"""The aborted-attempt path on a real anvil: the round's aggregator reports that too few members answered for
secure aggregation to finish (`Ledger.report_abort`: a result with an empty model hash). The committee votes on
it like on a result: accepted, the round is rejected without a slash, nobody is paid and the redraw does not
draw that aggregator first; rejected, the aggregator is slashed as for any rejected result."""

from __future__ import annotations

import pytest
from ledger_fed import TASK, Fed, h

from fedledger.ledger import RoundStatus, SlashReason
from fedledger.ledger.errors import DeadlineError, NotAuthorized

pytestmark = [pytest.mark.anvil]


def test_an_accepted_abort_reopens_the_round_without_a_slash_or_a_payment(fed: Fed) -> None:
    info = fed.open()
    agg = fed.at(info.aggregator)
    bonded, escrow = agg.stake_of(), fed.ledger.task(fed.task_id).escrow
    paid = {v: fed.ledger.reward_balance(v) for v in info.committee}
    agg.report_abort(fed.task_id, info.round_id, h("abort evidence"))
    record = fed.ledger.round(fed.task_id, info.round_id)
    assert record.status is RoundStatus.SUBMITTED and record.model_hash == b"\x00" * 32
    fed.vote_all(info, accept=True)
    assert fed.ledger.finalize_outcome(fed.task_id, info.round_id) is RoundStatus.REJECTED
    assert fed.owner.finalize(fed.task_id, info.round_id) is RoundStatus.REJECTED
    task = fed.ledger.task(fed.task_id)
    assert task.finalized_rounds == 0 and task.escrow == escrow  # nothing settled, nothing paid
    assert {v: fed.ledger.reward_balance(v) for v in info.committee} == paid
    again = fed.owner.reopen(fed.task_id, info.round_id)
    assert again.attempt == 1 and again.aggregator != agg.address  # not drawn first
    assert fed.ledger.slashes(fed.task_id) == [] and agg.stake_of() == bonded
    assert fed.ledger.events("RoundRejected", task_id=fed.task_id)[-1].args["slashed"] == "0x" + "00" * 20


def test_a_rejected_abort_slashes_its_aggregator(fed: Fed) -> None:
    info = fed.open()
    agg = fed.at(info.aggregator)
    agg.report_abort(fed.task_id, info.round_id, h("abort evidence"))
    fed.vote_all(info, accept=False)
    assert fed.owner.finalize(fed.task_id, info.round_id) is RoundStatus.REJECTED
    [s] = fed.ledger.slashes(fed.task_id)
    assert (s.member, s.reason) == (agg.address, SlashReason.REJECTED_RESULT)


def test_only_the_rounds_aggregator_reports_an_abort_before_its_deadline(fed: Fed) -> None:
    info = fed.open()
    other = next(a for a in fed.aggregators if a.address != info.aggregator)
    with pytest.raises(NotAuthorized):
        other.report_abort(fed.task_id, info.round_id, h("abort evidence"))
    fed.ledger.advance_time(TASK.submit_window + 1)
    with pytest.raises(DeadlineError):
        fed.at(info.aggregator).report_abort(fed.task_id, info.round_id, h("abort evidence"))
    fed.owner.reopen(fed.task_id, info.round_id)  # a missed deadline is still slashed
    assert [s.reason for s in fed.ledger.slashes(fed.task_id)] == [SlashReason.MISSED_DEADLINE]
