"""The `fedledger` command line.

Every user error ends with one line on stderr and the error's exit code (2 for bad flags or names);
a traceback means a bug in fedledger.
"""

from __future__ import annotations

import argparse
import functools
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from fedledger import __version__
from fedledger.cli import (
    account_cmd,
    audit_cmd,
    chain_cmd,
    economics_cmd,
    export_cmd,
    new_cmd,
    node_cmd,
    report_cmd,
    testnet_cmd,
    watch_cmd,
    zk_cmd,
)
from fedledger.core.errors import ConfigError, FedLedgerError, LedgerError

if TYPE_CHECKING:  # `fedledger --help` imports neither pydantic nor torch (tests/cli/test_cli_errors.py pins it)
    from fedledger.core.config import FederationConfig

#: names of the built-in data sets, strategies and models, spelled out here so that parsing the command line
#: imports no registry (each pulls in torch); tests/cli/test_cli_errors.py checks them against the registries
DATASET_NAMES = ("breast_cancer", "digits", "fashion_mnist", "lending_club", "randhie")
STRATEGY_NAMES = ("fedadagrad", "fedadam", "fedavg", "fednova", "fedyogi", "median", "multikrum", "trimmed_mean")
MODEL_NAMES = ("logreg", "logreg-lowpass", "logreg-lowpass-nobias", "mlp", "tabular", "cnn", "tanh_cnn")


class _Parser(argparse.ArgumentParser):
    """Errors in one line (no usage dump), pointing to --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class _Help(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (for `run`: the default of the configuration it sets)."""

    def _config_defaults(self) -> dict[str, str] | None:
        return None

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or action.dest in (argparse.SUPPRESS, "help", "version"):
            return text
        shown = _shown_default(action, self._config_defaults())
        return f"{text} (default: {shown})".strip() if shown is not None else text


def _shown_default(action: argparse.Action, run_defaults: dict[str, str] | None) -> str | None:
    if action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction):
        return None  # a flag: its help says what it turns on
    if run_defaults is not None and action.dest in run_defaults:
        return run_defaults[action.dest]
    default = action.default
    if default is None or default is argparse.SUPPRESS or isinstance(default, bool) or action.nargs == 0:
        return None
    return str(default)


class _RunHelp(_Help):
    def _config_defaults(self) -> dict[str, str] | None:
        return run_defaults()


@functools.cache
def run_defaults() -> dict[str, str]:
    """The default of every `run` flag as the help shows it: the whole system's, and --plain's where it differs."""
    from fedledger.core.config import WHOLE_SYSTEM, FederationConfig, load_config

    whole = _flat(load_config(None, None, base=WHOLE_SYSTEM).model_dump())
    plain = _flat(FederationConfig().model_dump())
    for flat in (whole, plain):
        flat["ledger.chain"] = flat["ledger.chain"] if flat["ledger.enabled"] else "off"
    out = {}
    for key, value in whole.items():
        if isinstance(value, bool) and not value and plain[key] is False:
            continue
        text = "unset" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        if plain[key] != value:
            text += f"; with --plain {'unset' if plain[key] is None else str(plain[key]).lower()}"
        out[key] = text
    return out


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def _run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", formatter_class=_RunHelp,
                       help="run a federation and write DIR/results.json and DIR/accuracy.png",
                       description="Runs the whole system by default: every round on a managed chain with a "
                                   "validator committee, member-level DP through SecAgg+ and a zero-knowledge proof "
                                   "per update. --plain runs plain federated learning instead.")
    p.add_argument("--config", type=Path, help="TOML file with FederationConfig fields; flags override it")
    p.add_argument("--plain", action="store_true",
                   help="start from plain federated learning (no chain, no DP, no proofs) instead of the whole "
                        "system; the config file and flags add to it")
    p.add_argument("--dataset", choices=DATASET_NAMES, metavar="NAME", help="one of %(choices)s")
    p.add_argument("--partition", help="iid | dirichlet:ALPHA | shards:K | natural")
    p.add_argument("--clients", type=int, help="number of members")
    p.add_argument("--fraction", type=float, help="share of members sampled each round")
    p.add_argument("--rounds", type=int, help="rounds to run")
    p.add_argument("--model", metavar="NAME",
                   help=f"one of {', '.join(MODEL_NAMES)}, or your own: path/to/file.py:factory or "
                        "package.module:factory, "
                        "called as factory(input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module")
    p.add_argument("--strategy", choices=STRATEGY_NAMES, metavar="NAME", help="server strategy: one of %(choices)s")
    p.add_argument("--optimizer", choices=["sgd", "adam"], help="local optimizer")
    p.add_argument("--local-epochs", type=float, dest="local_epochs", help="local epochs per round")
    p.add_argument("--local-steps", type=int, dest="local_steps", help="fixed local steps (overrides epochs)")
    p.add_argument("--batch-size", type=int, dest="batch_size", help="local minibatch size")
    p.add_argument("--lr", type=float, help="local learning rate")
    p.add_argument("--momentum", type=float, help="local SGD momentum")
    p.add_argument("--proximal-mu", type=float, dest="proximal_mu", help="FedProx proximal term")
    p.add_argument("--server-lr", type=float, dest="server_lr", help="server step size (unset: the strategy's own)")
    p.add_argument("--heterogeneity", type=float, help="spread of member compute budgets, 0..1")
    p.add_argument("--dropout", type=float, help="chance that a sampled member drops out of a round")
    p.add_argument("--max-samples", type=int, dest="max_samples", help="cap on samples (quick runs)")
    p.add_argument("--seed", type=int, help="fixes the public choices: data partition, model init, sampling")
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="also derive every secret (keys, DP noise, SecAgg+ and commitment randomness) from --seed, "
                        "so a run reproduces bit for bit: simulations and tests only (results.json and the round "
                        "evidence say so; refused with an external --chain URL). Default: secrets from os.urandom")
    p.add_argument("--out", metavar="DIR", help="output directory; running again on it resumes")
    p.add_argument("--baseline", action="store_true", default=None, help="also train centrally, same budget")
    p.add_argument("--no-batched", dest="batched", action="store_false", default=None,
                   help="train members one by one instead of vmap-batched")
    p.add_argument("--train-memory-mib", type=int, dest="train_memory_mib", metavar="MIB",
                   help="working memory of one block of the batched trainer: bounds a round's memory whatever "
                        "the cohort (default 256; the block fixes the rounding, so compare runs with the same value)")
    priv = p.add_argument_group("privacy (docs/privacy.md)")
    priv.add_argument("--dp", choices=["none", "record", "member"], dest="privacy.dp",
                      help="record: DP-SGD inside each member; member: distributed DP through secure aggregation")
    priv.add_argument("--epsilon", type=float, dest="privacy.epsilon", help="privacy budget over the whole run")
    priv.add_argument("--delta", type=float, dest="privacy.delta", help="the delta of (epsilon, delta)-DP")
    priv.add_argument("--clip-norm", type=float, dest="privacy.clip_norm",
                      help="L2 clip: per example (record) or per update (member)")
    priv.add_argument("--adaptive-clip", action="store_true", default=None, dest="privacy.adaptive_clip",
                      help="move the member-level clip toward --target-quantile of update norms")
    priv.add_argument("--target-quantile", type=float, dest="privacy.target_quantile")
    priv.add_argument("--secagg", action=argparse.BooleanOptionalAction, default=None, dest="privacy.secagg",
                      help="sum member-level updates through SecAgg+")
    priv.add_argument("--bits", type=_bits_arg, dest="privacy.bits",
                      help="bits per coordinate on the wire, 8..32, or auto (the fewest that hold the noised sum)")
    priv.add_argument("--compress", dest="privacy.compress", metavar="none|srht:RATIO",
                      help="member-level: send a subsampled randomized Hadamard sketch RATIO times shorter")
    priv.add_argument("--spare-releases", type=int, dest="privacy.spare_releases",
                      help="member-level releases planned beyond one per round for redone attempts (with --chain)")
    priv.add_argument("--secret-sampling", action="store_true", default=None, dest="privacy.secret_sampling",
                      help="claim amplification by subsampling (only if cohorts are not public)")
    p.add_argument("--chain", dest="ledger.chain", metavar="auto|memory|URL|off",
                   help="record, validate and settle every round on a ledger: auto = managed anvil, "
                        "memory = in-process py-evm, a JSON-RPC URL, or off")
    p.add_argument("--committee", type=int, dest="ledger.committee", help="validators per round (with --chain)")
    p.add_argument("--proofs", choices=["none", "update", "training"],
                   help="update: every survivor proves its secure-aggregation input well formed (Groth16)")
    p.add_argument("--attack", help="inject attacks: label_flip:F, sign_flip:F, boost:F[:S], free_ride:F, stale:F, "
                                    "mask_swap:F, inflate:F, impersonate:F, replay:F, malicious_aggregator, "
                                    "framing_aggregator, privacy_underreport, lazy_validator[:K]; faults: "
                                    "late_aggregator, silent_validator[:K] (comma-separated)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, round lines or table")
    for action in p._actions:  # `--epsilon EPSILON`, not `--epsilon PRIVACY.EPSILON`
        if action.metavar is None and action.nargs != 0 and action.choices is None and "." in action.dest:
            action.metavar = action.dest.rpartition(".")[2].upper()
    p.set_defaults(func=cmd_run)


_RUN_FIELDS = [
    "dataset", "partition", "clients", "fraction", "rounds", "model", "strategy", "optimizer", "local_epochs",
    "local_steps", "batch_size", "lr", "momentum", "proximal_mu", "server_lr", "heterogeneity", "dropout",
    "max_samples", "seed", "deterministic", "out", "baseline", "batched", "attack", "proofs", "privacy.dp",
    "privacy.epsilon", "privacy.delta", "privacy.clip_norm", "privacy.adaptive_clip", "privacy.target_quantile",
    "privacy.secagg", "privacy.bits", "privacy.secret_sampling", "privacy.spare_releases", "ledger.chain",
    "ledger.committee", "privacy.compress", "train_memory_mib",
]


def _bits_arg(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 8..32 or auto, got {value!r}") from None


def config_from_args(args: argparse.Namespace) -> FederationConfig:
    from fedledger.core.config import WHOLE_SYSTEM, load_config

    overrides: dict[str, Any] = {k: getattr(args, k) for k in _RUN_FIELDS}
    if overrides["ledger.chain"] == "off":
        overrides["ledger.chain"] = None
        overrides["ledger.enabled"] = False
    elif overrides["ledger.chain"] is not None:
        overrides["ledger.enabled"] = True
    cfg = load_config(args.config, overrides, base=None if args.plain else WHOLE_SYSTEM)
    check_privacy_flags(cfg, args)
    return cfg


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def check_privacy_flags(cfg: FederationConfig, args: argparse.Namespace) -> None:
    """Refuse privacy flags the run would ignore (no silent footguns: `--plain --epsilon 1` would train with no
    privacy at all). Settings from a config file are refused too when the file alone turns DP off; when a flag
    (--plain, --dp) turned it off they are only warned about."""
    import warnings

    from fedledger.core.config import privacy_keys_in, unused_privacy_settings
    from fedledger.privacy.outlook import PrivacyWarning

    flags = {k.partition(".")[2] for k in _RUN_FIELDS if k.startswith("privacy.") and getattr(args, k) is not None}
    turned_off_by_flag = args.plain or getattr(args, "privacy.dp") is not None
    from_file = privacy_keys_in(args.config) - flags
    refused = unused_privacy_settings(cfg.privacy, flags | (set() if turned_off_by_flag else from_file))
    if refused:
        key = refused[0]
        given = _flag(key) if key in flags else f"privacy.{key} in {args.config}"
        if cfg.privacy.dp == "none":
            raise ConfigError(f"{given} does nothing without DP: this run would train with no privacy at all; add "
                              "--dp record (DP-SGD inside each member) or --dp member (distributed DP), or drop it")
        raise ConfigError(f"{given} applies to member-level DP only (--dp member); --dp record would ignore it")
    ignored = unused_privacy_settings(cfg.privacy, from_file) if turned_off_by_flag else []
    if ignored:
        why = "DP is off" if cfg.privacy.dp == "none" else "it is for member-level DP only"
        warnings.warn(f"{args.config} sets privacy.{', privacy.'.join(ignored)}, not used: {why} in this run",
                      PrivacyWarning, stacklevel=2)


def privacy_outlook(sim: Any) -> Any:
    """The run's privacy outlook (fedledger.privacy.outlook), or None without DP."""
    from fedledger.privacy.outlook import member_outlook, record_outlook, record_secagg_outlook

    cfg = sim.cfg
    p = cfg.privacy
    if p.dp == "record" and p.secagg and sim.ddp is not None:  # one noise, shared by the members, per DP-SGD step
        return record_secagg_outlook(plan=sim.ddp.plan, counts=[int(c) for c in sim.pool.counts], rounds=cfg.rounds,
                                     epsilon=p.epsilon, delta=p.delta, d=sim.dim)
    if p.dp == "record":
        return record_outlook(counts=[int(c) for c in sim.pool.counts], batch_size=cfg.batch_size,
                              epochs=cfg.local_epochs, rounds=cfg.rounds, epsilon=p.epsilon, delta=p.delta,
                              d=sim.dim, clip_norm=p.clip_norm)
    if p.dp == "member" and sim.ddp is not None:
        plan = sim.ddp.plan
        return member_outlook(noise_multiplier=plan.noise_multiplier_actual, min_survivors=plan.min_survivors,
                              d=sim.dim, rounds=plan.rounds, epsilon=p.epsilon, delta=p.delta)
    return None


def check_out_dir(out: Path) -> None:
    """Refuse an --out that is a file or cannot be written, before any work is done."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create --out {out}: {e.strerror or e}") from None
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as e:
        raise ConfigError(f"cannot write to --out {out}: {e.strerror or e}") from None


LONG_RUN_S = 120  # runs modeled to take longer say so before they start


def describe_run(cfg: FederationConfig) -> str:
    """The run in one line, said before any work."""
    chain = f"chain {cfg.ledger.chain}" if cfg.ledger.enabled else "no chain"
    return (f"run: {cfg.rounds} rounds of {cfg.dataset} / {cfg.model} / {cfg.strategy}, {cfg.clients} members, "
            f"{chain}, dp {cfg.privacy.dp}, proofs {cfg.proofs} -> {cfg.out}")


def cmd_run(args: argparse.Namespace) -> int:
    from fedledger.cli.progress import RunProgress
    from fedledger.sim.estimate import estimate_run

    cfg = config_from_args(args)
    out = Path(cfg.out)
    check_out_dir(out)
    from fedledger.report.plots import accuracy_plot
    from fedledger.sim import Simulation
    from fedledger.sim.federation import write_results

    progress = RunProgress(cfg.rounds, quiet=args.quiet)
    progress.starting(describe_run(cfg))
    estimate = estimate_run(cfg)
    if estimate.total_s > LONG_RUN_S:
        progress.starting(f"{estimate.describe()}; --proofs none, fewer --rounds or --plain for a quicker look")
    sim = Simulation(cfg)
    if cfg.privacy.secagg and cfg.privacy.dp == "none" and sim.ddp is not None:
        from fedledger.privacy.outlook import secagg_alone_note

        progress.starting(secagg_alone_note(sim.ddp.plan.min_survivors))
    outlook = privacy_outlook(sim)
    if outlook is not None:
        progress.starting(outlook.summary)
        if outlook.warning is not None:
            import warnings

            from fedledger.privacy.outlook import PrivacyWarning

            warnings.warn(outlook.warning, PrivacyWarning, stacklevel=1)
    sim.clock.on_stage = progress.stage
    try:
        result = sim.run(out, on_round=progress.round_done, on_resume=progress.resumed)
    finally:
        progress.close()
    payload = result.to_json()
    write_results(out, payload)
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
    if "centralized_accuracy" in payload and "central_dp_accuracy" in payload:
        dp = payload["central_dp"]
        lines.append(
            f"non-private centralized {payload['centralized_accuracy']:.4f}   central DP {dp['accuracy']:.4f} "
            f"({dp['unit']} level, epsilon {dp['epsilon']:.3g}, same delta, steps and accountant)   fedledger "
            f"{payload['final_accuracy']:.4f}")
        lines.append(
            f"against non-private centralized, privacy and federation cost "
            f"{100 * (payload['centralized_accuracy'] - payload['final_accuracy']):.1f} points (ratio "
            f"{payload['accuracy_ratio']:.4f}); against central DP, federation costs "
            f"{100 * (dp['accuracy'] - payload['final_accuracy']):.1f} points (ratio "
            f"{payload['central_dp_ratio'] or 0:.4f})")
        from fedledger.privacy.cost import privacy_cost_note

        note = privacy_cost_note(payload)
        if note is not None:
            lines.append(note)
    elif "centralized_accuracy" in payload:
        lines.append(
            f"centralized (same budget) {payload['centralized_accuracy']:.4f}"
            f"   accuracy ratio {payload['accuracy_ratio']:.4f}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fedledger", description=__doc__.splitlines()[0], formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"fedledger {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _run_parser(sub)
    chain_cmd.register(sub)
    zk_cmd.register(sub)
    audit_cmd.register(sub)
    report_cmd.register(sub)
    watch_cmd.register(sub)
    export_cmd.register(sub)
    new_cmd.register(sub)
    account_cmd.register(sub)
    economics_cmd.register(sub)
    node_cmd.register(sub)
    testnet_cmd.register(sub)
    _help_everywhere(parser)
    return parser


def _help_everywhere(parser: argparse.ArgumentParser) -> None:
    """Every subcommand's help shows defaults (the run command keeps its own formatter)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if child.formatter_class is argparse.HelpFormatter:
                    child.formatter_class = _Help
                _help_everywhere(child)


def one_line(err: BaseException) -> FedLedgerError | None:
    """A fault outside fedledger's own errors that a user can meet (a node that stopped answering, a file
    that cannot be written), as the FedLedgerError to report; None for a bug (it keeps its traceback)."""
    seen: BaseException | None = err
    while seen is not None:  # the connection error may be the cause of what reached us
        module = type(seen).__module__
        if module.startswith(("requests", "urllib3", "http.client")) or isinstance(seen, ConnectionError) \
                or (module.startswith("web3") and "Connection" in type(seen).__name__):
            from fedledger.ledger.backends import unreachable_reason

            return LedgerError(f"the chain node stopped answering ({unreachable_reason(seen)}); what finished is "
                               "saved: run the same command again to resume")
        seen = seen.__cause__ or seen.__context__
    if isinstance(err, OSError) and err.filename is not None:
        return FedLedgerError(f"{err.strerror or type(err).__name__}: {err.filename}")
    return None


_warned: set[str] = set()


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """fedledger's own warnings as one `fedledger: warning:` line, each text once per process."""
    if not category.__module__.startswith("fedledger"):
        _default_showwarning(message, category, filename, lineno, file, line)
        return
    text = str(message)
    if text not in _warned:
        _warned.add(text)
        print(f"fedledger: warning: {text}", file=sys.stderr, flush=True)


_default_showwarning = warnings.showwarning


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args))
    except FedLedgerError as e:
        print(f"fedledger: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("fedledger: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:
        mapped = one_line(e)
        if mapped is None:
            raise
        print(f"fedledger: error: {mapped}", file=sys.stderr)
        return mapped.exit_code
    finally:
        warnings.showwarning = _default_showwarning


if __name__ == "__main__":
    sys.exit(main())
