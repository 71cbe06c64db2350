"""A node's session on a JSON-RPC chain: the deployment from a file, the signer from an encrypted keystore.

A node (and `fedledger task`, `fedledger chain status --deployment`) needs the contracts' addresses. They
are in the `deployment.json` that `fedledger chain deploy` (or `chain up`) writes into `DIR/chain/`;
`--deployment FILE` names that file wherever it was copied to. The node keeps its own copy in its state
directory (`STATE/chain/deployment.json`, next to its event index), so a restart needs no flag, and
checks on every start that each address holds the code compiled from these sources
(`ledger.deploy.check_deployment`).

Keystore: the Web3 Secret Storage JSON (`ledger.keys`), its password from `--password-file` or
`$FEDLEDGER_KEYSTORE_PASSWORD`; the decrypted key lives only in this process's memory.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from fedledger.core.errors import ConfigError
from fedledger.ledger import Ledger
from fedledger.ledger.backends import RpcBackend
from fedledger.ledger.deploy import Deployment
from fedledger.ledger.errors import DeploymentError, KeyLoadError
from fedledger.ledger.keys import ENV_PASSWORD

DEPLOYMENT_FILE = "deployment.json"


def read_password(password_file: Path | None) -> str:
    """The keystore password: the first line of `password_file`, else `$FEDLEDGER_KEYSTORE_PASSWORD`."""
    if password_file is not None:
        try:
            lines = password_file.read_text().splitlines()
        except OSError as e:
            raise KeyLoadError(f"cannot read the password file {password_file}: {e.strerror}") from None
        return lines[0] if lines else ""
    password = os.environ.get(ENV_PASSWORD)
    if password is None:
        raise KeyLoadError(f"the keystore needs a password: --password-file FILE or ${ENV_PASSWORD}")
    return password


def load_keystore(path: Path, password: str) -> LocalAccount:
    try:
        blob = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise KeyLoadError(f"cannot read keystore {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        return Account.from_key(Account.decrypt(blob, password))
    except (ValueError, TypeError, KeyError):
        raise KeyLoadError(f"wrong password for keystore {path} (or not a keystore)") from None


def install_deployment(state: Path, deployment: Path | None) -> Path:
    """Put the deployment file where a session on `state` finds it; return its path there."""
    target = state / "chain" / DEPLOYMENT_FILE
    if deployment is not None:
        try:
            Deployment.load(deployment)
        except Exception as e:  # a missing file, not JSON, missing fields
            raise DeploymentError(f"--deployment {deployment}: not a deployment file ({type(e).__name__}: {e})") \
                from None
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_bytes() != deployment.read_bytes():
            if target.exists():  # another deployment: the event index cached for the old one is of no use
                (state / "chain" / "index.sqlite").unlink(missing_ok=True)
            shutil.copyfile(deployment, target)
    elif not target.exists():
        raise DeploymentError(
            f"no deployment known for this chain: pass --deployment FILE (the deployment.json that "
            f"`fedledger chain deploy` wrote in DIR/chain/); {state} keeps a copy for the next start")
    return target


def open_chain(url: str, state: Path, *, deployment: Path | None = None, signer: LocalAccount | None = None) -> Ledger:
    """A session on the JSON-RPC node `url` for the contracts of `deployment` (or the copy in `state`),
    signing as `signer`; the event index is cached in `state/chain`."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--chain takes a JSON-RPC URL (http://host:port), not {url!r}")
    state.mkdir(parents=True, exist_ok=True)
    install_deployment(state, deployment)
    backend = RpcBackend(url, run_dir=state)
    try:
        ledger = Ledger.attach(backend, deploy_if_missing=False, owns_backend=True)
    except BaseException:
        backend.close()
        raise
    return ledger if signer is None else ledger.as_account(signer)
