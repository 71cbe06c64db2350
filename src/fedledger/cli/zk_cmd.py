"""`fedledger zk setup|prove|verify`: keys, update proofs and their verification from the shell.

    fedledger zk setup  [--chunk-size 4096] [--zkey ceremony.zkey] [--vyper Verifier.vy]
    fedledger zk prove  --update upd.npz --task T --round 3 --member alice --challenge 0x.. --out bundle.json
    fedledger zk verify bundle.json

`upd.npz` holds int64 arrays `x` (clipped, rounded update) and `e` (noise share). In a real round
the challenge comes from chain randomness after the masked inputs are fixed; here it is a flag.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from fedledger.core.errors import ConfigError, DataError

if TYPE_CHECKING:  # imported lazily at run time so that `fedledger --help` stays fast
    from fedledger.zk.backend import Groth16Backend
    from fedledger.zk.update import UpdateSpec


def register(subparsers: argparse._SubParsersAction) -> None:
    zk = subparsers.add_parser("zk", help="zero-knowledge keys, update proofs and verification")
    sub = zk.add_subparsers(dest="zk_command", required=True)

    def spec_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--chunk-size", type=int, default=4096, help="entries per chunk proof (<= 4096)")
        p.add_argument("--entry-bits", type=int, default=16, help="bit width of update entries")
        p.add_argument("--noise-bits", type=int, default=12, help="bit width of noise-share entries")
        p.add_argument("--bound2x", type=int, default=2**40, help="squared L2 bound of the update")
        p.add_argument("--bound2e", type=int, default=2**40, help="squared L2 bound of the noise share")
        p.add_argument(
            "--cache", type=Path, metavar="DIR",
            help="key directory (default $FEDLEDGER_CACHE/zk or ~/.cache/fedledger/zk)",
        )

    p = sub.add_parser("setup", help="create (development) or import (ceremony) keys for the update circuit")
    spec_flags(p)
    p.add_argument("--zkey", type=Path, metavar="FILE", help="snarkjs phase-2 .zkey for this circuit (production path)")
    p.add_argument("--vyper", type=Path, metavar="FILE", help="also write the Vyper verifier contract here")
    p.set_defaults(func=cmd_setup)

    p = sub.add_parser("prove", help="commit to an update and prove it well formed")
    spec_flags(p)
    p.add_argument("--update", type=Path, required=True, metavar="FILE", help=".npz with int64 arrays x and e")
    p.add_argument("--task", required=True, help="task id the proof is bound to")
    p.add_argument("--round", type=int, required=True, dest="round_id", metavar="N", help="round the proof is bound to")
    p.add_argument("--member", required=True, help="member the proof is bound to")
    p.add_argument("--challenge", required=True, help="the linear-check challenge r (decimal or 0x-hex)")
    p.add_argument("--seed", type=int, default=None,
                   help="derive the commitment randomness from this seed: reproducible and NOT hiding (tests only); "
                        "default: the OS CSPRNG")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="prover processes (keys loaded once each)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="bundle JSON to write")
    p.set_defaults(func=cmd_prove)

    p = sub.add_parser("verify", help="verify an update-proof bundle (exit 5 if it does not verify)")
    p.add_argument("bundle", type=Path, help="bundle JSON written by `fedledger zk prove`")
    p.add_argument("--cache", type=Path, metavar="DIR",
                   help="key directory (default $FEDLEDGER_CACHE/zk or ~/.cache/fedledger/zk)")
    p.set_defaults(func=cmd_verify)


def _spec(args: argparse.Namespace) -> UpdateSpec:
    from fedledger.zk.update import UpdateSpec

    return UpdateSpec(
        chunk_size=args.chunk_size,
        entry_bits=args.entry_bits,
        noise_bits=args.noise_bits,
        bound2x=args.bound2x,
        bound2e=args.bound2e,
    )


def _backend(args: argparse.Namespace, *, allow_dev_setup: bool = True) -> Groth16Backend:
    from fedledger.zk.backend import Groth16Backend

    return Groth16Backend(args.cache, allow_dev_setup=allow_dev_setup)


def _banner(dev: bool) -> None:
    from fedledger.zk.backend import DEV_BANNER

    if dev:
        print(f"WARNING: {DEV_BANNER}")


def cmd_setup(args: argparse.Namespace) -> int:
    from fedledger.zk.backend import DevelopmentSetupWarning

    spec = _spec(args)
    backend = _backend(args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DevelopmentSetupWarning)
        if args.zkey:
            if not args.zkey.exists():
                raise ConfigError(f"no such file: {args.zkey}")
            keys = backend.import_ceremony(spec.circuit, args.zkey)
        else:
            keys = backend.keys(spec.circuit)
    _banner(keys.development_only)
    if args.vyper:
        args.vyper.write_text(backend.export_vyper(keys))
    print(json.dumps({**keys.record.to_json(), "key_dir": str(keys.directory), "n_public": keys.n_public}, indent=2))
    return 0


def cmd_prove(args: argparse.Namespace) -> int:
    import numpy as np

    from fedledger.core.rng import Purpose, entropy_for
    from fedledger.zk.backend import DevelopmentSetupWarning
    from fedledger.zk.update import ProofContext, UpdateProver, bundle_to_json, commit_update

    spec = _spec(args)
    try:
        data = np.load(args.update)
        x, e = np.asarray(data["x"], dtype=np.int64), np.asarray(data["e"], dtype=np.int64)
    except (OSError, KeyError, ValueError) as err:
        raise DataError(f"{args.update}: need an .npz with int64 arrays x and e ({err})") from err
    try:
        r = int(args.challenge, 0)
    except ValueError as err:
        raise ConfigError(f"--challenge must be an integer, got {args.challenge!r}") from err
    ctx = ProofContext(args.task, args.round_id, args.member)
    entropy = entropy_for(args.seed is not None, args.seed or 0)
    rng = entropy.stream(Purpose.COMMITMENT, round=args.round_id, label=json.dumps([args.task, args.member]))
    secret, posted = commit_update(spec, ctx, x, e, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DevelopmentSetupWarning)
        with UpdateProver(spec, _backend(args), workers=args.workers) as prover:
            _banner(prover.keys.development_only)
            proof = prover.prove_update(secret, posted, r)
    args.out.write_text(json.dumps(bundle_to_json(spec, posted, proof, r), indent=1))
    print(f"proved {posted.dim} entries in {len(proof.chunks)} chunk(s), {proof.prove_seconds:.2f} s -> {args.out}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from fedledger.zk.backend import DevelopmentSetupWarning
    from fedledger.zk.update import bundle_from_json, verify_update

    try:
        raw = json.loads(args.bundle.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read {args.bundle}: {err}") from err
    spec, posted, proof, r = bundle_from_json(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DevelopmentSetupWarning)
        keys = _backend(args, allow_dev_setup=False).keys(spec.circuit)
    _banner(keys.development_only)
    verify_update(keys, spec, posted, proof, r)
    print(f"ok: {len(proof.chunks)} chunk proof(s) verify, s = {hex(proof.s)}", file=sys.stdout)
    return 0
