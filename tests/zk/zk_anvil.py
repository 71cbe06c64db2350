"""A small anvil harness for the zk tests: start a node, deploy Vyper source with web3.py, stop.

Kept here (not in fedledger.ledger) so the zk tests do not depend on the ledger client.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import vyper
from web3 import Web3

ANVIL = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "anvil"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def anvil_node() -> Iterator[Web3]:
    port = _free_port()
    proc = subprocess.Popen(
        [str(ANVIL), "--port", str(port), "--silent", "--code-size-limit", "100000", "--gas-limit", "100000000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}", request_kwargs={"timeout": 30}))
        deadline = time.monotonic() + 30
        while True:
            try:
                if w3.is_connected():
                    break
            except Exception:  # node still starting
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("anvil did not start")
            time.sleep(0.1)
        w3.eth.default_account = w3.eth.accounts[0]
        yield w3
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def deploy(w3: Web3, source: str, *args: Any) -> Any:
    out = vyper.compile_code(source, output_formats=["abi", "bytecode"])
    factory = w3.eth.contract(abi=out["abi"], bytecode=out["bytecode"])
    tx = factory.constructor(*args).transact()
    receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=30)
    assert receipt["status"] == 1
    return w3.eth.contract(address=receipt["contractAddress"], abi=out["abi"])
