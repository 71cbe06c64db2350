"""Deploy the contracts, wire them, and find them again through a deployment file.

The deployment file (`<run>/chain/deployment.json`) holds the chain id, every address, the
SHA-256 of every ABI, the digest of the sources and the deployment block. A restarted run
loads it, checks that the chain is the same, that code sits at every address and that the
ABIs still match the sources, and carries on; a mismatch is a clear `DeploymentError`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3 import Web3
from web3.contract import Contract

from fedledger.ledger.compiler import CONTRACTS, compile_all, source_digest
from fedledger.ledger.errors import DeploymentError
from fedledger.ledger.tx import TxSender

TOKEN = 10**18
DEPLOYMENT_FILE = "deployment.json"


@dataclass(frozen=True)
class DeployParams:
    """Constructor parameters. Defaults suit a local federation; governance changes most later."""

    token_supply: int = 1_000_000_000 * TOKEN
    unbonding_delay: int = 2 * 86400
    #: minimum stake of trainer, aggregator, validator, task owner
    min_stakes: tuple[int, int, int, int] = (10 * TOKEN, 100 * TOKEN, 100 * TOKEN, 0)
    max_reward_per_round: int = 10_000 * TOKEN
    slash_bps: int = 1_000
    validator_share_bps: int = 1_000
    voting_period: int = 3 * 86400
    timelock: int = 2 * 86400
    gov_quorum_bps: int = 2_000
    proposal_threshold: int = 100 * TOKEN
    #: what a task owner bonds per task (utility tokens, returned at close unless it abandons the task)
    task_deposit: int = 100 * TOKEN
    #: bounds of a task's submit and vote windows (seconds); twice the maximum stays below `unbonding_delay`
    min_window: int = 60
    max_window: int = 6 * 3600
    #: bounds of a task's committee size
    min_committee: int = 3
    max_committee: int = 32


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    addresses: dict[str, str]
    abi_hashes: dict[str, str]
    source_digest: str
    block_number: int
    deployer: str
    params: dict[str, object] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Identifies this deployment (the event index is keyed by it)."""
        return f"{self.chain_id}:{self.addresses.get('task_manager', '')}:{self.block_number}"

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f, indent=2, sort_keys=True)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Deployment:
        try:
            raw = json.loads(path.read_text())
            return cls(**raw)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, TypeError) as e:
            raise DeploymentError(f"unreadable deployment file {path}: {e}") from None


def contracts_for(w3: Web3, deployment: Deployment) -> dict[str, Contract]:
    arts = compile_all()
    return {name: _at(w3, deployment.addresses[name], arts[name].abi) for name in CONTRACTS}


def _at(w3: Web3, address: str, abi: list[dict[str, object]]) -> Contract:
    return w3.eth.contract(address=to_checksum_address(address), abi=abi)  # type: ignore[arg-type]


def deploy(w3: Web3, sender: TxSender, deployer: LocalAccount, params: DeployParams = DeployParams()) -> Deployment:
    """Deploy and wire all contracts (16 transactions)."""
    arts = compile_all()
    start_block = int(w3.eth.block_number) + 1
    addr: dict[str, str] = {}

    def create(name: str, *args: object) -> None:
        factory = w3.eth.contract(abi=arts[name].abi, bytecode=arts[name].bytecode)
        receipt = sender.transact(deployer, f"deploy:{name}", factory.constructor(*args))
        addr[name] = receipt["contractAddress"]

    create("utility_token", params.token_supply, deployer.address)
    create("reward_token")
    create("staking", addr["utility_token"], params.unbonding_delay, list(params.min_stakes))
    create("reputation")
    create("rewards", addr["reward_token"])
    create("blockhash_randomness")
    create("registry", addr["staking"], addr["reputation"])
    create(
        "task_manager",
        addr["staking"],
        addr["reputation"],
        addr["rewards"],
        addr["reward_token"],
        addr["utility_token"],
        addr["blockhash_randomness"],
        addr["registry"],
        params.max_reward_per_round,
        params.slash_bps,
        params.validator_share_bps,
        [params.task_deposit, params.min_window, params.max_window, params.min_committee, params.max_committee],
    )
    create(
        "governance",
        addr["staking"],
        addr["task_manager"],
        addr["utility_token"],
        params.voting_period,
        params.timelock,
        params.gov_quorum_bps,
        params.proposal_threshold,
    )
    create("scores", addr["task_manager"])  # the committee's score commit-reveal (reads the task manager)
    c = {name: _at(w3, a, arts[name].abi) for name, a in addr.items()}
    sender.transact(deployer, "wire:reward_token", c["reward_token"].functions.set_minter(addr["task_manager"]))
    wire_staking = c["staking"].functions.wire(addr["registry"], addr["task_manager"], addr["governance"])
    sender.transact(deployer, "wire:staking", wire_staking)
    sender.transact(
        deployer, "wire:reputation", c["reputation"].functions.wire(addr["task_manager"], addr["registry"])
    )
    sender.transact(deployer, "wire:registry", c["registry"].functions.wire(addr["task_manager"]))
    sender.transact(deployer, "wire:rewards", c["rewards"].functions.wire(addr["task_manager"]))
    sender.transact(deployer, "wire:task_manager", c["task_manager"].functions.wire(addr["governance"]))
    return Deployment(
        chain_id=int(w3.eth.chain_id),
        addresses=addr,
        abi_hashes={name: arts[name].abi_hash for name in CONTRACTS},
        source_digest=source_digest(),
        block_number=start_block,
        deployer=deployer.address,
        params={k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()},
    )


def check_deployment(w3: Web3, deployment: Deployment) -> None:
    """Raise `DeploymentError` unless `deployment` is live on this chain and matches the sources."""
    chain_id = int(w3.eth.chain_id)
    if deployment.chain_id != chain_id:
        raise DeploymentError(f"deployment is for chain {deployment.chain_id}, the node is chain {chain_id}")
    arts = compile_all()
    for name in CONTRACTS:
        address = deployment.addresses.get(name)
        if not address or not w3.eth.get_code(address):  # type: ignore[arg-type]
            raise DeploymentError(f"no {name} contract at {address} on this chain (state lost?); redeploy")
        if deployment.abi_hashes.get(name) != arts[name].abi_hash:
            raise DeploymentError(f"{name} was deployed from other sources than these; redeploy with --force")
    c = contracts_for(w3, deployment)
    if c["reward_token"].functions.minter().call() != deployment.addresses["task_manager"]:
        raise DeploymentError("the reward token's minter is not the task manager: deployment not wired")
