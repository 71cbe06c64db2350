"""Compile the Vyper contracts at first use and cache the result by source hash.

Nothing compiled is committed: the cache key is the SHA-256 of every contract source, the
compiler version and the EVM version, so editing a contract (or upgrading vyper) recompiles it.
The cache lives in `$FEDLEDGER_CACHE/vyper/` (default `~/.cache/fedledger/vyper/`), one JSON file
per key, written atomically so parallel test workers can share it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fedledger.ledger.errors import DeploymentError

CONTRACTS_DIR = Path(__file__).parent / "contracts"
EVM_VERSION = "cancun"  # widely supported by anvil, py-evm and public networks
#: the deployables, in deployment order; the other .vy files are modules they import
CONTRACTS = (
    "utility_token",
    "reward_token",
    "staking",
    "reputation",
    "rewards",
    "blockhash_randomness",
    "registry",
    "task_manager",
    "governance",
    "scores",
)
#: EIP-170: the largest runtime bytecode a chain accepts
MAX_CODE_SIZE = 24_576


@dataclass(frozen=True)
class Artifact:
    """A compiled contract: its ABI, creation bytecode and runtime bytecode."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    runtime: bytes

    @property
    def abi_hash(self) -> str:
        """SHA-256 of the canonical ABI JSON: what a deployment file pins."""
        return hashlib.sha256(json.dumps(self.abi, sort_keys=True).encode()).hexdigest()

    @property
    def code_size(self) -> int:
        return len(self.runtime)


def cache_dir() -> Path:
    root = os.environ.get("FEDLEDGER_CACHE")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "fedledger"
    return base / "vyper"


def source_digest() -> str:
    """The cache key: every .vy/.vyi source, the compiler version and the EVM version."""
    import vyper

    h = hashlib.sha256(f"vyper={vyper.__version__};evm={EVM_VERSION}".encode())
    for path in sorted(CONTRACTS_DIR.glob("*.vy*")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _compile_one(name: str) -> dict[str, Any]:
    from vyper.compiler import compile_from_file_input
    from vyper.compiler.input_bundle import FilesystemInputBundle
    from vyper.compiler.settings import OptimizationLevel, Settings

    bundle = FilesystemInputBundle([CONTRACTS_DIR])
    file_input = bundle.load_file(CONTRACTS_DIR / f"{name}.vy")
    settings = Settings(evm_version=EVM_VERSION, optimize=OptimizationLevel.GAS)
    out = compile_from_file_input(
        file_input, input_bundle=bundle, settings=settings, output_formats=["abi", "bytecode", "bytecode_runtime"]
    )
    return {"abi": out["abi"], "bytecode": out["bytecode"], "runtime": out["bytecode_runtime"]}


@cache
def compile_all() -> dict[str, Artifact]:
    """Every deployable, compiled once per source digest (and once per process)."""
    digest = source_digest()
    path = cache_dir() / f"{digest}.json"
    try:
        raw = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        try:
            raw = {name: _compile_one(name) for name in CONTRACTS}
        except Exception as e:  # the compiler's own errors are many and unrelated types
            raise DeploymentError(f"cannot compile the ledger contracts: {e}") from e
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(raw, f)
        os.replace(tmp, path)
    return {
        name: Artifact(
            name=name,
            abi=entry["abi"],
            bytecode=bytes.fromhex(entry["bytecode"].removeprefix("0x")),
            runtime=bytes.fromhex(entry["runtime"].removeprefix("0x")),
        )
        for name, entry in raw.items()
    }


def compile_source(source: str, name: str = "contract") -> Artifact:
    """A Vyper contract outside the deployment (a task's dispute contract, a Groth16 verifier),
    compiled like the others and cached by the SHA-256 of its source, compiler and EVM version."""
    import vyper

    digest = hashlib.sha256(f"vyper={vyper.__version__};evm={EVM_VERSION}\0".encode() + source.encode()).hexdigest()
    path = cache_dir() / f"extra-{digest}.json"
    try:
        raw = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        from vyper.compiler.settings import OptimizationLevel, Settings

        settings = Settings(evm_version=EVM_VERSION, optimize=OptimizationLevel.GAS)
        try:
            out = vyper.compile_code(source, output_formats=["abi", "bytecode", "bytecode_runtime"], settings=settings)
        except Exception as e:  # the compiler's own errors are many and unrelated types
            raise DeploymentError(f"cannot compile {name}: {e}") from e
        raw = {"abi": out["abi"], "bytecode": out["bytecode"], "runtime": out["bytecode_runtime"]}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(raw, f)
        os.replace(tmp, path)
    return Artifact(
        name=name,
        abi=raw["abi"],
        bytecode=bytes.fromhex(raw["bytecode"].removeprefix("0x")),
        runtime=bytes.fromhex(raw["runtime"].removeprefix("0x")),
    )
