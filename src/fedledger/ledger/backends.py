"""Chain backends behind one interface.

- `AnvilBackend` (`auto`): a managed anvil for a run directory (state in
  `<run>/chain/anvil-state.json`), or an attachment to the one another fedledger process is
  already running for that directory (found through `<run>/chain/node.json` and a lock).
- `MemoryBackend` (`memory`): py-evm in this process through eth-tester. No Node.js needed,
  nothing persisted, about 30 transactions a second.
- `RpcBackend` (an `http(s)://` URL): any JSON-RPC node; the signer comes from `keys.load_signer`.

Dev chains (anvil, memory) also give deterministic, funded dev accounts, time travel and
snapshots, which tests, benchmarks and simulations use; an RPC chain refuses those.
"""

from __future__ import annotations

import fcntl
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from fedledger.ledger.anvil import ANVIL_DEV_KEY, AnvilNode, rpc
from fedledger.ledger.errors import ChainUnavailable, LedgerError
from fedledger.ledger.keys import load_signer

DEV_FUNDING = 10**21  # 1,000 ether per dev account


def dev_key(i: int) -> bytes:
    """The i-th deterministic dev key (dev chains only; never use on a real chain)."""
    return keccak(b"fedledger/v1/dev-account/" + str(i).encode())


class Backend(ABC):
    """A connected chain with a signer (`funder`) that deploys and pays for dev accounts."""

    kind: str
    w3: Web3
    funder: LocalAccount
    chain_dir: Path | None = None
    dev: bool = True

    @property
    def chain_id(self) -> int:
        cid = getattr(self, "_chain_id", None)
        if cid is None:
            cid = self._chain_id = int(self.w3.eth.chain_id)
        return cid

    def describe(self) -> str:
        return self.kind

    def dev_account(self, i: int, fund: bool = True) -> LocalAccount:
        """The i-th deterministic dev account, funded with ether for gas."""
        self._require_dev("dev accounts")
        acct: LocalAccount = Account.from_key(dev_key(i))
        if fund and self.w3.eth.get_balance(acct.address) < DEV_FUNDING // 2:
            self.fund(acct.address, DEV_FUNDING)
        return acct

    def _require_dev(self, what: str) -> None:
        if not self.dev:
            raise LedgerError(f"{what} exist only on dev chains (auto, memory), not on {self.describe()}")

    @abstractmethod
    def fund(self, address: str, wei: int) -> None: ...

    @abstractmethod
    def advance_time(self, seconds: int) -> None:
        """Move the chain clock forward and mine a block (dev chains)."""

    def mine(self) -> None:
        """Mine one empty block (dev chains): a round's committed block must exist before it is sealed."""
        self._require_dev("mining on demand")

    @abstractmethod
    def snapshot(self) -> Any: ...

    @abstractmethod
    def revert(self, snap: Any) -> None: ...

    def persist(self) -> None:  # noqa: B027 - a no-op unless the node keeps state on disk
        """A durability point: whatever is mined survives a crash of this process."""

    def close(self) -> None:  # noqa: B027 - nothing to release for most backends
        """Release the node (stop a managed one)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AnvilBackend(Backend):
    kind = "anvil"
    STATE_FILE = "anvil-state.json"
    NODE_FILE = "node.json"
    LOCK_FILE = "anvil.lock"

    def __init__(self, run_dir: Path | str | None = None, *, startup_timeout: float = 30.0) -> None:
        self.chain_dir = Path(run_dir) / "chain" if run_dir is not None else None
        self.node: AnvilNode | None = None
        self._lock_fd: int | None = None
        url = self._attach_or_start(startup_timeout)
        self.url = url
        self.w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
        self.funder = Account.from_key(ANVIL_DEV_KEY)

    @classmethod
    def at(cls, url: str, run_dir: Path | str | None = None) -> AnvilBackend:
        """An anvil someone else started (`fedledger chain up`, a developer's own): a dev chain all the same. The
        run's deployment record goes to `run_dir`/chain, as for a managed one."""
        backend = cls.__new__(cls)
        backend.chain_dir = Path(run_dir) / "chain" if run_dir is not None else None
        backend.node, backend._lock_fd, backend.url = None, None, url
        backend.w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
        backend.funder = Account.from_key(ANVIL_DEV_KEY)
        return backend

    def _attach_or_start(self, startup_timeout: float) -> str:
        if self.chain_dir is None:
            self.node = AnvilNode(None, startup_timeout=startup_timeout).start()
            return self.node.url
        self.chain_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.chain_dir / self.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return self._attach()
        self._lock_fd = fd
        try:
            self.node = AnvilNode(
                self.chain_dir / self.STATE_FILE,
                startup_timeout=startup_timeout,
                log_path=self.chain_dir / "anvil.log",
                info_path=self.chain_dir / self.NODE_FILE,
            ).start()
        except BaseException:
            self._release_lock()
            raise
        return self.node.url

    def _attach(self) -> str:
        assert self.chain_dir is not None
        try:
            url = str(json.loads((self.chain_dir / self.NODE_FILE).read_text())["url"])
            rpc(url, "eth_chainId", timeout=2.0)
        except (OSError, ValueError, KeyError) as e:
            raise ChainUnavailable(
                f"another process holds {self.chain_dir} but its node does not answer: {e}"
            ) from None
        return url

    @property
    def owner(self) -> bool:
        """True when this process started (and will stop) the node."""
        return self.node is not None

    def describe(self) -> str:
        # a node this process started stops when it exits: name its saved state, not a URL that will be dead
        if self.owner:
            return f"managed anvil on {self.chain_dir}" if self.chain_dir is not None else "temporary anvil"
        return f"anvil at {self.url} (attached)"

    def fund(self, address: str, wei: int) -> None:
        self.w3.provider.make_request("anvil_setBalance", [address, hex(wei)])  # type: ignore[arg-type]

    def advance_time(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [int(seconds)])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def mine(self) -> None:
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def snapshot(self) -> Any:
        return self.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]

    def revert(self, snap: Any) -> None:
        ok = self.w3.provider.make_request("evm_revert", [snap])["result"]  # type: ignore[arg-type]
        if not ok:
            raise LedgerError(f"anvil could not revert to snapshot {snap}")

    def persist(self) -> None:
        if self.node is not None:
            self.node.dump_state()

    def close(self) -> None:
        if self.node is not None:
            self.node.stop()
            self.node = None
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


class MemoryBackend(Backend):
    kind = "memory"

    def __init__(self) -> None:
        from eth_tester import EthereumTester, PyEVMBackend
        from web3.providers.eth_tester import EthereumTesterProvider

        self.tester = EthereumTester(PyEVMBackend())
        self.w3 = Web3(EthereumTesterProvider(self.tester))
        self.funder = Account.from_key((1).to_bytes(32, "big"))  # eth-tester's first account

    def fund(self, address: str, wei: int) -> None:
        # from eth-tester's last unlocked account, which no ledger session signs with
        tx = {"from": self.w3.eth.accounts[-1], "to": to_checksum_address(address), "value": wei}
        h = self.w3.eth.send_transaction(tx)  # type: ignore[arg-type]
        self.w3.eth.wait_for_transaction_receipt(h)

    def advance_time(self, seconds: int) -> None:
        latest = int(self.w3.eth.get_block("latest")["timestamp"])
        self.tester.time_travel(latest + int(seconds))

    def mine(self) -> None:
        self.tester.mine_blocks(1)

    def snapshot(self) -> Any:
        return self.tester.take_snapshot()

    def revert(self, snap: Any) -> None:
        self.tester.revert_to_snapshot(snap)


class RpcBackend(Backend):
    kind = "rpc"
    dev = False

    def __init__(self, url: str, *, keystore: Path | str | None = None, run_dir: Path | str | None = None) -> None:
        self.url = url
        self.chain_dir = Path(run_dir) / "chain" if run_dir is not None else None
        self.w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
        try:
            self.w3.eth.chain_id  # noqa: B018 - a probe
        except Exception as e:  # requests' and web3's connection errors differ per version
            raise ChainUnavailable(f"cannot reach the JSON-RPC node at {url} ({unreachable_reason(e)})") from None
        self._keystore = keystore
        self._signer: LocalAccount | None = None

    @property  # type: ignore[override]
    def funder(self) -> LocalAccount:  # type: ignore[override]
        """The signer, loaded at first use so read-only commands need no key."""
        if self._signer is None:
            self._signer = load_signer(self._keystore)
        return self._signer

    def describe(self) -> str:
        return f"JSON-RPC node at {self.url}"

    def is_anvil(self) -> bool:
        try:
            return str(self.w3.client_version).lower().startswith("anvil")
        except Exception:  # a node that does not answer web3_clientVersion is no anvil
            return False

    def fund(self, address: str, wei: int) -> None:
        self._require_dev("funding")

    def advance_time(self, seconds: int) -> None:
        self._require_dev("time travel")

    def snapshot(self) -> Any:
        self._require_dev("snapshots")

    def revert(self, snap: Any) -> None:
        self._require_dev("snapshots")


def unreachable_reason(err: BaseException) -> str:
    """A few words for why a node did not answer, instead of the HTTP stack's nested repr."""
    text = f"{type(err).__name__} {err}"
    for needle, words in (("Connection refused", "connection refused"), ("Name or service not known", "unknown host"),
                          ("nodename nor servname", "unknown host"), ("Temporary failure in name", "unknown host"),
                          ("timed out", "timed out"), ("Timeout", "timed out"),
                          ("Connection reset", "connection reset"),
                          ("RemoteDisconnected", "connection closed"), ("No route to host", "no route to host")):
        if needle in text:
            return words
    return type(err).__name__


def open_backend(
    chain: str = "auto", run_dir: Path | str | None = None, *, keystore: Path | str | None = None
) -> Backend:
    """`auto` (managed anvil), `memory` (py-evm) or an http(s):// URL."""
    if chain == "auto":
        return AnvilBackend(run_dir)
    if chain == "memory":
        return MemoryBackend()
    if chain.startswith(("http://", "https://")):
        backend = RpcBackend(chain, keystore=keystore, run_dir=run_dir)
        if keystore is None and backend.is_anvil():  # no signer named: an anvil's dev accounts serve
            return AnvilBackend.at(chain, run_dir)
        return backend
    raise LedgerError(f"unknown chain {chain!r}: use auto, memory or an http(s):// URL")
