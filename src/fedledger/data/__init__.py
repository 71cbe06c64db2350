"""fedledger.data: real data sets, partitioners, and federated splits (layer 1).

fd = load_federated("digits", "dirichlet:0.5", 10, seed=0)
fd.members[0].train.X      # float32 [n, 64]
fd.pooled_train()          # centralized baseline data
fd.test                    # global test set, for reporting only
"""

from fedledger.data.federate import load_federated
from fedledger.data.partition import (
    IID,
    PARTITION_FORMS,
    Dirichlet,
    Natural,
    Partition,
    Partitioner,
    Shards,
    label_skew,
    parse_partition,
    stratified_pick,
)
from fedledger.data.registry import DATASETS, DatasetInfo, get_dataset, load_raw
from fedledger.data.sources import RawData
from fedledger.data.types import FederatedData, Member, Split, Standardization

__all__ = [
    "DATASETS",
    "IID",
    "PARTITION_FORMS",
    "DatasetInfo",
    "Dirichlet",
    "FederatedData",
    "Member",
    "Natural",
    "Partition",
    "Partitioner",
    "RawData",
    "Shards",
    "Split",
    "Standardization",
    "get_dataset",
    "label_skew",
    "load_federated",
    "load_raw",
    "parse_partition",
    "stratified_pick",
]
