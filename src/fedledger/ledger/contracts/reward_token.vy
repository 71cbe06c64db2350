# pragma version ~=0.4.3
"""
@title RewardToken
@notice The fedledger reward token (FLR). Minted only by the task manager, only when a round
        is finalized: its supply is the sum of the rewards of finalized rounds.
@custom:security The deployer names the minter once (`set_minter`) and has no power after;
                 clients check `minter()` equals the task manager before trusting a deployment.
"""

from . import erc20

initializes: erc20
exports: erc20.__interface__

minter: public(address)
_deployer: immutable(address)

event MinterSet:
    minter: indexed(address)


@deploy
def __init__():
    erc20.__init__("fedledger reward", "FLR")
    _deployer = msg.sender


@external
def set_minter(minter: address):
    """@notice One-time wiring: make the task manager the only minter."""
    assert msg.sender == _deployer, "reward_token: only the deployer wires the minter"
    assert self.minter == empty(address), "reward_token: minter already set"
    assert minter != empty(address), "reward_token: minter is the zero address"
    self.minter = minter
    log MinterSet(minter=minter)


@external
def mint(receiver: address, amount: uint256):
    """@notice Create `amount` reward tokens for `receiver`. Only the task manager may."""
    assert msg.sender == self.minter, "reward_token: only the task manager mints"
    erc20._mint(receiver, amount)
