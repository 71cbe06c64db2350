"""fedledger.privacy: record-level DP-SGD and member-level distributed DP (layer 3; docs/privacy.md).

Layer note: the member-level pipeline runs SecAgg+ from `fedledger.secagg` (same layer); secagg
never imports privacy, so there is no cycle.
"""

from fedledger.privacy.accounting import MemberAccountant, calibrate_noise, dpsgd_event
from fedledger.privacy.block import privacy_block
from fedledger.privacy.discrete_gaussian import sample_discrete_gaussian
from fedledger.privacy.distributed import (
    AggregateResult,
    DdpPlan,
    DecodedSum,
    DistributedDP,
    InsufficientSurvivors,
    MemberEncoding,
    adaptive_clip_update,
    decode_sum,
    encode_members,
    plan_distributed_dp,
)
from fedledger.privacy.dpsgd import dpsgd_schedule, train_member_dpsgd
from fedledger.privacy.rotation import Rotation

__all__ = [
    "AggregateResult",
    "DdpPlan",
    "DecodedSum",
    "DistributedDP",
    "InsufficientSurvivors",
    "MemberAccountant",
    "MemberEncoding",
    "Rotation",
    "adaptive_clip_update",
    "calibrate_noise",
    "decode_sum",
    "dpsgd_event",
    "dpsgd_schedule",
    "encode_members",
    "plan_distributed_dp",
    "privacy_block",
    "sample_discrete_gaussian",
    "train_member_dpsgd",
]
