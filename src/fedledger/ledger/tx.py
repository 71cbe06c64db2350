"""Sending transactions: sign locally, check the receipt, map reverts, record gas.

On a real chain every transaction is built with an `eth_estimateGas` first: a call that would
revert fails there with the contract's reason, before anything is sent (and paid for), and
becomes the matching typed error; the gas limit is the estimate plus a margin. On dev chains
(anvil, memory) the estimate is skipped (it costs as much as the transaction) and the limit is
fixed; a reverted transaction is mined with status 0 and replayed as a call on the state before
its block to recover the reason, which becomes the same typed error. Waits are bounded (`receipt_timeout`). Nonces are
tracked per sender in this process and re-read from the node after any send error.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import ContractLogicError, TimeExhausted, Web3Exception

from fedledger.ledger.errors import LedgerError, TransactionFailed, revert_error

GAS_MARGIN = 1.2
GAS_EXTRA = 20_000
PRIORITY_FEE = 10**9
#: dev chains (anvil, memory) skip the estimate: a fixed limit, reverts found from the receipt
DEV_GAS_LIMIT = 6_000_000


def revert_reason(err: BaseException) -> str:
    """The contract's reason from a web3 revert error ('execution reverted: tasks: ...')."""
    msg = getattr(err, "message", None) or (err.args[0] if err.args else "") or str(err)
    msg = str(msg)
    for prefix in ("execution reverted: ", "execution reverted:", "VM Exception while processing transaction: revert "):
        if prefix in msg:
            return msg.split(prefix, 1)[1].strip()
    return msg.strip() or "execution reverted"


class TxSender:
    """One per ledger session, shared by every signer of the session."""

    def __init__(
        self,
        w3: Web3,
        chain_id: int,
        *,
        estimate: bool = True,
        receipt_timeout: float = 120.0,
        poll: float = 0.01,
    ) -> None:
        self.w3 = w3
        self.estimate = estimate
        self.chain_id = chain_id
        self.receipt_timeout = receipt_timeout
        self.poll = poll
        self.gas: dict[str, list[int]] = defaultdict(list)
        self.hooks: list[Callable[[Any], object]] = []
        self._nonces: dict[str, int] = {}
        self._fees: dict[str, int] | None = None
        self._fees_at = 0.0

    def reset_nonces(self) -> None:
        self._nonces.clear()
        self._fees = None

    def _nonce(self, address: str) -> int:
        if address not in self._nonces:
            self._nonces[address] = int(self.w3.eth.get_transaction_count(address, "pending"))  # type: ignore[arg-type]
        return self._nonces[address]

    def _fee_fields(self) -> dict[str, int]:
        # twice the base fee plus a tip covers a doubling of the base fee; refreshed every 10 s
        if self._fees is None or time.monotonic() - self._fees_at > 10:
            base = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
            if base:
                self._fees = {"maxFeePerGas": 2 * base + PRIORITY_FEE, "maxPriorityFeePerGas": PRIORITY_FEE}
            else:
                self._fees = {"gasPrice": max(int(self.w3.eth.gas_price), 1)}
            self._fees_at = time.monotonic()
        return dict(self._fees)

    def transact(self, account: LocalAccount, op: str, call: Any, *, value: int = 0) -> Any:
        """Send `call` (a web3 ContractFunction or ContractConstructor) from `account`; return the receipt."""
        fields: dict[str, Any] = {"from": account.address, "chainId": self.chain_id, "value": value}
        for attempt in range(2):
            fields.update(self._fee_fields())
            fields["nonce"] = self._nonce(account.address)
            fields.pop("gas", None)
            if not self.estimate:
                fields["gas"] = DEV_GAS_LIMIT
            try:
                tx = call.build_transaction(fields)  # runs eth_estimateGas unless the gas is given
            except ContractLogicError as e:
                raise revert_error(revert_reason(e), op) from None
            except Exception as e:  # an RPC error, or eth-tester's TransactionFailed on `memory`
                if "revert" in str(e).lower():
                    raise revert_error(revert_reason(e), op) from None
                if attempt == 0 and "nonce" in str(e).lower():  # someone else used this key: re-read
                    self.reset_nonces()
                    continue
                if isinstance(e, (Web3Exception, ValueError)) or type(e).__module__.startswith("eth_tester"):
                    raise TransactionFailed(f"{op}: {e}") from None
                raise
            if self.estimate:
                tx["gas"] = int(tx["gas"] * GAS_MARGIN) + GAS_EXTRA
            signed = account.sign_transaction(tx)
            try:
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            except Exception as e:  # the node's refusal; eth-tester runs the transaction here
                self.reset_nonces()
                text = str(e).lower()
                if "revert" in text:
                    raise revert_error(revert_reason(e), op) from None
                if not isinstance(e, (Web3Exception, ValueError)) and not type(e).__module__.startswith("eth"):
                    raise
                if attempt == 0 and ("nonce" in text or "fee" in text or "underpriced" in text):
                    continue
                raise TransactionFailed(f"{op}: the node refused the transaction: {e}") from None
            self._nonces[account.address] = fields["nonce"] + 1
            return self._await(op, tx, tx_hash)
        raise TransactionFailed(f"{op}: could not send")  # pragma: no cover - loop always returns or raises

    def _await(self, op: str, tx: dict[str, Any], tx_hash: Any) -> Any:
        try:
            receipt = self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=self.receipt_timeout, poll_latency=self.poll
            )
        except TimeExhausted:
            self.reset_nonces()
            raise TransactionFailed(f"{op}: not mined within {self.receipt_timeout:.0f} s") from None
        if receipt["status"] != 1:
            raise self._failure(op, tx, receipt)
        self.gas[op].append(int(receipt["gasUsed"]))
        for hook in self.hooks:
            hook(receipt)
        return receipt

    def _failure(self, op: str, tx: dict[str, Any], receipt: Any) -> LedgerError:
        call = {k: tx[k] for k in ("from", "to", "data", "value", "gas") if k in tx}
        try:
            self.w3.eth.call(call, receipt["blockNumber"] - 1)  # type: ignore[arg-type]
        except Exception as e:  # ContractLogicError, or eth-tester's TransactionFailed
            if isinstance(e, ContractLogicError) or "revert" in str(e).lower():
                return revert_error(revert_reason(e), op)
        return TransactionFailed(f"{op}: transaction {receipt['transactionHash'].hex()} failed (status 0)")

    def gas_report(self) -> dict[str, dict[str, float]]:
        """Per operation: count, mean, min and max gas used."""
        return {
            op: {"count": len(v), "mean": sum(v) / len(v), "min": min(v), "max": max(v)}
            for op, v in sorted(self.gas.items())
            if v
        }
