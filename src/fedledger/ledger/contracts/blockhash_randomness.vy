# pragma version ~=0.4.3
"""
@title BlockhashRandomness
@notice The default randomness source: the hash of the committed block, readable for the 256
        blocks after it (the EVM's BLOCKHASH window); zero before the block is mined and after
        the window lapsed.
@custom:security Residual bias: the proposer of the committed block knows its hash before it
                 publishes and can withhold the block (losing its reward) to make the round
                 re-commit to a later block; a proposer can so choose between two outcomes per
                 block it proposes, at the cost of the block reward each time. Nobody else learns
                 anything before the block exists: a contract that opens a round and reverts
                 sees only the commitment. Deployments that need more plug a beacon or a VRF.
"""

from . import IRandomnessSource

implements: IRandomnessSource

WINDOW: constant(uint256) = 256


@view
@external
def random_at(block_number: uint256) -> bytes32:
    """@notice blockhash(block_number) while it is readable, zero otherwise."""
    if block_number >= block.number or block.number - block_number > WINDOW:
        return empty(bytes32)
    return blockhash(block_number)
