"""fedledger.ledger (layer 4): Vyper contracts, compile and deploy, a typed client, chain backends.

`Ledger.connect(chain, run_dir)` is the entry point; see docs/ledger.md.
"""

from fedledger.ledger.client import Ledger, open_ledger
from fedledger.ledger.deploy import Deployment, DeployParams
from fedledger.ledger.types import (
    GovAction,
    ProofBinding,
    ReopenReason,
    Role,
    RoundInfo,
    RoundRecord,
    RoundResult,
    RoundStatus,
    Slash,
    SlashReason,
    TaskInfo,
    TaskParam,
    TaskSpec,
    from_fixed,
    to_fixed,
)

__all__ = [
    "DeployParams",
    "Deployment",
    "GovAction",
    "Ledger",
    "ProofBinding",
    "ReopenReason",
    "Role",
    "RoundInfo",
    "RoundRecord",
    "RoundResult",
    "RoundStatus",
    "Slash",
    "SlashReason",
    "TaskInfo",
    "TaskParam",
    "TaskSpec",
    "from_fixed",
    "open_ledger",
    "to_fixed",
]
