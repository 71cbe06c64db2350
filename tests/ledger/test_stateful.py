"""A stateful property test: honest members and an adversary taking random actions against the contracts.

The honest side is online and follows the rules: its owner opens rounds and reopens stalled ones at once,
its aggregator (aggregators[0]) submits a correct result as soon as it is drawn, its validators
(validators[0..3]) vote as soon as a result is posted (accepting a correct one, rejecting a wrong one),
its trainers never fault. The adversary holds aggregators[1] and validators[4] (submitting wrong results
that name honest trainers as faulty, or nothing; voting either way, or not at all), an outsider account
with tokens (its own junk task, reopens of the honest task, over-spending the privacy budget) and moves
the chain clock at will.

Invariants, checked after every step:
- an honest member's stake never falls (it commits no fault, so nothing may be slashed from it);
- the reward token's supply never exceeds what owners funded (`total_funded`);
- every finalized round had a full committee and at least 2/3 of its stake accepting;
- no task's privacy spent exceeds its budget.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from ledger_fed import TASK, E, Fed, h, key

from fedledger.ledger import Role, RoundResult, RoundStatus, TaskSpec
from fedledger.ledger.claims import reward_tree
from fedledger.ledger.errors import LedgerRevert

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

GOOD, BAD = h("good model"), h("bad model")


class Chain(RuleBasedStateMachine):
    fed: Fed  # set by the test

    @initialize()
    def start(self) -> None:
        fed = self.fed
        self.snap = fed.ledger.snapshot()
        self.honest = [fed.aggregators[0], *fed.validators[:4], *fed.trainers]
        self.adv_agg, self.adv_val = fed.aggregators[1], fed.validators[4]
        self.outsider = fed.ledger.dev(80)
        if fed.ledger.member(self.outsider.address) is None:
            fed.ledger.transfer_utility(self.outsider.address, 1_000 * E)
            self.outsider.register(Role.TASK_OWNER, key("outsider"))
        self.stakes = {m.address: m.stake_of() for m in self.honest}
        self.tasks = [fed.task_id]

    def teardown(self) -> None:
        self.fed.ledger.revert(self.snap)

    # ------------------------------------------------------------ the honest side, always online
    def _honest(self) -> None:
        fed, t = self.fed, self.fed.task_id
        for _ in range(6):
            task = fed.ledger.task(t)
            r = fed.ledger.round(t, task.current_round) if task.current_round else None
            now = fed.ledger.timestamp
            if r is None or r.status is RoundStatus.FINALIZED:
                if task.completed:
                    return
                try:
                    fed.owner.open_round(t)  # its bound: spent + the plan's per-round spend, within the budget
                except LedgerRevert:
                    return  # e.g. the adversary left too few validators with weight: nobody can be drawn
                continue
            if r.status is RoundStatus.SEALING:
                fed.owner.seal_round(t, r.round_id)
            elif r.status is RoundStatus.OPEN and now > r.submit_deadline:
                fed.owner.reopen(t, r.round_id)
            elif r.status is RoundStatus.OPEN and r.aggregator == fed.aggregators[0].address:
                self._submit(fed.aggregators[0], r, GOOD)
            elif r.status is RoundStatus.SUBMITTED:
                vote_of = fed.ledger.contracts["task_manager"].functions.vote_of
                for v in fed.validators[:4]:
                    drawn = v.address in r.committee and now <= r.vote_deadline
                    if drawn and vote_of(t, r.round_id, v.address).call() == 0:
                        v.vote(t, r.round_id, r.model_hash == GOOD)
                outcome = fed.ledger.finalize_outcome(t, r.round_id)
                if outcome is not None:
                    fed.owner.finalize(t, r.round_id)
                elif now > r.vote_deadline:
                    fed.owner.reopen(t, r.round_id)
                else:
                    return  # waiting for the adversary's vote
            elif r.status is RoundStatus.REJECTED:
                fed.owner.reopen(t, r.round_id)
            else:
                return  # the adversary's aggregator holds the round

    def _submit(self, who, r, model: bytes) -> None:
        fed = self.fed
        spent = fed.ledger.task(fed.task_id).privacy_spent
        faulty = tuple(x.address for x in fed.trainers[:2]) if model == BAD else ()
        tree = reward_tree(fed.task_id, r.round_id, {x.address: E for x in fed.trainers})
        who.submit_result(fed.task_id, r.round_id, RoundResult(
            model_hash=model, evidence_root=h("evidence"), survivor_root=h("survivors"), survivor_count=4,
            privacy_spent=max(spent, r.privacy_bound), reward_root=tree.root, faulty=faulty))

    # ------------------------------------------------------------ the adversary
    @rule(choice=st.sampled_from(["bad", "good", "silent"]))
    def adversary_aggregates(self, choice: str) -> None:
        fed = self.fed
        task = fed.ledger.task(fed.task_id)
        if task.current_round:
            r = fed.ledger.round(fed.task_id, task.current_round)
            if r.status is RoundStatus.OPEN and r.aggregator == self.adv_agg.address and choice != "silent":
                with contextlib.suppress(LedgerRevert):
                    self._submit(self.adv_agg, r, BAD if choice == "bad" else GOOD)
        self._honest()

    @rule(accept=st.sampled_from([True, False, None]))
    def adversary_votes(self, accept: bool | None) -> None:
        fed = self.fed
        task = fed.ledger.task(fed.task_id)
        if task.current_round and accept is not None:
            with contextlib.suppress(LedgerRevert):
                self.adv_val.vote(fed.task_id, task.current_round, accept)
        self._honest()

    @rule(seconds=st.sampled_from([1, TASK.submit_window + 1, 2 * TASK.submit_window + 2]))
    def adversary_moves_the_clock(self, seconds: int) -> None:
        self.fed.ledger.advance_time(seconds)
        self._honest()

    @rule()
    def outsider_reopens(self) -> None:
        task = self.fed.ledger.task(self.fed.task_id)
        if task.current_round:
            with contextlib.suppress(LedgerRevert):
                self.outsider.reopen(self.fed.task_id, task.current_round)
        self._honest()

    @rule(amount=st.integers(1, 300))
    def adversary_restakes(self, amount: int) -> None:
        for m in (self.adv_agg, self.adv_val):
            with contextlib.suppress(LedgerRevert):
                m.stake(amount * E) if amount % 2 else m.unbond(min(m.stake_of(), amount * E))
        self._honest()

    @rule()
    def outsider_runs_a_junk_task(self) -> None:
        spec = TaskSpec(spec_hash=h("junk"), reward_per_round=0, rounds=1, privacy_budget=1, committee_size=3,
                        submit_window=60, vote_window=60)
        with contextlib.suppress(LedgerRevert):
            junk = self.outsider.create_task(spec)
            self.tasks.append(junk)
            self.outsider.open_round(junk)  # nobody honest joined: refused
        self._honest()

    @rule()
    def adversary_overspends_privacy(self) -> None:
        fed = self.fed
        task = fed.ledger.task(fed.task_id)
        if task.current_round:
            r = fed.ledger.round(fed.task_id, task.current_round)
            if r.status is RoundStatus.OPEN and r.aggregator == self.adv_agg.address:
                with contextlib.suppress(LedgerRevert):
                    self.adv_agg.submit_result(fed.task_id, r.round_id, RoundResult(
                        BAD, h("e"), h("s"), 1, task.privacy_budget + 1, reward_root=h("r")))
        self._honest()

    # ------------------------------------------------------------ invariants
    @invariant()
    def honest_stake_never_falls(self) -> None:
        for m in self.honest:
            assert m.stake_of() == self.stakes[m.address], f"honest {m.address} lost stake"
        honest = {m.address for m in self.honest}
        assert [s for s in self.fed.ledger.slashes() if s.member in honest] == []

    @invariant()
    def rewards_never_exceed_funding(self) -> None:
        c = self.fed.ledger.contracts
        assert c["reward_token"].functions.totalSupply().call() <= c["task_manager"].functions.total_funded().call()

    @invariant()
    def finalized_rounds_had_a_full_committee_and_two_thirds(self) -> None:
        led = self.fed.ledger
        for ev in led.events("RoundFinalized"):
            a = ev.args
            assert int(a["accept_weight"]) * 3 >= int(a["committee_weight"]) * 2
            opened = [o for o in led.events("RoundOpened", task_id=a["task_id"], round_id=a["round_id"])
                      if o.args["attempt"] == a["attempt"]]
            assert len(set(opened[-1].args["committee"])) == led.task(int(a["task_id"])).committee_size

    @invariant()
    def privacy_spent_within_budget(self) -> None:
        for t in self.tasks:
            task = self.fed.ledger.task(t)
            assert task.privacy_spent <= task.privacy_budget


def test_honest_members_keep_their_stake_whatever_the_adversary_does(module_fed: Fed) -> None:
    Chain.fed = module_fed
    run_state_machine_as_test(
        Chain,
        settings=settings(max_examples=6, stateful_step_count=16, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]),
    )
