"""A managed `anvil` node: found, started on a free loopback port, waited for, stopped.

fedledger starts anvil itself (the `auto` chain). The binary comes from the npm package
`@foundry-rs/anvil` that `make` installs under `node_modules/`; `$FEDLEDGER_ANVIL` or an `anvil`
on PATH also work. The node listens on 127.0.0.1 only. With a state file, anvil loads it at
start and fedledger writes it back (`anvil_dumpState`, atomically) at every durability point
and at stop, and anvil itself dumps it every `state_interval` seconds and on SIGTERM, so a
restarted node continues from the same chain.

Clean stop: `stop()` sends SIGTERM to the node's process group and waits; it runs on context
exit, at interpreter exit (atexit), on SIGTERM to this process (turned into SystemExit while
a node is running) and, on Linux, the kernel sends the node SIGTERM if this process dies.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from fedledger.ledger.errors import ChainUnavailable

#: the well-known first dev account of anvil's default mnemonic (a dev chain's funder)
ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
MISSING_HINT = "anvil not found (run `make node` to install it, or use --chain memory)"


def project_roots() -> list[Path]:
    """Where node_modules may live: the working directory and the source checkout, with parents."""
    roots: list[Path] = []
    for start in (Path.cwd(), Path(__file__).resolve()):
        for p in (start, *start.parents):
            if p not in roots:
                roots.append(p)
    return roots


def find_anvil() -> str | None:
    """The anvil binary: $FEDLEDGER_ANVIL, the npm package's native binary, its shim, or PATH."""
    env = os.environ.get("FEDLEDGER_ANVIL")
    if env:
        return env if os.access(env, os.X_OK) else None
    for root in project_roots():
        nm = root / "node_modules"
        if not nm.is_dir():
            continue
        for native in sorted(glob.glob(str(nm / "@foundry-rs" / "anvil-*" / "bin" / "anvil"))):
            if os.access(native, os.X_OK):
                return native
        shim = nm / ".bin" / "anvil"
        if os.access(shim, os.X_OK) and shutil.which("node"):
            return str(shim)
    return shutil.which("anvil")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def rpc(url: str, method: str, params: list[Any] | None = None, timeout: float = 5.0) -> Any:
    """One raw JSON-RPC call (used before web3 is set up, and for anvil_* methods)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        reply = json.loads(resp.read())
    if "error" in reply:
        raise ChainUnavailable(f"{method} failed: {reply['error'].get('message', reply['error'])}")
    return reply["result"]


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_live: set[AnvilNode] = set()
_live_lock = threading.Lock()
_sigterm_installed = False


def _stop_all() -> None:
    for node in list(_live):
        node.stop()


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _install_handlers() -> None:
    global _sigterm_installed
    if _sigterm_installed:
        return
    _sigterm_installed = True
    atexit.register(_stop_all)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


class AnvilNode:
    """One anvil process. Use as a context manager or call `start()` / `stop()`."""

    def __init__(
        self,
        state_path: Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 30.0,
        state_interval: int = 5,
        log_path: Path | None = None,
        info_path: Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.state_path = Path(state_path) if state_path else None
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.state_interval = state_interval
        self.log_path = log_path
        self.info_path = info_path  # {"url", "pid"} while running, for other processes to attach
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> AnvilNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> AnvilNode:
        binary = find_anvil()
        if binary is None:
            raise ChainUnavailable(MISSING_HINT)
        _install_handlers()
        last_error = ""
        for _ in range(3):  # a free port can be taken between probe and bind: retry
            port = self.port or free_port(self.host)
            args = [binary, "--host", self.host, "--port", str(port), "--silent", *self.extra_args]
            if self.state_path is not None:
                self.state_path.parent.mkdir(parents=True, exist_ok=True)
                args += ["--state", str(self.state_path), "--state-interval", str(self.state_interval)]
            if self.log_path is not None:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
            else:
                self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_set_pdeathsig if sys.platform.startswith("linux") else None,
            )
            self.port = port
            with _live_lock:
                _live.add(self)
            try:
                self._wait_ready()
                self._keep_the_clock()
                if self.info_path is not None:
                    self.info_path.write_text(json.dumps({"url": self.url, "pid": os.getpid()}))
                return self
            except ChainUnavailable as e:
                last_error = str(e)
                self.stop(persist=False)
                if "in use" not in last_error.lower():
                    break
                self.port = None
        raise ChainUnavailable(last_error)

    def _tail(self) -> str:
        if self._log is None:
            return ""
        with contextlib.suppress(OSError):
            self._log.flush()
            self._log.seek(0)
            text = self._log.read().decode(errors="replace").strip().splitlines()
            return text[-1] if text else ""
        return ""

    def _keep_the_clock(self) -> None:
        """Blocks never go back in time across a restart: anvil does not save the clock offset that
        `evm_increaseTime` set, so a state whose last block is ahead of the wall clock gets the offset again
        (else the next block would be older than the last, and a deadline already past would lie ahead)."""
        latest = rpc(self.url, "eth_getBlockByNumber", ["latest", False])
        ahead = int(latest["timestamp"], 16) - int(time.time())
        if ahead > 0:
            rpc(self.url, "evm_increaseTime", [ahead + 1])

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ChainUnavailable(f"anvil exited at start (code {self.proc.returncode}): {self._tail()}")
            try:
                rpc(self.url, "eth_chainId", timeout=1.0)
                return
            except (OSError, urllib.error.URLError, ValueError):
                time.sleep(0.05)
        raise ChainUnavailable(f"anvil did not answer on {self.url} within {self.startup_timeout:.0f} s")

    def dump_state(self) -> None:
        """Write the node's whole state to the state file now (atomic replace)."""
        if self.state_path is None or not self.running:
            return
        raw = rpc(self.url, "anvil_dumpState", timeout=60.0)
        data = gzip.decompress(bytes.fromhex(raw.removeprefix("0x")))
        fd, tmp = tempfile.mkstemp(dir=self.state_path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    def stop(self, timeout: float = 10.0, persist: bool = True) -> None:
        proc, self.proc = self.proc, None
        with _live_lock:
            _live.discard(self)
        if self.info_path is not None and proc is not None:
            with contextlib.suppress(FileNotFoundError):
                self.info_path.unlink()
        if proc is not None and proc.poll() is None:
            if persist and self.state_path is not None:
                self.proc = proc
                with contextlib.suppress(Exception):
                    self.dump_state()
                self.proc = None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
