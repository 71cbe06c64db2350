"""The `fedledger` command line.

Every user error ends with one line on stderr and the error's exit code (2 for bad flags or names);
a traceback means a bug in fedledger.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedledger import __version__
from fedledger.cli import audit_cmd, chain_cmd, export_cmd, new_cmd, report_cmd, zk_cmd
from fedledger.core.config import WHOLE_SYSTEM, FederationConfig, load_config
from fedledger.core.errors import FedLedgerError


def _run_parser(sub: argparse._SubParsersAction) -> None:
    from fedledger.data import DATASETS
    from fedledger.learning import STRATEGIES
    from fedledger.models import MODELS

    p = sub.add_parser("run", help="run a federation and write DIR/results.json and DIR/accuracy.png",
                       description="Runs the whole system by default: every round on a managed chain with a "
                                   "validator committee, member-level DP through SecAgg+ and a zero-knowledge proof "
                                   "per update. --plain runs plain federated learning instead.")
    p.add_argument("--config", type=Path, help="TOML file with FederationConfig fields; flags override it")
    p.add_argument("--plain", action="store_true",
                   help="start from plain federated learning (no chain, no DP, no proofs) instead of the whole "
                        "system; the config file and flags add to it")
    p.add_argument("--dataset", choices=sorted(DATASETS))
    p.add_argument("--partition", help="iid | dirichlet:ALPHA | shards:K | natural")
    p.add_argument("--clients", type=int, help="number of members")
    p.add_argument("--fraction", type=float, help="share of members sampled each round")
    p.add_argument("--rounds", type=int)
    p.add_argument("--model", help=f"one of {', '.join(MODELS)}, or your own: path/to/file.py:factory or "
                                   "package.module:factory, called as factory(input_shape: tuple[int, ...], "
                                   "num_classes: int) -> torch.nn.Module")
    p.add_argument("--strategy", choices=sorted(STRATEGIES))
    p.add_argument("--optimizer", choices=["sgd", "adam"], help="local optimizer")
    p.add_argument("--local-epochs", type=float, dest="local_epochs")
    p.add_argument("--local-steps", type=int, dest="local_steps", help="fixed local steps (overrides epochs)")
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--lr", type=float, help="local learning rate")
    p.add_argument("--momentum", type=float)
    p.add_argument("--proximal-mu", type=float, dest="proximal_mu", help="FedProx proximal term")
    p.add_argument("--server-lr", type=float, dest="server_lr")
    p.add_argument("--heterogeneity", type=float, help="spread of member compute budgets, 0..1")
    p.add_argument("--dropout", type=float, help="chance that a sampled member drops out of a round")
    p.add_argument("--max-samples", type=int, dest="max_samples", help="cap on samples (quick runs)")
    p.add_argument("--seed", type=int, help="fixes the public choices: data partition, model init, sampling")
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="also derive every secret (keys, DP noise, SecAgg+ and commitment randomness) from --seed, "
                        "so a run reproduces bit for bit: simulations and tests only (results.json and the round "
                        "evidence say so; refused with an external --chain URL). Default: secrets from os.urandom")
    p.add_argument("--out", help="output directory; running again on it resumes")
    p.add_argument("--baseline", action="store_true", default=None, help="also train centrally, same budget")
    p.add_argument("--no-batched", dest="batched", action="store_false", default=None,
                   help="train members one by one instead of vmap-batched")
    priv = p.add_argument_group("privacy (docs/privacy.md)")
    priv.add_argument("--dp", choices=["none", "record", "member"], dest="privacy.dp",
                      help="record: DP-SGD inside each member; member: distributed DP through secure aggregation")
    priv.add_argument("--epsilon", type=float, dest="privacy.epsilon", help="privacy budget over the whole run")
    priv.add_argument("--delta", type=float, dest="privacy.delta")
    priv.add_argument("--clip-norm", type=float, dest="privacy.clip_norm",
                      help="L2 clip: per example (record) or per update (member)")
    priv.add_argument("--adaptive-clip", action="store_true", default=None, dest="privacy.adaptive_clip",
                      help="move the member-level clip toward --target-quantile of update norms")
    priv.add_argument("--target-quantile", type=float, dest="privacy.target_quantile")
    priv.add_argument("--secagg", action=argparse.BooleanOptionalAction, default=None, dest="privacy.secagg",
                      help="sum member-level updates through SecAgg+")
    priv.add_argument("--bits", type=int, dest="privacy.bits", help="bits per coordinate on the wire, 8..32")
    priv.add_argument("--spare-releases", type=int, dest="privacy.spare_releases",
                      help="member-level releases planned beyond one per round for redone attempts (with --chain)")
    priv.add_argument("--secret-sampling", action="store_true", default=None, dest="privacy.secret_sampling",
                      help="claim amplification by subsampling (only if cohorts are not public)")
    p.add_argument("--chain", dest="ledger.chain", metavar="auto|memory|URL|off",
                   help="record, validate and settle every round on a ledger: auto = managed anvil (default), "
                        "memory = in-process py-evm, a JSON-RPC URL, or off")
    p.add_argument("--committee", type=int, dest="ledger.committee", help="validators per round (with --chain)")
    p.add_argument("--proofs", choices=["none", "update", "training"],
                   help="update: every survivor proves its secure-aggregation input well formed (Groth16)")
    p.add_argument("--attack", help="inject attacks: label_flip:F, sign_flip:F, boost:F[:S], free_ride:F, stale:F, "
                                    "mask_swap:F, inflate:F, impersonate:F, replay:F, malicious_aggregator, "
                                    "framing_aggregator, privacy_underreport, lazy_validator[:K]; faults: "
                                    "late_aggregator, silent_validator[:K] (comma-separated)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or table")
    p.set_defaults(func=cmd_run)


_RUN_FIELDS = [
    "dataset", "partition", "clients", "fraction", "rounds", "model", "strategy", "optimizer", "local_epochs",
    "local_steps", "batch_size", "lr", "momentum", "proximal_mu", "server_lr", "heterogeneity", "dropout",
    "max_samples", "seed", "deterministic", "out", "baseline", "batched", "attack", "proofs", "privacy.dp",
    "privacy.epsilon", "privacy.delta", "privacy.clip_norm", "privacy.adaptive_clip", "privacy.target_quantile",
    "privacy.secagg", "privacy.bits", "privacy.secret_sampling", "privacy.spare_releases", "ledger.chain",
    "ledger.committee",
]


def config_from_args(args: argparse.Namespace) -> FederationConfig:
    overrides: dict[str, Any] = {k: getattr(args, k) for k in _RUN_FIELDS}
    if overrides["ledger.chain"] == "off":
        overrides["ledger.chain"] = None
        overrides["ledger.enabled"] = False
    elif overrides["ledger.chain"] is not None:
        overrides["ledger.enabled"] = True
    return load_config(args.config, overrides, base=None if args.plain else WHOLE_SYSTEM)


def cmd_run(args: argparse.Namespace) -> int:
    from fedledger.report.plots import accuracy_plot
    from fedledger.sim import Simulation

    cfg = config_from_args(args)
    out = Path(cfg.out)
    sim = Simulation(cfg)
    bar = _progress(cfg, quiet=args.quiet)
    result = sim.run(out, on_round=bar.update_round)
    bar.close()
    if result.resumed_from and not args.quiet:
        print(f"resumed {out} after round {result.resumed_from}")
    payload = result.to_json()
    _write_json(out / "results.json", payload)
    accuracy_plot(
        out / "accuracy.png",
        [r.round for r in result.rounds],
        [r.accuracy for r in result.rounds],
        [r.loss for r in result.rounds],
        centralized=result.centralized_accuracy,
        title=f"{cfg.dataset} / {cfg.model} / {cfg.strategy}, {cfg.clients} members, {cfg.partition}",
    )
    if not args.quiet:
        print(summary_table(payload))
        print(f"results: {out / 'results.json'}   plot: {out / 'accuracy.png'}")
    return 0


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


class _progress:
    def __init__(self, cfg: FederationConfig, *, quiet: bool) -> None:
        from tqdm import tqdm

        # disable=None: no bar when stdout is not a terminal (logs, CI), only the summary table
        self.bar = tqdm(total=cfg.rounds, desc="rounds", unit="round", disable=True if quiet else None, leave=False)

    def update_round(self, record: Any) -> None:
        if self.bar.n == 0 and record.round > 1:
            self.bar.update(record.round - 1)
        self.bar.set_postfix(acc=f"{record.accuracy:.3f}", loss=f"{record.loss:.3f}")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def summary_table(payload: dict[str, Any], max_rows: int = 12) -> str:
    rounds = payload["rounds"]
    shown = rounds if len(rounds) <= max_rows else [*rounds[: max_rows // 2], None, *rounds[-max_rows // 2 :]]
    private = any(r.get("epsilon_spent") is not None for r in rounds)
    chain = any(r.get("chain_txs") is not None for r in rounds)
    lines = [f"{'round':>5} {'accuracy':>9} {'loss':>8} {'members':>8} {'dropped':>8} {'MB up':>8} {'seconds':>8}"
             + (f" {'epsilon':>8}" if private else "") + (f" {'txs':>4} {'final':>5}" if chain else "")]
    for r in shown:
        if r is None:
            lines.append(f"{'...':>5}")
            continue
        lines.append(
            f"{r['round']:>5} {r['accuracy']:>9.4f} {r['loss']:>8.4f} {r['participants']:>8} {r['dropped']:>8}"
            f" {r['bytes_up'] / 1e6:>8.2f} {r['seconds']:>8.2f}"
            + (f" {r['epsilon_spent']:>8.3f}" if private else "")
            + (f" {r['chain_txs']:>4} {'yes' if r['finalized'] else 'no':>5}" if chain else "")
        )
    total = sum(r["seconds"] for r in rounds)
    lines.append(f"final accuracy {payload['final_accuracy']:.4f}   {total:.1f} s in rounds")
    if "centralized_accuracy" in payload:
        lines.append(
            f"centralized (same budget) {payload['centralized_accuracy']:.4f}"
            f"   accuracy ratio {payload['accuracy_ratio']:.4f}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedledger", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fedledger {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    chain_cmd.register(sub)
    zk_cmd.register(sub)
    audit_cmd.register(sub)
    report_cmd.register(sub)
    export_cmd.register(sub)
    new_cmd.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except FedLedgerError as e:
        print(f"fedledger: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("fedledger: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
