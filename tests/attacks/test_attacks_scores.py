"""Red-team attacks on the committee's contribution scores, against the real roles and the real contracts on anvil
(`protocol.score_flow`: the aggregator publishes bare evidence, committee members score, commit and reveal, the
settlement is the stake-weighted median split of the chain's reveals, recomputed by every validator and the audit).

- a free rider (a zero update) earns nothing of a round's reward, while honest trainers are paid by score;
- a validator that copies another's score vector gets no valid reveal (its commitment binds its own address, and no
  reveal exists before commits close): the copy attempt reverts and it earns no scoring share;
- an aggregator that posts a settlement other than the one the reveals give is voted down and slashed;
- a validator whose scores deviate from the consensus (dishonest, or lazy: all ones) loses its scoring share and
  reputation.
- when no trainer earns anything (every one free rides) the trainers' part goes back to the task's escrow, not to the
  aggregator; an aggregator that posts another unpaid part than the settlement leaves is voted down and slashed.
Conservation in every run: the reward root pays the round's contributors' pool less the part nobody earned (back to
the escrow), the claims take all of it, and no reward token exists beyond the rounds' funded rewards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account

from fedledger.core.blobstore import BlobStore
from fedledger.core.config import build_config
from fedledger.core.errors import FedLedgerError
from fedledger.ledger import Ledger, SlashReason
from fedledger.ledger.anvil import find_anvil
from fedledger.ledger.backends import dev_key
from fedledger.ledger.claims import reward_tree
from fedledger.ledger.types import ZERO32, RoundResult
from fedledger.protocol.audit import audit_run
from fedledger.protocol.evidence import Evidence, RoundManifest, Settlement
from fedledger.protocol.incentives import reward_shares, split_pool
from fedledger.protocol.roles import RoundView, Validator
from fedledger.protocol.score_flow import ROUND_RULES, BallotBox, CommitteeScoring
from fedledger.report.html import build_report
from fedledger.sim import Simulation
from fedledger.sim.attacks import AttackPlan, TamperingAggregator
from fedledger.sim.onchain import CONTRIBUTOR_POOL, REWARD_PER_ROUND, TRAINER_BASE, VALIDATOR_BASE

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed")]

VISIBLE = {"dataset": "digits", "partition": "iid", "clients": 6, "model": "logreg", "rounds": 2, "lr": 0.1,
           "proofs": "none", "privacy": {"dp": "none"}, "strategy": "fedavg",
           "ledger": {"enabled": True, "chain": "auto", "committee": 3, "claim_rewards": True}}
FREE_RIDE = "free_ride:0.2"


def _dev(i: int) -> str:
    """The address of the i-th dev account (the simulation's accounts: `sim.onchain`)."""
    return str(Account.from_key(dev_key(i)).address)


def _settlements(out: Path) -> list[tuple[int, Settlement]]:
    blobs = BlobStore(out / "blobs")
    with Ledger.connect("auto", out, deploy_if_missing=False) as ledger:
        task = ledger.task(1)
        roots = [(r, ledger.round(1, r).evidence_root) for r in range(1, task.current_round + 1)]
    return [(r, Evidence.from_bytes(blobs.get(RoundManifest.find(blobs, root).evidence)).settlement)
            for r, root in roots]


def _free_riders(members: int = 6) -> set[str]:
    with_ledger = AttackPlan.parse(FREE_RIDE, members, 0).members_doing("free_ride")
    assert with_ledger
    return {_dev(TRAINER_BASE + i) for i in with_ledger}


def _conserved(out: Path) -> None:
    """Every finalized round's reward root pays its contributors' pool less the part nobody earned (posted as unpaid
    and returned to the escrow), all claimed; no reward token beyond the funded rewards of the finalized rounds
    exists."""
    with Ledger.connect("auto", out, deploy_if_missing=False) as ledger:
        task = ledger.task(1)
        for r, s in _settlements(out):
            unpaid = ledger.reward_unpaid(1, r)
            assert unpaid == s.unpaid(CONTRIBUTOR_POOL) and sum(s.rewards.values()) + unpaid == CONTRIBUTOR_POOL
            root, amount, claimed = ledger.reward_pool(1, r)
            assert root == reward_tree(1, r, s.rewards).root
            assert amount == CONTRIBUTOR_POOL - unpaid and claimed == amount
        supply = ledger.contracts["reward_token"].functions.totalSupply().call()
        assert supply <= REWARD_PER_ROUND * task.finalized_rounds


def test_a_free_rider_earns_nothing_while_honest_trainers_are_paid_by_score(tmp_path: Path) -> None:
    res = Simulation(build_config({**VISIBLE, "attack": FREE_RIDE})).run(tmp_path)
    assert all(r.finalized and r.attempts == 1 for r in res.rounds) and not res.ledger["slashed"]
    riders = _free_riders()
    for _, s in _settlements(tmp_path):
        assert riders <= set(s.contributors)  # their zero updates are in the aggregate...
        assert not riders & set(s.rewards)  # ...and earn nothing
        honest = [a for a in s.contributors if a not in riders]
        assert all(s.rewards.get(a, 0) > 0 for a in honest)
        assert len({s.rewards[a] for a in honest}) == len(honest)  # by score, not equal shares
        assert all(s.reputation[r] < min(s.reputation[a] for a in honest) for r in riders)
    with Ledger.connect("auto", tmp_path, deploy_if_missing=False) as ledger:
        assert all(ledger.reward_balance(r) == 0 for r in riders)  # claims included
    _conserved(tmp_path)
    audit_run(tmp_path)  # the auditor recomputes every settlement from the chain's reveals
    # the report shows every member's score, reward and reputation per round, and why each party was (not) paid
    page = build_report(tmp_path, audit=False)[0].read_text()
    assert "Contribution scores and pay" in page and "no useful update" in page
    assert "paid by its consensus score" in page and "round finalized: paid its part" in page
    assert "accepted: flat share paid on chain; scores: agreement" in page


def _calldata_salt(ledger: Ledger, tx_hash: str) -> bytes:
    """The salt of a reveal, read off its transaction's calldata: public once revealed."""
    tx = ledger.backend.w3.eth.get_transaction(tx_hash)
    _, args = ledger.contracts["scores"].decode_function_input(tx["input"])
    return bytes(args["salt"])


@pytest.mark.parametrize("how", ["copy_commitment", "commit_after_reveal"])
def test_a_validator_cannot_copy_another_validators_scores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           how: str) -> None:
    copier, victim = _dev(VALIDATOR_BASE), _dev(VALIDATOR_BASE + 1)
    step = CommitteeScoring.step
    done: dict[tuple[tuple[int, int], str], bool] = {}
    refused: list[str] = []

    def copying(self: CommitteeScoring, key: tuple[int, int], now: int, score: Callable[..., Any],
                members: Any) -> bool:
        if self.ledger.address != copier:
            return step(self, key, now, score, members)
        led, t = self.ledger, self.task_id
        if not led.scoring(t, *key).published:
            return False
        theirs = led.scores_commitment_of(t, key[0], key[1], victim)
        if how == "copy_commitment" and theirs != ZERO32 and not done.get((key, "commit")):
            done[(key, "commit")] = True
            led.commit_scores(t, key[0], theirs)  # accepted: but it binds the victim's address
            return True
        revealed = led.revealed_scores(t, key[0], key[1], victim)
        if revealed != ZERO32 and not done.get((key, "copy")):
            done[(key, "copy")] = True
            led.index.sync()
            event = next(e for e in led.events("ScoresRevealed", validator=victim) if int(e.args["attempt"]) == key[1]
                         and int(e.args["round_id"]) == key[0])
            salt = _calldata_salt(led, event.tx_hash)
            try:
                if how == "copy_commitment":  # reveal the victim's hash and salt against the copied commitment
                    led.reveal_scores(t, key[0], revealed, salt)
                else:  # commit to the victim's revealed vector now that it is public
                    led.commit_scores(t, key[0], bytes(led.contracts["scores"].functions.commitment_for(
                        revealed, salt, copier, t, key[0], key[1]).call()))
            except FedLedgerError as e:
                refused.append(str(e))
            return True
        return False

    monkeypatch.setattr(CommitteeScoring, "step", copying)
    res = Simulation(build_config({**VISIBLE, "rounds": 1, "attack": FREE_RIDE})).run(tmp_path)
    assert res.rounds[0].finalized
    # the copy attempt reverts on chain: a copied commitment binds the victim's address; a commit made once a reveal
    # is public comes after the commit deadline (or after the aggregator already posted the round)
    want = ("does not match the commitment",) if how == "copy_commitment" else \
        ("commit deadline passed", "round is not open")
    assert len(refused) == 1 and any(w in refused[0] for w in want), refused
    (_, s), = _settlements(tmp_path)
    assert s.scores is not None and s.scores["agreement"][copier] == 0.0 and copier not in s.rewards
    assert "no valid reveal" in s.scores["why"][copier]
    assert s.rewards.get(victim, 0) > 0
    _conserved(tmp_path)
    audit_run(tmp_path)


def test_an_aggregator_posting_another_settlement_than_the_reveals_give_is_voted_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reasons: list[str]) -> None:
    def equal_shares(self: TamperingAggregator, view: RoundView, settlement: Settlement) -> Settlement:
        """The old rule: equal shares for every contributor (free riders included) and the aggregator's part."""
        trainers = reward_shares(CONTRIBUTOR_POOL * 9 // 10, settlement.contributors)
        return Settlement(settlement.contributors, settlement.faulty,
                          {**trainers, self.address: CONTRIBUTOR_POOL - sum(trainers.values())},
                          settlement.reputation, settlement.scores)

    monkeypatch.setattr(TamperingAggregator, "publish", lambda self, view, output: output)  # an honest model
    monkeypatch.setattr(TamperingAggregator, "settle_scores", equal_shares)
    res = Simulation(build_config({**VISIBLE, "attack": f"malicious_aggregator,{FREE_RIDE}"})).run(tmp_path)
    assert res.rounds[0].attempts >= 2 and {s["reason"] for s in res.ledger["slashed"]} == \
        {SlashReason.REJECTED_RESULT.name.lower()}, (res.rounds, res.ledger["slashed"])
    assert reasons and all("not the split of the committee's revealed scores" in r for r in reasons), reasons
    riders = _free_riders()
    assert all(not riders & set(s.rewards) for _, s in _settlements(tmp_path))
    _conserved(tmp_path)
    audit_run(tmp_path)


@pytest.mark.parametrize("attack", ["dishonest", "lazy"])
def test_a_validator_scoring_against_the_consensus_loses_pay_and_reputation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, attack: str) -> None:
    deviant = _dev(VALIDATOR_BASE)  # the first validator account (lazy_validator picks it too)
    prepare = Validator.prepare_scores

    def inverted(self: Validator, view: RoundView, scores: np.ndarray) -> np.ndarray:
        """Pays the free riders and starves the honest: the best score for the worst member."""
        honest = prepare(self, view, scores)
        return honest.max() - honest if self.address == deviant else honest

    cfg = {**VISIBLE, "attack": FREE_RIDE}
    if attack == "dishonest":
        monkeypatch.setattr(Validator, "prepare_scores", inverted)
    else:
        cfg["attack"] = f"lazy_validator:1,{FREE_RIDE}"
    res = Simulation(build_config(cfg)).run(tmp_path)
    assert all(r.finalized for r in res.rounds)
    riders = _free_riders()
    settlements = _settlements(tmp_path)
    for _, s in settlements:
        assert s.scores is not None
        agreement = s.scores["agreement"]
        honest = [v for v in agreement if v != deviant]
        assert agreement[deviant] < 0.7 <= min(agreement[v] for v in honest), agreement
        assert deviant not in s.rewards and all(s.rewards.get(v, 0) > 0 for v in honest)
        assert "not paid" in s.scores["why"][deviant]
        assert not riders & set(s.rewards)  # the median ignores one deviant vector out of three
    last = settlements[-1][1].reputation
    assert last[deviant] < min(last[v] for v in settlements[-1][1].scores["agreement"] if v != deviant)
    _conserved(tmp_path)
    audit_run(tmp_path)


def test_when_no_trainer_earns_the_trainers_part_returns_to_the_escrow_not_to_the_aggregator(tmp_path: Path) -> None:
    res = Simulation(build_config({**VISIBLE, "attack": "free_ride:1.0"})).run(tmp_path)
    assert all(r.finalized for r in res.rounds)
    parts = split_pool(CONTRIBUTOR_POOL, dict(ROUND_RULES.role_parts))
    with Ledger.connect("auto", tmp_path, deploy_if_missing=False) as ledger:
        task = ledger.task(1)
        for r, s in _settlements(tmp_path):
            record = ledger.round(1, r)
            assert not set(s.contributors) & set(s.rewards)  # zero updates earn nothing...
            assert s.rewards[record.aggregator] == parts["aggregator"]  # ...and the aggregator only its part
            assert ledger.reward_unpaid(1, r) == s.unpaid(CONTRIBUTOR_POOL) >= parts["trainers"]
        unpaid = sum(ledger.reward_unpaid(1, r) for r, _ in _settlements(tmp_path))
        minted = ledger.contracts["reward_token"].functions.totalSupply().call()
        # what was not minted for the finalized rounds is still in the escrow, the unpaid parts included
        assert task.escrow == REWARD_PER_ROUND * task.rounds - minted
        assert minted <= REWARD_PER_ROUND * task.finalized_rounds - unpaid
    _conserved(tmp_path)
    audit_run(tmp_path)


def test_an_aggregator_posting_another_unpaid_part_than_the_settlement_leaves_is_voted_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reasons: list[str]) -> None:
    submit = Ledger.submit_result
    tampered: list[str] = []

    def keep_the_trainers_part_in_escrow(self: Ledger, task_id: int, round_id: int, result: RoundResult,
                                         **kw: Any) -> None:
        """The first result posted claims the trainers' part is unpaid while its root still pays them: if
        finalized, the escrow (the owner) keeps their pay and their claims exceed the pool."""
        if not tampered and result.model_hash != ZERO32:
            tampered.append(self.address)
            result = replace(result, reward_unpaid=CONTRIBUTOR_POOL * 8 // 10)
        submit(self, task_id, round_id, result, **kw)

    monkeypatch.setattr(Ledger, "submit_result", keep_the_trainers_part_in_escrow)
    res = Simulation(build_config({**VISIBLE, "attack": FREE_RIDE})).run(tmp_path)
    assert tampered and res.rounds[0].attempts >= 2 and all(r.finalized for r in res.rounds)
    assert [s["member"].lower() for s in res.ledger["slashed"]] == [a.lower() for a in tampered], res.ledger["slashed"]
    assert reasons and all("posted as unpaid" in r for r in reasons), reasons
    _conserved(tmp_path)
    audit_run(tmp_path)


@pytest.mark.parametrize("box", [True, False])
def test_a_validator_restarted_between_its_commit_and_its_reveal_reveals_from_its_ballot_box(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, box: bool) -> None:
    restarted = _dev(VALIDATOR_BASE + 1)
    step = CommitteeScoring.step
    forgot: list[tuple[int, int]] = []

    def restarting(self: CommitteeScoring, key: tuple[int, int], now: int, score: Callable[..., Any],
                   members: Any) -> bool:
        if self.ledger.address != restarted:
            return step(self, key, now, score, members)
        if box and self.box is None:
            self.box = BallotBox(tmp_path / "ballots")
        acted = step(self, key, now, score, members)
        if key in self.ballots and key not in forgot:  # it just committed: the process dies, its memory with it
            forgot.append(key)
            self.ballots.clear()
        return acted

    monkeypatch.setattr(CommitteeScoring, "step", restarting)
    res = Simulation(build_config({**VISIBLE, "rounds": 1, "attack": FREE_RIDE})).run(tmp_path)
    assert res.rounds[0].finalized and forgot
    (_, s), = _settlements(tmp_path)
    assert s.scores is not None
    with Ledger.connect("auto", tmp_path, deploy_if_missing=False) as ledger:
        revealed = ledger.revealed_scores(1, 1, ledger.round(1, 1).attempt, restarted) != ZERO32
    if box:  # the ballot on its disk (owner-only) holds the salt: it reveals and is paid for its scores
        assert revealed and s.rewards.get(restarted, 0) > 0
        assert (tmp_path / "ballots").stat().st_mode & 0o077 == 0
        assert all(p.stat().st_mode & 0o077 == 0 for p in (tmp_path / "ballots").iterdir())
    else:  # without one the salt died with the process: no reveal, no scoring share
        assert not revealed and restarted not in s.rewards and "no valid reveal" in s.scores["why"][restarted]
    _conserved(tmp_path)
