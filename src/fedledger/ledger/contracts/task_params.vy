# pragma version ~=0.4.3
"""
@title task_params
@notice The task manager's governed parameters: the governance address, the reward ceiling, the
        slash fraction, and the bounds every new task must respect (the owner's deposit, the
        window and committee-size bounds). Only governance changes them, and the window bound
        can never reach the staking unbonding delay: twice the maximum window stays below it, so
        a member cannot unbond out of a round's slash.
@custom:security The unbonding delay is immutable in `Staking`; it is read once at deployment.
"""

BPS: constant(uint256) = 10000
MAX_COMMITTEE: constant(uint256) = 32

# ParameterSet.param codes
P_MAX_REWARD: constant(uint256) = 1
P_TASK_REWARD: constant(uint256) = 2
P_SLASH_BPS: constant(uint256) = 4
P_TASK_QUORUM: constant(uint256) = 5
P_TASK_COMMITTEE: constant(uint256) = 6
P_TASK_PRIVACY_BUDGET: constant(uint256) = 7
P_TASK_DEPOSIT: constant(uint256) = 10
P_MIN_WINDOW: constant(uint256) = 11
P_MAX_WINDOW: constant(uint256) = 12
P_MIN_COMMITTEE: constant(uint256) = 13
P_MAX_COMMITTEE: constant(uint256) = 14

governance: public(address)
max_reward_per_round: public(uint256)
slash_bps: public(uint256)
task_deposit: public(uint256)
min_window: public(uint256)
max_window: public(uint256)
min_committee: public(uint256)
max_committee: public(uint256)
_unbonding_delay: uint256


event ParameterSet:
    param: indexed(uint256)
    task_id: indexed(uint256)
    value: uint256


@deploy
def __init__(max_reward_per_round_: uint256, slash_bps_: uint256, bounds: uint256[5], unbonding_delay: uint256):
    """@param bounds task deposit, min window, max window, min committee, max committee."""
    assert slash_bps_ <= BPS, "task_params: basis points above 10000"
    self.max_reward_per_round = max_reward_per_round_
    self.slash_bps = slash_bps_
    self._unbonding_delay = unbonding_delay
    self.task_deposit = bounds[0]
    assert bounds[1] >= 1 and bounds[1] <= bounds[2], "task_params: window bounds out of range"
    assert 2 * bounds[2] < unbonding_delay, "task_params: windows must stay below the unbonding delay"
    self.min_window = bounds[1]
    self.max_window = bounds[2]
    assert bounds[3] >= 1 and bounds[3] <= bounds[4] and bounds[4] <= MAX_COMMITTEE, "task_params: committee bounds out of range"
    self.min_committee = bounds[3]
    self.max_committee = bounds[4]


@internal
def _only_governance():
    assert msg.sender == self.governance, "task_params: only governance"


@internal
@view
def _check_task(reward_per_round: uint256, committee_size: uint256, submit_window: uint256, vote_window: uint256):
    """A new task's reward, committee size and windows lie within the bounds."""
    assert reward_per_round <= self.max_reward_per_round, "task_params: reward per round above the maximum"
    assert committee_size >= self.min_committee and committee_size <= self.max_committee, "task_params: committee size out of range"
    assert submit_window >= self.min_window and vote_window >= self.min_window, "task_params: window below the minimum"
    assert submit_window <= self.max_window and vote_window <= self.max_window, "task_params: window above the maximum"
    assert submit_window + vote_window < self._unbonding_delay, "task_params: windows must stay below the unbonding delay"


@external
def set_max_reward_per_round(new_value: uint256):
    self._only_governance()
    self.max_reward_per_round = new_value
    log ParameterSet(param=P_MAX_REWARD, task_id=0, value=new_value)


@external
def set_slash_bps(new_value: uint256):
    self._only_governance()
    assert new_value <= BPS, "task_params: basis points above 10000"
    self.slash_bps = new_value
    log ParameterSet(param=P_SLASH_BPS, task_id=0, value=new_value)


@external
def set_param(param: uint256, new_value: uint256):
    """
    @notice Governance: the bounds every new task must respect. 10 the owner's deposit, 11 and
            12 the minimum and maximum window (twice the maximum stays below the unbonding
            delay), 13 and 14 the minimum and maximum committee size.
    """
    self._only_governance()
    if param == P_TASK_DEPOSIT:
        self.task_deposit = new_value
    elif param == P_MIN_WINDOW:
        assert new_value >= 1 and new_value <= self.max_window, "task_params: window bounds out of range"
        self.min_window = new_value
    elif param == P_MAX_WINDOW:
        assert new_value >= self.min_window, "task_params: window bounds out of range"
        assert 2 * new_value < self._unbonding_delay, "task_params: windows must stay below the unbonding delay"
        self.max_window = new_value
    elif param == P_MIN_COMMITTEE:
        assert new_value >= 1 and new_value <= self.max_committee, "task_params: committee bounds out of range"
        self.min_committee = new_value
    elif param == P_MAX_COMMITTEE:
        assert new_value >= self.min_committee and new_value <= MAX_COMMITTEE, "task_params: committee bounds out of range"
        self.max_committee = new_value
    else:
        raise "task_params: unknown parameter"
    log ParameterSet(param=param, task_id=0, value=new_value)
