# pragma version ~=0.4.3
"""
@title peers
@notice The contracts the task manager calls, fixed at deployment: staking, reputation,
        rewards, the two tokens, the randomness source and the registry. Each is reached
        through its `.vyi` interface; the addresses are immutable.
"""

from ethereum.ercs import IERC20
from . import IRandomnessSource
from . import IRegistry
from . import IReputation
from . import IRewards
from . import IRewardToken
from . import IStaking

staking: public(immutable(IStaking))
reputation: public(immutable(IReputation))
rewards: public(immutable(IRewards))
reward_token: public(immutable(IRewardToken))
utility_token: public(immutable(IERC20))
randomness: public(immutable(IRandomnessSource))
registry: public(immutable(IRegistry))


@deploy
def __init__(
    staking_: IStaking,
    reputation_: IReputation,
    rewards_: IRewards,
    reward_token_: IRewardToken,
    utility_token_: IERC20,
    randomness_: IRandomnessSource,
    registry_: IRegistry,
):
    staking = staking_
    reputation = reputation_
    rewards = rewards_
    reward_token = reward_token_
    utility_token = utility_token_
    randomness = randomness_
    registry = registry_
