# pragma version ~=0.4.3
"""
@title Rewards
@notice Pays the contributors of finalized rounds. On finalization the task manager mints the
        round's contributor pool to this contract and posts the round's reward root: a
        `fedledger.core.merkle` root over leaves abi_encode(task_id, round_id, account, amount).
        Anyone may claim for an account with an inclusion proof; the tokens go to the account.
@custom:security Claims are capped by the pool minted for the round, so even a wrong root that
                 the committee accepted cannot pay out more than the round's reward.
"""

from ethereum.ercs import IERC20
from . import merkle

reward_token: public(immutable(IERC20))
_deployer: immutable(address)
task_manager: public(address)


struct Pool:
    root: bytes32
    amount: uint256
    claimed: uint256


pools: public(HashMap[uint256, HashMap[uint256, Pool]])
_claimed: HashMap[uint256, HashMap[uint256, HashMap[address, bool]]]

event RewardRootPosted:
    task_id: indexed(uint256)
    round_id: indexed(uint256)
    root: bytes32
    amount: uint256

event RewardClaimed:
    task_id: indexed(uint256)
    round_id: indexed(uint256)
    account: indexed(address)
    amount: uint256


@deploy
def __init__(reward_token_: IERC20):
    reward_token = reward_token_
    _deployer = msg.sender


@external
def wire(task_manager: address):
    """@notice One-time wiring by the deployer."""
    assert msg.sender == _deployer, "rewards: only the deployer wires"
    assert self.task_manager == empty(address), "rewards: already wired"
    assert task_manager != empty(address), "rewards: zero address"
    self.task_manager = task_manager


@external
def post_root(task_id: uint256, round_id: uint256, root: bytes32, amount: uint256):
    """@notice Task manager only: the reward root and the pool (already minted here) of a round."""
    assert msg.sender == self.task_manager, "rewards: only the task manager posts roots"
    assert self.pools[task_id][round_id].root == empty(bytes32), "rewards: root already posted"
    assert root != empty(bytes32), "rewards: empty root"
    self.pools[task_id][round_id] = Pool(root=root, amount=amount, claimed=0)
    log RewardRootPosted(task_id=task_id, round_id=round_id, root=root, amount=amount)


@external
def claim(task_id: uint256, round_id: uint256, account: address, amount: uint256, proof: DynArray[bytes32, merkle.MAX_DEPTH]):
    """@notice Pay `amount` to `account` if (task_id, round_id, account, amount) is in the round's root."""
    pool: Pool = self.pools[task_id][round_id]
    assert pool.root != empty(bytes32), "rewards: no reward root for this round"
    assert not self._claimed[task_id][round_id][account], "rewards: already claimed"
    leaf: bytes32 = merkle._leaf128(abi_encode(task_id, round_id, account, amount))
    assert merkle._verify(pool.root, leaf, proof), "rewards: invalid Merkle proof"
    assert pool.claimed + amount <= pool.amount, "rewards: round pool exhausted"
    self._claimed[task_id][round_id][account] = True
    self.pools[task_id][round_id].claimed = pool.claimed + amount
    assert extcall reward_token.transfer(account, amount, default_return_value=True), "rewards: transfer failed"
    log RewardClaimed(task_id=task_id, round_id=round_id, account=account, amount=amount)


@external
@view
def is_claimed(task_id: uint256, round_id: uint256, account: address) -> bool:
    return self._claimed[task_id][round_id][account]
