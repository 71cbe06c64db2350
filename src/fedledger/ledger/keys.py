"""Signing keys for an external JSON-RPC chain, never written in clear to disk.

Two sources, in this order:
- an encrypted JSON keystore (the standard Web3 Secret Storage format; `$FEDLEDGER_KEYSTORE` or
  the `keystore` argument), unlocked with `$FEDLEDGER_KEYSTORE_PASSWORD` or, on a terminal, a
  password prompt;
- `$FEDLEDGER_PRIVATE_KEY`, a 0x-prefixed hex key in the environment.
The decrypted key lives only in this process's memory.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from fedledger.ledger.errors import KeyLoadError

ENV_KEY = "FEDLEDGER_PRIVATE_KEY"
ENV_KEYSTORE = "FEDLEDGER_KEYSTORE"
ENV_PASSWORD = "FEDLEDGER_KEYSTORE_PASSWORD"


def load_signer(keystore: Path | str | None = None) -> LocalAccount:
    path = keystore or os.environ.get(ENV_KEYSTORE)
    if path:
        try:
            blob = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise KeyLoadError(f"cannot read keystore {path}: {e}") from None
        password = os.environ.get(ENV_PASSWORD)
        if password is None:
            if not sys.stdin.isatty():
                raise KeyLoadError(f"keystore {path} needs a password: set {ENV_PASSWORD}")
            password = getpass.getpass(f"password for {path}: ")
        try:
            key = Account.decrypt(blob, password)
        except ValueError:
            raise KeyLoadError(f"wrong password for keystore {path}") from None
        return Account.from_key(key)
    raw = os.environ.get(ENV_KEY)
    if raw:
        try:
            return Account.from_key(raw)
        except (ValueError, TypeError):
            raise KeyLoadError(f"{ENV_KEY} is not a valid private key") from None
    raise KeyLoadError(f"an RPC chain needs a key: set {ENV_KEYSTORE} (+ {ENV_PASSWORD}) or {ENV_KEY}")
