# pragma version ~=0.4.3
"""
@title TaskManager
@notice The tasks and the round state machine of fedledger, a thin composition of modules
        with one concern each: `peers` (the contracts it calls, through `.vyi` interfaces),
        `task_params` (governed parameters and task bounds), `task_book` (tasks, their escrow
        and governance's per-task setters), `round_book` (the rounds' records), `round_machine`
        (commit, seal, submit, reopen), `votes`, `settlement` (finalize: rewards, reputation,
        rejection), `slashing` (amounts and the once-per-round rules) and `dispute_hook` (what a
        task's dispute contract reads and slashes). Creating and closing tasks lives here.
        Members, task joins and the selection pools are the `Registry` contract's; randomness
        comes through `IRandomnessSource`.

        Tasks cost their owner something and bind only those who join them. `create_task`
        takes the owner's deposit and the whole reward budget (reward_per_round * rounds) in
        utility tokens into escrow; windows, committee size and quorum must sit within the
        governance bounds, and the two windows together stay below the staking unbonding delay
        (nobody can unbond out of a round's slash). Trainers, aggregators and validators opt in
        with `join_task`: each task has its own selection pool per role (`pools`, a Fenwick tree,
        O(log n) per draw), weight = stake * (5000 + the member's score in that task) / 10000,
        zero below the role's minimum stake. Only joined members are drawn, named or slashed.

        Rounds: Sealing -> Open -> Submitted -> Finalized | Rejected, with deadlines. Opening
        (and reopening) commits to a future block; `seal` (anyone) takes the randomness source's
        value for that block once it exists (committing again if it lapsed) and draws the
        aggregator and the full validator committee from the task's pools; a round cannot open
        or seal unless a full committee can be drawn. A caller that opens and reverts learns
        nothing: the draw does not exist yet. Votes come from committee members only, once
        each; finalization needs at least 2/3 of the committee's weight (and the task's quorum).
        Each round's privacy bound derives from the plan fixed at creation (spent so far plus
        the per-round spend, within the budget); no round opens once the budget is spent, and
        the budget cannot change once a round has opened.

        Slashing takes slash_bps of the bonded stake, only for faults the chain can see or that
        a quorum of the committee attested, and only from members who joined the task: a missed
        submission deadline (the aggregator, MISSED_DEADLINE, at reopen), a missing vote when
        the vote deadline passed without a quorum (each silent committee member, MISSED_VOTE,
        at reopen) - both at most once per member and round, and only if the task's window is at
        least the governance minimum - a result the committee's quorum rejected (the aggregator,
        REJECTED_RESULT, at finalize), joined trainers an accepted result names as faulty
        (FAULTY_UPDATE, at finalize), and a trainer's signed update proof shown bad by the
        task's dispute contract (BAD_PROOF, through slash_for_proof, only against the proofs root
        and challenge the round's accepted result posted, see `round_binding`).

        Rewards are paid from the escrow: a finalized round mints at most reward_per_round of
        the reward token against the escrowed budget, so the reward token's supply never passes
        what owners funded. `close_task` returns the unspent budget; the deposit comes back too,
        unless the owner abandons a task after opening rounds and before finishing them (then it
        goes to the treasury).

        Per round the chain sees open + seal + submit + one vote per committee member + finalize,
        whatever the number of trainers.
@custom:security Draws use the randomness source's value of a block committed before it
                 existed (default: its block hash). The proposer of that block can withhold it
                 (forfeiting its reward) to force a re-commit: one bit of bias per block it
                 proposes. Production deployments plug a beacon or a VRF (IRandomnessSource).
"""

from ethereum.ercs import IERC20
from . import IRandomnessSource
from . import IRegistry
from . import IReputation
from . import IRewards
from . import IRewardToken
from . import IStaking
from . import ITaskManager
from . import dispute_hook
from . import peers
from . import round_book
from . import round_machine
from . import settlement
from . import slashing
from . import task_book
from . import task_params
from . import votes

implements: ITaskManager

initializes: peers
initializes: task_params
initializes: task_book[task_params := task_params]
initializes: round_book
initializes: votes[round_book := round_book]
initializes: slashing[peers := peers, task_params := task_params]
initializes: settlement[
    peers := peers,
    round_book := round_book,
    slashing := slashing,
    task_book := task_book,
    votes := votes,
]
initializes: dispute_hook[
    peers := peers,
    round_book := round_book,
    slashing := slashing,
    task_book := task_book,
]
initializes: round_machine[
    dispute_hook := dispute_hook,
    peers := peers,
    round_book := round_book,
    slashing := slashing,
    task_book := task_book,
    votes := votes,
]
exports: (
    peers.staking,
    peers.reputation,
    peers.rewards,
    peers.reward_token,
    peers.utility_token,
    peers.randomness,
    peers.registry,
    task_params.governance,
    task_params.max_reward_per_round,
    task_params.slash_bps,
    task_params.task_deposit,
    task_params.min_window,
    task_params.max_window,
    task_params.min_committee,
    task_params.max_committee,
    task_params.set_max_reward_per_round,
    task_params.set_slash_bps,
    task_params.set_param,
    task_book.task_count,
    task_book.tasks,
    task_book.total_funded,
    task_book.task_dispute,
    task_book.dispute_task,
    task_book.set_task_reward,
    task_book.set_task_quorum,
    task_book.set_task_committee_size,
    task_book.set_task_privacy_budget,
    task_book.set_task_dispute,
    round_book.rounds,
    round_book.committee,
    round_book.committee_weight_of,
    round_book.faulty,
    round_book.reward_unpaid,
    round_machine.open_round,
    round_machine.seal,
    round_machine.submit_result,
    round_machine.reopen,
    votes.vote,
    votes.vote_of,
    settlement.validator_share_bps,
    settlement.finalize,
    slashing.is_punished,
    dispute_hook.slash_for_proof,
    dispute_hook.round_binding,
)

TASK_OWNER: constant(uint256) = 4
MIN_QUORUM_BPS: constant(uint256) = 6666
BPS: constant(uint256) = 10000

_deployer: immutable(address)


event TaskCreated:
    task_id: indexed(uint256)
    owner: indexed(address)
    spec_hash: bytes32
    reward_per_round: uint256
    rounds: uint256
    privacy_budget: uint256
    privacy_per_round: uint256
    committee_size: uint256
    quorum_bps: uint256
    submit_window: uint256
    vote_window: uint256
    escrow: uint256
    deposit: uint256

event TaskClosed:
    task_id: indexed(uint256)
    refund: uint256
    deposit_returned: uint256
    deposit_forfeited: uint256


@deploy
def __init__(
    staking_: IStaking,
    reputation_: IReputation,
    rewards_: IRewards,
    reward_token_: IRewardToken,
    utility_token_: IERC20,
    randomness_: IRandomnessSource,
    registry_: IRegistry,
    max_reward_per_round_: uint256,
    slash_bps_: uint256,
    validator_share_bps_: uint256,
    bounds: uint256[5],
):
    """
    @param bounds task deposit, min window, max window, min committee, max committee.
    """
    _deployer = msg.sender
    peers.__init__(staking_, reputation_, rewards_, reward_token_, utility_token_, randomness_, registry_)
    settlement.__init__(validator_share_bps_)
    task_params.__init__(max_reward_per_round_, slash_bps_, bounds, staticcall staking_.unbonding_delay())


@external
def wire(governance: address):
    """@notice One-time wiring by the deployer."""
    assert msg.sender == _deployer, "tasks: only the deployer wires"
    assert task_params.governance == empty(address), "tasks: already wired"
    assert governance != empty(address), "tasks: zero address"
    task_params.governance = governance


@external
@view
def joinable(task_id: uint256) -> bool:
    """@notice Whether members may join the task (it exists and is not closed)."""
    return task_book.tasks[task_id].owner != empty(address) and not task_book.tasks[task_id].closed


@external
@view
def leavable(task_id: uint256) -> bool:
    """@notice Whether members may leave the task: it is closed, or no round of it is under way."""
    task: task_book.Task = task_book.tasks[task_id]
    return task.closed or task.current_round == 0 or round_book.rounds[task_id][task.current_round].status == round_book.FINALIZED


# ---------------------------------------------------------------- tasks


@external
def create_task(
    spec_hash: bytes32,
    reward_per_round: uint256,
    rounds: uint256,
    privacy_budget: uint256,
    privacy_per_round: uint256,
    committee_size: uint256,
    quorum_bps: uint256,
    submit_window: uint256,
    vote_window: uint256,
) -> uint256:
    """
    @notice Create a task: the caller (a registered task owner) pays the deposit and the whole
            reward budget, reward_per_round * rounds, in utility tokens into escrow (approve
            this contract first). The privacy plan is fixed here, with the spec: the budget and
            the most one round spends (fixed point, 18 decimals); each round's bound derives from
            them (`open_round`), so the owner cannot declare a bound an honest result misses.
    @return The new task id (from 1).
    """
    assert staticcall peers.registry.role_of(msg.sender) == TASK_OWNER, "tasks: only a registered task owner creates tasks"
    assert spec_hash != empty(bytes32), "tasks: empty spec hash"
    assert rounds > 0, "tasks: zero rounds"
    assert quorum_bps >= MIN_QUORUM_BPS and quorum_bps <= BPS, "tasks: quorum out of range"
    task_params._check_task(reward_per_round, committee_size, submit_window, vote_window)
    budget: uint256 = reward_per_round * rounds
    deposit: uint256 = task_params.task_deposit
    if budget + deposit > 0:
        assert extcall peers.utility_token.transferFrom(msg.sender, self, budget + deposit, default_return_value=True), "tasks: transfer failed"
    task_id: uint256 = task_book._add(task_book.Task(
        owner=msg.sender,
        spec_hash=spec_hash,
        reward_per_round=reward_per_round,
        rounds=rounds,
        privacy_budget=privacy_budget,
        privacy_spent=0,
        committee_size=committee_size,
        quorum_bps=quorum_bps,
        submit_window=submit_window,
        vote_window=vote_window,
        finalized_rounds=0,
        current_round=0,
        escrow=budget,
        deposit=deposit,
        closed=False,
        privacy_per_round=privacy_per_round,
    ))
    log TaskCreated(
        task_id=task_id,
        owner=msg.sender,
        spec_hash=spec_hash,
        reward_per_round=reward_per_round,
        rounds=rounds,
        privacy_budget=privacy_budget,
        privacy_per_round=privacy_per_round,
        committee_size=committee_size,
        quorum_bps=quorum_bps,
        submit_window=submit_window,
        vote_window=vote_window,
        escrow=budget,
        deposit=deposit,
    )
    return task_id


@external
def close_task(task_id: uint256):
    """
    @notice The task owner: close the task when no result is pending (no round, the current one
            finalized, or one still sealing or rejected). The unspent reward budget goes back to
            the owner, and so does the deposit unless the owner abandons the task after opening
            a round and before all rounds are finalized: then the deposit goes to the treasury.
    """
    task: task_book.Task = task_book.tasks[task_id]
    assert task.owner != empty(address), "tasks: unknown task"
    assert msg.sender == task.owner, "tasks: only the task owner closes the task"
    assert not task.closed, "tasks: task is closed"
    status: uint256 = round_book.rounds[task_id][task.current_round].status
    assert status == round_book.NO_ROUND or status == round_book.FINALIZED or status == round_book.SEALING or status == round_book.REJECTED, "tasks: a result is pending"
    task_book.tasks[task_id].closed = True
    task_book.tasks[task_id].escrow = 0
    returned: uint256 = task.deposit
    forfeited: uint256 = 0
    if task.current_round != 0 and task.finalized_rounds < task.rounds:
        forfeited = task.deposit
        returned = 0
    if task.escrow + returned > 0:
        assert extcall peers.utility_token.transfer(task.owner, task.escrow + returned, default_return_value=True), "tasks: transfer failed"
    if forfeited > 0:
        assert extcall peers.utility_token.transfer(staticcall peers.staking.treasury(), forfeited, default_return_value=True), "tasks: transfer failed"
    log TaskClosed(task_id=task_id, refund=task.escrow, deposit_returned=returned, deposit_forfeited=forfeited)
