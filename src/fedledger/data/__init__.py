"""fedledger.data: real data sets, partitioners, and federated splits (layer 1).

`load_federated("digits", "dirichlet:0.5", 10, seed=0)` returns a `FederatedData`: per member a
train and a holdout `Split` (float32 features, int64 labels), a global test `Split` for reporting,
and `pooled_train()` for the centralized baseline. See docs/data.md.
"""

from fedledger.data.federate import federate, load_data, load_federated
from fedledger.data.files import read_table, table_to_raw
from fedledger.data.members import from_members
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
    "federate",
    "from_members",
    "get_dataset",
    "label_skew",
    "load_data",
    "load_federated",
    "load_raw",
    "parse_partition",
    "read_table",
    "stratified_pick",
    "table_to_raw",
]
