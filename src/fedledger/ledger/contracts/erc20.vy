# pragma version ~=0.4.3
"""
@title erc20
@notice A minimal ERC-20 module (no permit, no hooks) shared by the utility and the reward token.
        Deployables initialise it and export `erc20.__interface__`; minting and burning are
        internal, so each token decides who may create supply.
@custom:security Transfers to the zero address revert; an allowance of max(uint256) is infinite.
"""

from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed

implements: IERC20
implements: IERC20Detailed

name: public(String[32])
symbol: public(String[8])
decimals: public(constant(uint8)) = 18
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
totalSupply: public(uint256)


@deploy
def __init__(name_: String[32], symbol_: String[8]):
    self.name = name_
    self.symbol = symbol_


@external
def transfer(receiver: address, amount: uint256) -> bool:
    """@notice Move `amount` of the caller's tokens to `receiver`."""
    self._transfer(msg.sender, receiver, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    """@notice Let `spender` move up to `amount` of the caller's tokens."""
    self.allowance[msg.sender][spender] = amount
    log IERC20.Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def transferFrom(owner: address, receiver: address, amount: uint256) -> bool:
    """@notice Move `amount` of `owner`'s tokens to `receiver`, spending the caller's allowance."""
    allowed: uint256 = self.allowance[owner][msg.sender]
    if allowed != max_value(uint256):
        assert allowed >= amount, "erc20: insufficient allowance"
        self.allowance[owner][msg.sender] = allowed - amount
    self._transfer(owner, receiver, amount)
    return True


@internal
def _transfer(owner: address, receiver: address, amount: uint256):
    assert receiver != empty(address), "erc20: transfer to the zero address"
    balance: uint256 = self.balanceOf[owner]
    assert balance >= amount, "erc20: insufficient balance"
    self.balanceOf[owner] = balance - amount
    self.balanceOf[receiver] += amount
    log IERC20.Transfer(sender=owner, receiver=receiver, value=amount)


@internal
def _mint(receiver: address, amount: uint256):
    assert receiver != empty(address), "erc20: mint to the zero address"
    self.totalSupply += amount
    self.balanceOf[receiver] += amount
    log IERC20.Transfer(sender=empty(address), receiver=receiver, value=amount)
