"""Content-addressed blob store on the local file system.

A blob's address is its domain-separated SHA-256. Writes go to a temporary file and are renamed
into place, so a crash never leaves a partial blob under a valid address, and reads re-hash the
content so a tampered file is caught where it is read.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fedledger.core.errors import IntegrityError
from fedledger.core.hashing import Usage, domain_hash


class BlobStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def address(data: bytes) -> bytes:
        return domain_hash(Usage.BLOB, data)

    def _path(self, address: bytes) -> Path:
        h = address.hex()
        return self.root / h[:2] / h

    def put(self, data: bytes) -> bytes:
        address = self.address(data)
        path = self._path(address)
        if path.exists():
            return address
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return address

    def get(self, address: bytes) -> bytes:
        path = self._path(address)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"blob 0x{address.hex()} is not in the store at {self.root}") from None
        if self.address(data) != address:
            raise IntegrityError(f"blob 0x{address.hex()} does not match its content (tampered or corrupt)")
        return data

    def __contains__(self, address: bytes) -> bool:
        return self._path(address).exists()

    def name(self, key: bytes, address: bytes) -> None:
        """File `address` under a 32-byte `key` (a Merkle root, say): a lookup, never trusted without a check."""
        path = self.root / "names" / key.hex()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(address.hex())
        os.replace(tmp, path)

    def resolve(self, key: bytes) -> bytes:
        try:
            return bytes.fromhex((self.root / "names" / key.hex()).read_text().strip())
        except (FileNotFoundError, ValueError):
            raise IntegrityError(f"nothing is filed under 0x{key.hex()} in the blob store at {self.root}") from None
