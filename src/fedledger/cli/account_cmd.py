"""`fedledger account` and `fedledger gov`: a member's stake, rewards and votes from the shell.

    fedledger account balance  [ADDRESS] [--task T]
    fedledger account stake    AMOUNT                    # tokens, e.g. 10 or 0.5
    fedledger account unbond   AMOUNT
    fedledger account withdraw                           # after the unbonding delay
    fedledger account claim    --task T [--all]          # rewards and reputation of finalized rounds
    fedledger gov list         [--json]
    fedledger gov propose      ACTION --value V [--key K] [--to ADDRESS]
    fedledger gov vote         ID --for|--against
    fedledger gov execute      ID                        # queues a passed proposal, then executes it

Every command takes `--out DIR` (a run directory: the managed anvil's state in DIR/chain and the
rounds' evidence in DIR/blobs) or `--chain URL`. On an RPC chain the signer is `--keystore FILE`
(or `$FEDLEDGER_KEYSTORE` with `$FEDLEDGER_KEYSTORE_PASSWORD`, or `$FEDLEDGER_PRIVATE_KEY`). On the
managed anvil of a simulated run, `--as trainer:3` (also aggregator:N, validator:N, owner, dev:N) signs
as that member's dev account.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from fedledger.core.errors import ConfigError

DEFAULT_OUT = "runs/latest"
TOKEN = 10**18
#: governance actions by their command-line name, with the unit of their value
ACTIONS = {
    "max-reward-per-round": ("MAX_REWARD_PER_ROUND", "tokens"),
    "task-reward": ("TASK_REWARD", "tokens"),
    "min-stake": ("MIN_STAKE", "tokens"),
    "slash-bps": ("SLASH_BPS", "basis points"),
    "task-quorum": ("TASK_QUORUM", "basis points"),
    "task-committee-size": ("TASK_COMMITTEE_SIZE", "members"),
    "task-privacy-budget": ("TASK_PRIVACY_BUDGET", "epsilon"),
    "treasury-grant": ("TREASURY_GRANT", "tokens"),
    "task-bounds": ("TASK_BOUNDS", "the parameter's unit"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_account(subparsers)
    _register_gov(subparsers)


def _ledger_args(p: argparse.ArgumentParser, *, signs: bool = True) -> None:
    p.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), metavar="DIR",
                   help="run directory (chain state in DIR/chain, evidence in DIR/blobs)")
    p.add_argument("--chain", default="auto", metavar="auto|URL", help="auto (the run's managed anvil) or a node URL")
    if signs:
        p.add_argument("--keystore", type=Path, metavar="FILE", help="encrypted JSON keystore that signs")
        p.add_argument("--as", dest="as_member", metavar="WHO",
                       help="dev chains: sign as trainer:N, aggregator:N, validator:N, owner or dev:N")


def _register_account(subparsers: argparse._SubParsersAction) -> None:
    account = subparsers.add_parser("account", help="stake, unbond, withdraw, claim rewards, show balances")
    sub = account.add_subparsers(dest="account_command", required=True)

    p = sub.add_parser("balance", help="tokens, stake, unbonding and reputation of an account")
    _ledger_args(p)
    p.add_argument("address", nargs="?", help="the account (default: the signer)")
    p.add_argument("--task", type=int, help="show the reputation in this task (default: the last task joined)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_balance)

    for name, verb in (("stake", "stake AMOUNT utility tokens"), ("unbond", "start unbonding AMOUNT tokens")):
        p = sub.add_parser(name, help=verb)
        _ledger_args(p)
        p.add_argument("amount", type=_tokens, metavar="AMOUNT", help="in tokens (18 decimals), e.g. 10 or 0.5")
        p.set_defaults(func=cmd_stake if name == "stake" else cmd_unbond)

    p = sub.add_parser("withdraw", help="withdraw unbonded stake once the unbonding delay has passed")
    _ledger_args(p)
    p.set_defaults(func=cmd_withdraw)

    p = sub.add_parser("claim", help="claim rewards (and apply reputation) of a task's finalized rounds")
    _ledger_args(p)
    p.add_argument("--task", type=int, required=True, help="the task")
    p.add_argument("--all", action="store_true", help="claim for every member paid, not only the signer")
    p.set_defaults(func=cmd_claim)


def _register_gov(subparsers: argparse._SubParsersAction) -> None:
    gov = subparsers.add_parser("gov", help="propose, vote on and execute parameter changes")
    sub = gov.add_subparsers(dest="gov_command", required=True)

    p = sub.add_parser("list", help="proposals, their votes and state")
    _ledger_args(p, signs=False)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_gov_list)

    p = sub.add_parser("propose", help="propose one whitelisted parameter change")
    _ledger_args(p)
    p.add_argument("action", choices=sorted(ACTIONS), help="what to change")
    p.add_argument("--value", required=True, help="the new value, in the action's unit (tokens, basis points, ...)")
    p.add_argument("--key", type=int, default=0, help="the task id, role number or task parameter it applies to")
    p.add_argument("--to", metavar="ADDRESS", help="treasury-grant: the recipient")
    p.set_defaults(func=cmd_gov_propose)

    p = sub.add_parser("vote", help="vote with the stake held at the proposal's snapshot")
    _ledger_args(p)
    p.add_argument("proposal", type=int, metavar="ID")
    side = p.add_mutually_exclusive_group(required=True)
    side.add_argument("--for", dest="support", action="store_true", help="vote for")
    side.add_argument("--against", dest="support", action="store_false", help="vote against")
    p.set_defaults(func=cmd_gov_vote)

    p = sub.add_parser("execute", help="queue a passed proposal, and execute it once its timelock has passed")
    _ledger_args(p)
    p.add_argument("proposal", type=int, metavar="ID")
    p.set_defaults(func=cmd_gov_execute)


# -- values ---------------------------------------------------------------------------------------

def _tokens(text: str) -> int:
    """A positive token amount with at most 18 decimals, as an integer of the smallest unit."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount: {text!r}") from None
    units = value * TOKEN
    if not value.is_finite() or value <= 0 or units != units.to_integral_value():
        raise argparse.ArgumentTypeError(f"an amount is a positive number of tokens with at most 18 decimals: {text!r}")
    return int(units)


def _action_value(action: str, text: str) -> int:
    unit = ACTIONS[action][1]
    if unit in ("tokens", "epsilon"):
        try:
            return _tokens(text)  # both are 18-decimal fixed point on chain
        except argparse.ArgumentTypeError as e:
            raise ConfigError(f"--value: {e}") from None
    if not text.isdigit():
        raise ConfigError(f"--value: {action} takes a whole number of {unit}, not {text!r}")
    return int(text)


# -- the ledger and the signer ---------------------------------------------------------------------

@contextlib.contextmanager
def _ledger(args: argparse.Namespace) -> Iterator[Any]:
    """The chain of `--out`/`--chain`, signing as the account the flags name."""
    from fedledger.core.errors import DataError
    from fedledger.ledger import Ledger
    from fedledger.ledger.keys import load_signer

    if args.chain == "auto" and not (args.out / "chain").is_dir():
        raise DataError(f"no chain state in {args.out} (no {args.out / 'chain'} directory): name a run with --out DIR, "
                        "or give a node with --chain URL")
    with Ledger.connect(args.chain, args.out, deploy_if_missing=False) as ledger:
        as_member = getattr(args, "as_member", None)
        keystore = getattr(args, "keystore", None)
        if as_member and keystore:
            raise ConfigError("--as and --keystore both name a signer: give one")
        if as_member:
            signer = ledger.dev(_dev_index(as_member))
        elif keystore:
            signer = ledger.as_account(load_signer(keystore))
        else:
            signer = ledger
        try:
            yield signer
        finally:
            ledger.persist()


def _dev_index(who: str) -> int:
    from fedledger.sim.onchain import AGGREGATOR_BASE, OWNER_ACCOUNT, TRAINER_BASE, VALIDATOR_BASE

    bases = {"trainer": TRAINER_BASE, "aggregator": AGGREGATOR_BASE, "validator": VALIDATOR_BASE, "dev": 0}
    if who == "owner":
        return OWNER_ACCOUNT
    kind, _, number = who.partition(":")
    if kind not in bases or not number.isdigit():
        raise ConfigError(f"--as {who!r}: use trainer:N, aggregator:N, validator:N, owner or dev:N")
    return bases[kind] + int(number)


# -- account ---------------------------------------------------------------------------------------

def balance_payload(ledger: Any, address: str, task_id: int | None) -> dict[str, Any]:
    member = ledger.member(address)
    unbonding, release = ledger.unbonding_of(address)
    return {
        "address": address,
        "role": member.role.name.lower() if member is not None else None,
        "utility": ledger.utility_balance(address) / TOKEN,
        "reward": ledger.reward_balance(address) / TOKEN,
        "stake": ledger.stake_of(address) / TOKEN,
        "unbonding": unbonding / TOKEN,
        "unbonding_release": release or None,
        "reputation": ledger.reputation_of(address, task_id) if member is not None else None,
    }


def cmd_balance(args: argparse.Namespace) -> int:
    from eth_utils import is_address, to_checksum_address

    if args.address is not None and not is_address(args.address):
        raise ConfigError(f"not an address: {args.address!r}")
    with _ledger(args) as ledger:
        address = to_checksum_address(args.address) if args.address else ledger.address
        payload = balance_payload(ledger, address, args.task)
    if args.json:
        print(json.dumps(payload, indent=2))
        return 0
    role = payload["role"] or "not registered"
    print(f"{address} ({role})")
    print(f"  utility tokens  {payload['utility']:.6g}")
    print(f"  reward tokens   {payload['reward']:.6g}")
    print(f"  staked          {payload['stake']:.6g}")
    if payload["unbonding"]:
        print(f"  unbonding       {payload['unbonding']:.6g} (withdrawable from {_when(payload['unbonding_release'])})")
    if payload["reputation"] is not None:
        print(f"  reputation      {payload['reputation']} / 10000")
    return 0


def cmd_stake(args: argparse.Namespace) -> int:
    with _ledger(args) as ledger:
        ledger.stake(args.amount)
        print(f"{ledger.address} staked {args.amount / TOKEN:.6g}; stake now {ledger.stake_of() / TOKEN:.6g}")
    return 0


def cmd_unbond(args: argparse.Namespace) -> int:
    with _ledger(args) as ledger:
        ledger.unbond(args.amount)
        amount, release = ledger.unbonding_of()
        print(f"{ledger.address} unbonding {amount / TOKEN:.6g}, withdrawable from {_when(release)}; "
              f"stake now {ledger.stake_of() / TOKEN:.6g}")
    return 0


def cmd_withdraw(args: argparse.Namespace) -> int:
    from fedledger.core.errors import LedgerError

    with _ledger(args) as ledger:
        amount, release = ledger.unbonding_of()
        if amount == 0:
            raise LedgerError(f"{ledger.address} has nothing unbonding")
        if ledger.timestamp < release:
            raise LedgerError(f"{amount / TOKEN:.6g} tokens unbond at {_when(release)}; the chain's time is "
                              f"{_when(ledger.timestamp)}")
        ledger.withdraw()
        print(f"{ledger.address} withdrew {amount / TOKEN:.6g}")
    return 0


def cmd_claim(args: argparse.Namespace) -> int:
    from fedledger.core.blobstore import BlobStore
    from fedledger.core.errors import DataError
    from fedledger.protocol.claims import apply_latest_reputation, claim_rewards

    if not (args.out / "blobs").is_dir():
        raise DataError(f"no evidence in {args.out / 'blobs'}: claims need the rounds' evidence (the run directory)")
    blobs = BlobStore(args.out / "blobs")
    with _ledger(args) as ledger:
        if args.task < 1 or args.task > ledger.task_count():
            raise ConfigError(f"--task {args.task}: the chain has tasks 1..{ledger.task_count()}")
        accounts = None if args.all else [ledger.address]
        claimed = claim_rewards(ledger, blobs, args.task, accounts)
        applied = apply_latest_reputation(ledger, blobs, args.task, accounts)
    if not claimed and not applied:
        print("nothing to claim: every reward of the finalized rounds is claimed and reputation is current")
    for address, amount in claimed.items():
        print(f"{address} claimed {amount / TOKEN:.6g} reward tokens")
    for address, score in applied.items():
        print(f"{address} reputation now {score} / 10000")
    return 0


# -- governance ------------------------------------------------------------------------------------

GRACE_PERIOD = 14 * 86400  # governance.vy GRACE_PERIOD


def proposal_state(p: Any, now: int, quorum: int) -> str:
    """pending is never shown: a proposal votes from the block it is made in."""
    if p.executed:
        return "executed"
    if p.eta:
        if now > p.eta + GRACE_PERIOD:
            return "expired"
        return "ready" if now >= p.eta else "queued"
    if now <= p.vote_end:
        return "voting"
    if p.for_votes + p.against_votes < quorum or p.for_votes <= p.against_votes:
        return "defeated"
    return "passed"


def _gov_rows(ledger: Any) -> list[dict[str, Any]]:
    gov = ledger.contracts["governance"].functions
    count, now = int(gov.proposal_count().call()), ledger.timestamp
    rows = []
    for pid in range(1, count + 1):
        p = ledger.proposal(pid)
        total = int(ledger.contracts["staking"].functions.total_stake_at(p.snapshot_block).call())
        quorum = total * int(gov.quorum_bps().call()) // 10_000
        rows.append({
            "id": pid, "action": p.action.name.lower().replace("_", "-"), "key": p.key, "value": p.value,
            "account": p.account, "proposer": p.proposer, "for": p.for_votes / TOKEN,
            "against": p.against_votes / TOKEN, "quorum": quorum / TOKEN, "vote_end": p.vote_end, "eta": p.eta or None,
            "state": proposal_state(p, now, quorum),
        })
    return rows


def cmd_gov_list(args: argparse.Namespace) -> int:
    with _ledger(args) as ledger:
        rows = _gov_rows(ledger)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no proposals")
    for r in rows:
        when = f"votes until {_when(r['vote_end'])}" if r["state"] == "voting" else (
            f"executable from {_when(r['eta'])}" if r["state"] == "queued" else "")
        print(f"#{r['id']} {r['action']} key {r['key']} value {r['value']}: {r['state']}, for {r['for']:.6g} against "
              f"{r['against']:.6g} (quorum {r['quorum']:.6g}) {when}".rstrip())
    return 0


def cmd_gov_propose(args: argparse.Namespace) -> int:
    from eth_utils import is_address

    from fedledger.ledger import GovAction

    name = ACTIONS[args.action][0]
    if name == "TREASURY_GRANT" and not (args.to and is_address(args.to)):
        raise ConfigError("treasury-grant needs --to ADDRESS, the recipient")
    value = _action_value(args.action, args.value)
    with _ledger(args) as ledger:
        pid = ledger.propose(GovAction[name], key=args.key, value=value, account=args.to)
        p = ledger.proposal(pid)
    print(f"proposal #{pid}: {args.action} key {args.key} value {value}; votes until {_when(p.vote_end)}")
    return 0


def cmd_gov_vote(args: argparse.Namespace) -> int:
    with _ledger(args) as ledger:
        ledger.proposal(args.proposal)  # an unknown id ends here with one line
        ledger.vote_proposal(args.proposal, args.support)
        p = ledger.proposal(args.proposal)
    print(f"voted {'for' if args.support else 'against'} #{args.proposal}: for {p.for_votes / TOKEN:.6g}, "
          f"against {p.against_votes / TOKEN:.6g}")
    return 0


def cmd_gov_execute(args: argparse.Namespace) -> int:
    from fedledger.core.errors import LedgerError

    with _ledger(args) as ledger:
        row = next((r for r in _gov_rows(ledger) if r["id"] == args.proposal), None)
        if row is None:
            raise ConfigError(f"unknown proposal {args.proposal}")
        if row["state"] == "passed":
            ledger.queue(args.proposal)
            row["eta"], row["state"] = ledger.proposal(args.proposal).eta, "queued"
            if ledger.timestamp < row["eta"]:
                print(f"queued #{args.proposal}; executable from {_when(row['eta'])}: run this command again then")
                return 0
        if row["state"] not in ("queued", "ready"):
            raise LedgerError(f"proposal #{args.proposal} is {row['state']}: only a passed proposal is executed")
        if ledger.timestamp < row["eta"]:
            raise LedgerError(f"proposal #{args.proposal} is executable from {_when(row['eta'])}; the chain's time "
                              f"is {_when(ledger.timestamp)}")
        ledger.execute(args.proposal)
    print(f"executed #{args.proposal}: {row['action']} key {row['key']} value {row['value']}")
    return 0


def _when(timestamp: int | None) -> str:
    if not timestamp:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
