# pragma version ~=0.4.3
"""
@title UtilityToken
@notice The fedledger utility token (FLU): what members stake and vote with, and what the
        treasury holds. The whole supply is minted once, at deployment, to `holder`; nobody can
        mint afterwards.
"""

from . import erc20

initializes: erc20
exports: erc20.__interface__


@deploy
def __init__(supply: uint256, holder: address):
    erc20.__init__("fedledger utility", "FLU")
    erc20._mint(holder, supply)
