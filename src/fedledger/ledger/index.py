"""A local index of the ledger's contract events.

Queries never scan the chain: events enter the index from the receipts of this process's own
transactions at once, and `sync()` fetches only the blocks mined since the last sync (others'
transactions), in bounded `eth_getLogs` chunks filtered to the deployment's addresses. The
index is a SQLite file next to the chain state (`<run>/chain/index.sqlite`) so a restarted run
picks up where it stopped instead of rescanning from the deployment block.

Consistency: the index remembers the hash of the last block it synced. If the chain no longer
has that block (a node restarted from an older state dump, a reorg, a test's snapshot revert)
the index drops what lies past the newest block it can still find on chain and syncs again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract

from fedledger.ledger.types import Event

SYNC_CHUNK = 2_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    block INTEGER NOT NULL,
    log_index INTEGER NOT NULL,
    block_hash TEXT NOT NULL,
    tx_hash TEXT NOT NULL,
    contract TEXT NOT NULL,
    name TEXT NOT NULL,
    args TEXT NOT NULL,
    PRIMARY KEY (block, log_index)
);
CREATE INDEX IF NOT EXISTS events_name ON events (name, block, log_index);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _plain(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, HexBytes)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


class EventIndex:
    """Decoded events of a set of contracts, persisted in SQLite (or kept in memory)."""

    def __init__(
        self,
        w3: Web3,
        contracts: Mapping[str, Contract],
        *,
        path: Path | None,
        start_block: int,
        key: str,
        live: bool = True,
    ) -> None:
        self.w3 = w3
        self.live = live
        self.start_block = start_block
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False)
        self._db.executescript(_SCHEMA)
        self._by_address = {to_checksum_address(c.address): name for name, c in contracts.items()}
        self._decoders: dict[tuple[str, bytes], Any] = {}
        for name, c in contracts.items():
            abi: list[dict[str, Any]] = list(c.abi)  # type: ignore[arg-type]
            for item in abi:
                if item.get("type") == "event":
                    ev = c.events[item["name"]]()
                    topic = Web3.keccak(text=f"{item['name']}({','.join(i['type'] for i in item['inputs'])})")
                    self._decoders[(name, bytes(topic))] = ev
        if self._meta("key") != key:
            with self._db:
                self._db.execute("DELETE FROM events")
                self._db.execute("DELETE FROM meta")
            self._set_meta("key", key)
            self._set_meta("last_block", str(start_block - 1))
            self._set_meta("last_hash", "")

    # -- meta
    def _meta(self, k: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (k,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, k: str, v: str) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (k, v))

    @property
    def last_block(self) -> int:
        return int(self._meta("last_block") or self.start_block - 1)

    # -- writing
    def ingest_receipt(self, receipt: Any) -> list[Event]:
        return self.ingest_logs(receipt["logs"])

    def ingest_logs(self, logs: Iterable[Any]) -> list[Event]:
        out: list[Event] = []
        rows = []
        for log in logs:
            name = self._by_address.get(to_checksum_address(log["address"]))
            if name is None or not log["topics"]:
                continue
            decoder = self._decoders.get((name, bytes(log["topics"][0])))
            if decoder is None:
                continue
            decoded = decoder.process_log(log)
            ev = Event(
                contract=name,
                name=decoded["event"],
                block_number=int(log["blockNumber"]),
                log_index=int(log["logIndex"]),
                tx_hash="0x" + bytes(log["transactionHash"]).hex(),
                args=_plain(dict(decoded["args"])),
            )
            out.append(ev)
            rows.append(
                (
                    ev.block_number,
                    ev.log_index,
                    "0x" + bytes(log["blockHash"]).hex(),
                    ev.tx_hash,
                    ev.contract,
                    ev.name,
                    json.dumps(ev.args),
                )
            )
        if rows:
            with self._lock, self._db:
                self._db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        return out

    # -- syncing
    def _chain_hash(self, number: int) -> str | None:
        try:
            block = self.w3.eth.get_block(number)
        except Exception:  # BlockNotFound, or a node that pruned it
            return None
        return "0x" + bytes(block["hash"]).hex()

    def _rewind(self) -> None:
        """Drop what the chain no longer has: events past the newest block still on chain."""
        head = int(self.w3.eth.block_number)
        with self._lock, self._db:
            self._db.execute("DELETE FROM events WHERE block > ?", (head,))
        good = self.start_block - 1
        blocks = self._db.execute(
            "SELECT DISTINCT block, block_hash FROM events ORDER BY block DESC LIMIT 256"
        ).fetchall()
        for number, block_hash in blocks:
            if self._chain_hash(int(number)) == block_hash:
                good = int(number)
                break
        else:
            if len(blocks) == 256:  # deeper than we look: rebuild from the deployment block
                good = self.start_block - 1
        with self._lock, self._db:
            self._db.execute("DELETE FROM events WHERE block > ?", (good,))
        self._set_meta("last_block", str(good))
        self._set_meta("last_hash", self._chain_hash(good) or "" if good >= 0 else "")

    def rollback_to_head(self) -> None:
        """After a snapshot revert: forget everything past the current head."""
        self._rewind()

    def sync(self, *, fetch: bool | None = None) -> None:
        """Fetch the events mined since the last sync (a receipts-only index just moves its mark,
        unless `fetch=True`)."""
        live = self.live if fetch is None else fetch
        with self._lock:
            head = int(self.w3.eth.block_number)
            last = self.last_block
            last_hash = self._meta("last_hash") or ""
            if last >= self.start_block and last_hash and self._chain_hash(last) != last_hash:
                self._rewind()
                last = self.last_block
            if head < last:
                self._rewind()
                last = self.last_block
            if not live:
                if head > last:
                    self._set_meta("last_block", str(head))
                    self._set_meta("last_hash", self._chain_hash(head) or "")
                return
            addresses = list(self._by_address)
            frm = last + 1
            while frm <= head:
                to = min(frm + SYNC_CHUNK - 1, head)
                logs = self.w3.eth.get_logs({"fromBlock": frm, "toBlock": to, "address": addresses})  # type: ignore[typeddict-item]
                self.ingest_logs(logs)
                frm = to + 1
            if head > last:
                self._set_meta("last_block", str(head))
                self._set_meta("last_hash", self._chain_hash(head) or "")

    # -- reading
    def events(
        self,
        name: str | None = None,
        *,
        contract: str | None = None,
        before: tuple[int, int] | None = None,
        sync: bool = True,
        **where: Any,
    ) -> list[Event]:
        """Events in chain order; `where` matches decoded arguments (e.g. task_id=1)."""
        if sync:
            self.sync()
        sql = "SELECT contract, name, block, log_index, tx_hash, args FROM events WHERE 1=1"
        params: list[Any] = []
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        if contract is not None:
            sql += " AND contract = ?"
            params.append(contract)
        if before is not None:
            sql += " AND (block < ? OR (block = ? AND log_index < ?))"
            params += [before[0], before[0], before[1]]
        for k, v in where.items():
            sql += f" AND json_extract(args, '$.{k}') = ?"
            params.append(_plain(v))
        sql += " ORDER BY block, log_index"
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [Event(c, n, int(b), int(i), t, json.loads(a)) for c, n, b, i, t, a in rows]

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
