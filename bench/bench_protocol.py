"""Protocol benchmarks (issue 7): accuracy under attack, protocol overhead, accuracy vs centralized, stages.

Every run is an in-process `Simulation` on digits with a fresh temporary output directory (a chain run
starts its own managed anvil there). Ratios compare two measurements taken in the same run of this
module, on a shared 2-core machine, so read seconds as pessimistic and ratios as the figure.

1. `attacks`: each member attack (label_flip, sign_flip, boost, free_ride, stale) with 10% and 30% of
   the members attacking, under fedavg, median, trimmed_mean and member-level DP through SecAgg+ (where
   clipping is the bound), as accuracy and accuracy / the same defence's no-attack accuracy (median over
   seeds); plus the role attacks on a chain run (malicious aggregator, lazy validators, committee of 3), and
   the aggregator attacks under member-level DP through SecAgg+ (tampered model, framed trainer, privacy spent
   under-reported), where validators recompute the round from the signed transcript.
2. `overhead`: wall seconds per round of the same federation run plain, on a chain, on a chain with
   member-level DP and SecAgg+, and (small model, few rounds) with update proofs too; ratios to plain.
3. `vs_centralized`: accuracy / centralized accuracy (same model, same examples processed) for the full
   protocol configurations.
4. `stages`: median seconds per stage of a round (`RoundRecord.stages`) for 10 and 100 trainers, and the
   default round (`fedledger run --config examples/demo.toml`: 20 members, member-level DP through SecAgg+,
   update proofs, a committee of 3 on anvil) before and after issues 11 and 12: this checkout and the src/ of
   bench/before.py's BEFORE_COMMIT, each in a fresh process (bench/protocol_round.py), interleaved, with the
   ratios after / before of the round's wall and CPU seconds and of its validation stage (issue 11's target:
   validation recomputes the sum and verifies every proof, and the round is at most 15% slower for it).

`python -m bench.bench_protocol [--quick] [--only PART ...]` prints the JSON; `bench/run.py --only protocol`
writes bench/results/protocol.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from bench.before import BEFORE_COMMIT, ROOT, before_src
from fedledger.core.config import WHOLE_SYSTEM, build_config
from fedledger.core.errors import FedLedgerError
from fedledger.sim import Simulation
from fedledger.sim.federation import RunResult

STAGES = ("training", "privacy", "proofs", "secagg", "chain", "validation")
MEMBER_ATTACKS = ("label_flip", "sign_flip", "boost", "free_ride", "stale")
FRACTIONS = (0.1, 0.3)
CHAIN = {"enabled": True, "chain": "auto", "committee": 3}
# Member-level DP as in docs/privacy.md: 20-bit SecAgg+, a clip norm that keeps the update's direction on
# digits. With 10-20 members the noise share is large, so epsilon is 16 (8 loses about a quarter of the
# accuracy at 20 members; member-level DP is meant for hundreds of members).
DP = {"dp": "member", "secagg": True, "epsilon": 16.0, "bits": 20, "clip_norm": 0.3}

# The federation every accuracy figure uses: digits, 20 members, Dirichlet(0.5), MLP (9,610 parameters).
DIGITS = {"dataset": "digits", "partition": "dirichlet:0.5", "clients": 20, "model": "mlp", "local_epochs": 2,
          "lr": 0.1, "batch_size": 16}
# Small enough for Groth16 update proofs every round: logistic regression (650 parameters, one 1,024-entry chunk).
DIGITS_LOGREG = {**DIGITS, "clients": 10, "model": "logreg"}
DEFENCES: dict[str, dict[str, Any]] = {
    "fedavg": {},
    "median": {"strategy": "median"},
    # trims 30% from each end per coordinate: covers up to 30% attackers (Yin et al., ICML 2018, needs beta >= F)
    "trimmed_mean": {"strategy": "trimmed_mean", "trim_fraction": 0.3},
    "dp_member_secagg": {"privacy": DP},
}


def _run(cfg: dict[str, Any], *, keep: bool = False) -> tuple[RunResult, float, Path | None]:
    """One run in a fresh output directory: (result, wall seconds including set-up, the directory if kept)."""
    start = time.perf_counter()
    directory = Path(tempfile.mkdtemp(prefix="bench-protocol-"))
    try:
        result = Simulation(build_config(cfg)).run(directory)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    wall = time.perf_counter() - start
    print(f"  {_label(cfg)}: {wall:.1f} s, accuracy {result.final_accuracy:.3f}", file=sys.stderr, flush=True)
    if keep:
        return result, wall, directory
    shutil.rmtree(directory, ignore_errors=True)
    return result, wall, None


def _label(cfg: dict[str, Any]) -> str:
    """A short description of a run for the progress lines on stderr."""
    parts = [f"{cfg['clients']}x{cfg['model']}", f"{cfg['rounds']}r", cfg.get("strategy", "fedavg")]
    if cfg.get("ledger", {}).get("enabled"):
        parts.append("chain")
    if cfg.get("privacy", {}).get("dp", "none") != "none":
        parts.append("dp-" + cfg["privacy"]["dp"] + ("+secagg" if cfg["privacy"].get("secagg") else ""))
    if cfg.get("proofs", "none") != "none":
        parts.append("proofs-" + cfg["proofs"])
    if cfg.get("attack"):
        parts.append("attack=" + cfg["attack"])
    return " ".join(parts) + f" seed {cfg.get('seed', 0)}"


def _epsilon(record: Any) -> float | None:
    """The record's privacy spent (`epsilon_spent`; `epsilon` before the round protocol renamed it)."""
    return getattr(record, "epsilon_spent", getattr(record, "epsilon", None))


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 4)


# -- 1. attacks ----------------------------------------------------------------------------------------
def member_attacks(quick: bool) -> dict[str, Any]:
    seeds = [0] if quick else [0, 1, 2]
    rounds = 10 if quick else 20
    defences = {k: DEFENCES[k] for k in (("fedavg", "median") if quick else DEFENCES)}
    attacks = ("label_flip", "sign_flip") if quick else MEMBER_ATTACKS
    table: dict[str, Any] = {}
    for name, defence in defences.items():
        cells: dict[str, Any] = {}
        # member-level DP through SecAgg+ is 5-10x slower per run: two seeds
        defence_seeds = seeds[:2] if name == "dp_member_secagg" else seeds
        for attack in ("none", *(f"{a}:{f}" for a in attacks for f in FRACTIONS)):
            accs = []
            for seed in defence_seeds:
                spec = "" if attack == "none" else attack
                cfg = {**DIGITS, **defence, "rounds": rounds, "seed": seed, "attack": spec}
                try:
                    accs.append(_run(cfg)[0].final_accuracy)
                except FedLedgerError as e:  # e.g. a non-finite loss: report it, do not hide the other cells
                    cells[attack] = {"error": str(e)}
                    break
            else:
                cells[attack] = {"accuracy": _r(_median(accs)), "per_seed": [_r(a) for a in accs]}
        clean = cells["none"].get("accuracy")
        for cell in cells.values():
            if "accuracy" in cell:
                cell["ratio_to_no_attack"] = _ratio(cell["accuracy"], clean)
        table[name] = cells
    return {
        "federation": {**DIGITS, "rounds": rounds, "seeds": seeds, "seeds_dp_member_secagg": seeds[:2],
                       "boost_factor": 10.0},
        "defences": defences,
        "accuracy": table,
    }


def role_attacks(quick: bool, parts: tuple[str, ...] = ("plain", "secure")) -> dict[str, Any]:
    from fedledger.protocol.audit import audit_run

    rounds = 3 if quick else 20
    specs = ["none", "malicious_aggregator,lazy_validator:1"]
    if not quick:
        specs[1:1] = ["malicious_aggregator", "lazy_validator:1"]
        specs.append("malicious_aggregator,lazy_validator:3")  # the whole committee lazy: tampering gets through
    # the same role attacks when updates are hidden: member-level DP through SecAgg+ (validators recompute the
    # round from the signed transcript in the evidence)
    secure_specs = ["malicious_aggregator", "framing_aggregator", "privacy_underreport"]
    if not quick:
        secure_specs.insert(0, "none")
    # Every rejected attempt was unmasked, so it is a release the noise must be planned for: an attacking
    # aggregator drawn in about a third of the rounds needs more than the default 2 spare releases (the run
    # stops at the third rejection: "privacy spent above the round's bound"). One spare per round covers it.
    secure = {"privacy": {**DP, "spare_releases": rounds}}
    runs = [(spec, spec, {}) for spec in specs] if "plain" in parts else []
    if "secure" in parts:
        runs += [(spec, f"{spec} (member DP + SecAgg+)", secure) for spec in secure_specs]
    cells: dict[str, Any] = {}
    for spec, label, extra in runs:
        cfg = {**DIGITS, "rounds": rounds, "ledger": CHAIN, "attack": "" if spec == "none" else spec, **extra}
        try:
            res, wall, out = _run(cfg, keep=True)
        except FedLedgerError as e:  # e.g. a round rejected MAX_ATTEMPTS times: the run stops, which is a result
            cells[label] = {"error": f"{type(e).__name__}: {e}"}
            print(f"  role attack {label}: {e}", file=sys.stderr, flush=True)
            continue
        assert out is not None
        try:
            audit_run(out)
            audit = "passes"
        except FedLedgerError as e:
            audit = f"fails: {e}"
        finally:
            shutil.rmtree(out, ignore_errors=True)
        attempts = [r.attempts or 1 for r in res.rounds]
        slashed = (res.ledger or {}).get("slashed", [])
        cells[label] = {
            "accuracy": _r(res.final_accuracy),
            "rounds_finalized": (res.ledger or {}).get("finalized_rounds"),
            "rounds": len(res.rounds),
            "attempts_total": sum(attempts),
            "rounds_redone": sum(a > 1 for a in attempts),
            "audit": audit,
            "slashed": sorted({f"{x['reason']} (round {x['round']})" for x in slashed}),
            "wall_seconds": round(wall, 2),
        }
    for suffix in ("", " (member DP + SecAgg+)"):
        clean = cells.get("none" + suffix, {}).get("accuracy")
        for label, cell in cells.items():
            if "accuracy" in cell and label.endswith(suffix) and (suffix or "(" not in label):
                cell["ratio_to_no_attack"] = _ratio(cell["accuracy"], clean)
    return {"federation": {**DIGITS, "rounds": rounds, "ledger": CHAIN, "strategy": "fedavg",
                           "privacy_secure_rows": secure["privacy"]}, "runs": cells}


# -- 2 and 3. overhead and accuracy vs centralized -----------------------------------------------------
def _summary(runs: list[tuple[RunResult, float]]) -> dict[str, Any]:
    """Seconds per round over every round of every repetition; accuracy figures from the first repetition."""
    res = runs[0][0]
    per_round = [r.seconds for result, _ in runs for r in result.rounds]
    proofs = [r.proofs for result, _ in runs for r in result.rounds if r.proofs]
    out = {
        "repetitions": len(runs),
        "rounds": len(res.rounds),
        "seconds_per_round_median": round(statistics.median(per_round), 4),
        "seconds_per_round_min": round(min(per_round), 4),
        "seconds_per_round_max": round(max(per_round), 4),
        # wall less the rounds: data, model, proving keys, chain deployment and registration, checkpoints, and
        # the centralized baseline
        "outside_rounds_seconds_median": round(statistics.median(w - sum(r.seconds for r in x.rounds)
                                                                 for x, w in runs), 2),
        "wall_seconds_median": round(statistics.median(w for _, w in runs), 2),
        "final_accuracy": _r(res.final_accuracy),
        "centralized_accuracy": _r(res.centralized_accuracy),
        "accuracy_ratio_vs_centralized": _r(res.accuracy_ratio),
        "rounds_finalized": (res.ledger or {}).get("finalized_rounds"),
        "epsilon": _r(_epsilon(res.rounds[-1])),
    }
    if proofs:
        out["proofs_per_round"] = proofs[-1]["made"]
        out["prove_seconds_per_round_median"] = round(statistics.median(p["prove_seconds"] for p in proofs), 3)
    return out


def _overhead(base: dict[str, Any], variants: dict[str, dict[str, Any]], repetitions: int) -> dict[str, Any]:
    """Each variant `repetitions` times, interleaved (a b c a b c) so load spikes on the shared machine spread
    over all of them."""
    runs: dict[str, list[tuple[RunResult, float]]] = {name: [] for name in variants}
    for _ in range(repetitions):
        for name, changes in variants.items():
            res, wall, _ = _run({**base, **changes, "baseline": not runs[name]})
            runs[name].append((res, wall))
    table = {name: _summary(r) for name, r in runs.items()}
    plain = table["a_plain"]["seconds_per_round_median"]
    for row in table.values():
        row["ratio_to_plain"] = _ratio(row["seconds_per_round_median"], plain)
    return {"federation": base, "runs": table}


def overhead(quick: bool) -> dict[str, Any]:
    # the whole system as `fedledger run` runs it by default, less nothing: trainers also claim their rewards
    # on chain after the last round (outside the rounds, so in `outside_rounds_seconds`)
    full = {"ledger": {**CHAIN, "claim_rewards": True}, "privacy": DP}
    variants = {"a_plain": {}, "b_chain": {"ledger": CHAIN}, "c_chain_dp_secagg": full}
    mlp = _overhead({**DIGITS, "rounds": 3 if quick else 20}, variants, 1)
    small = _overhead({**DIGITS_LOGREG, "clients": 3 if quick else 10, "rounds": 1 if quick else 4},
                      {**variants, "d_chain_dp_secagg_proofs": {**full, "proofs": "update"}}, 1)
    return {"mlp_20_members": mlp, "logreg_with_proofs": small}


def vs_centralized(over: dict[str, Any]) -> dict[str, Any]:
    """The full-protocol runs of `overhead` were run with baseline=True: their accuracy ratios."""
    pick = {
        "mlp_20_members_c_chain_dp_secagg": over["mlp_20_members"]["runs"]["c_chain_dp_secagg"],
        "mlp_20_members_a_plain": over["mlp_20_members"]["runs"]["a_plain"],
        "logreg_d_chain_dp_secagg_proofs": over["logreg_with_proofs"]["runs"]["d_chain_dp_secagg_proofs"],
        "logreg_a_plain": over["logreg_with_proofs"]["runs"]["a_plain"],
    }
    keys = ("final_accuracy", "centralized_accuracy", "accuracy_ratio_vs_centralized", "epsilon")
    return {name: {k: run[k] for k in keys} for name, run in pick.items()}


def epsilon_sweep(quick: bool) -> dict[str, Any]:
    """Member-level DP through SecAgg+ (no chain) at several budgets, with the centralized baseline."""
    out = {}
    for eps in ((16.0,) if quick else (4.0, 8.0, 16.0, 50.0)):
        res, _, _ = _run({**DIGITS, "rounds": 5 if quick else 20, "baseline": True,
                             "privacy": {**DP, "epsilon": eps}})
        out[f"epsilon_{eps:g}"] = {"final_accuracy": _r(res.final_accuracy),
                                   "accuracy_ratio_vs_centralized": _r(res.accuracy_ratio)}
    return out


# -- 4. stages -----------------------------------------------------------------------------------------
def stage_split(records: list[Any]) -> dict[str, Any]:
    """Median seconds per stage over rounds (null for a stage no round reported) and the unattributed rest."""
    stages = {}
    for key in STAGES:
        stages[key] = _r(_median([r.stages[key] for r in records if r.stages and key in r.stages]), 4)
    unknown = sorted(set().union(*(r.stages or {} for r in records)) - set(STAGES))
    rest = _median([r.seconds - sum((r.stages or {}).values()) for r in records])
    return {
        "stages_median_seconds": stages,
        "other_stage_keys": unknown,
        "round_seconds_median": _r(_median([r.seconds for r in records])),
        "unattributed_seconds_median": _r(rest),
        "stages_reported": any(r.stages for r in records),
        # the provers' own wall seconds per round (RoundRecord.proofs): proving runs inside SecAgg+'s screen step
        # (before the survivor list is fixed), so a clock that times SecAgg+ as a whole counts it there
        "prove_seconds_median": _r(_median([r.proofs["prove_seconds"] for r in records if r.proofs])),
    }


def stages(quick: bool) -> dict[str, Any]:
    """Time per round by stage for 10 and 100 trainers: the full protocol with update proofs (few rounds, they
    take about 2 s per member per round), and the same without proofs over more rounds."""
    out: dict[str, Any] = {}
    base = {**DIGITS_LOGREG, "partition": "iid", "ledger": CHAIN, "privacy": DP}
    # (trainers, label, changes, rounds); 100 members prove for about 200 s a round on 2 cores: one round
    plan = [(10, "full_with_proofs", {"proofs": "update"}, 2), (100, "full_with_proofs", {"proofs": "update"}, 1),
            (10, "chain_dp_secagg", {}, 5), (100, "chain_dp_secagg", {}, 5)]
    if quick:
        plan = [(3, "full_with_proofs", {"proofs": "update"}, 1), (10, "chain_dp_secagg", {}, 2)]
    for trainers, label, changes, rounds in plan:
        res, wall, _ = _run({**base, **changes, "clients": trainers, "rounds": rounds})
        out[f"{trainers}_trainers_{label}"] = {
            "trainers": trainers, "rounds": rounds, **stage_split(res.rounds), "wall_seconds": round(wall, 2),
            "final_accuracy": _r(res.final_accuracy),
        }
    return {"federation": {**base, "proofs": "update or none, see keys"}, "runs": out,
            "default_round_before_and_after": default_round(quick)}


#: issue 11: validation that recomputes the SecAgg+ sum and verifies every proof may cost at most this much
ROUND_SLOWDOWN_TARGET = 1.15
ROUND_TIMEOUT = 1_500  # seconds per run of the default configuration


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def default_config(rounds: int) -> dict[str, Any]:
    """`fedledger run --config examples/demo.toml` (the whole system with the demo's task) over `rounds` rounds,
    without the centralized baseline (outside the rounds). Only keys both versions' FederationConfig accept."""
    demo = tomllib.loads((ROOT / "examples" / "demo.toml").read_text())
    return _merge(WHOLE_SYSTEM, {**demo, "rounds": rounds, "baseline": False})


def _subprocess_run(cfg: dict[str, Any], src: Path) -> dict[str, Any]:
    """bench/protocol_round.py on `src` in its own process group (killed whole on timeout: it and the anvil
    node it started), with a fresh output directory."""
    directory = Path(tempfile.mkdtemp(prefix="bench-protocol-round-"))
    env = {**os.environ, "PYTHONPATH": str(src)}
    load = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "protocol_round.py"), json.dumps(cfg),
                             str(directory)], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=ROUND_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"error": f"did not finish within {ROUND_TIMEOUT} s"}
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    stamp = {"load_average_1_5_15": {"before": [round(x, 2) for x in load],
                                     "after": [round(x, 2) for x in os.getloadavg()]},
             "process_wall_seconds": round(time.perf_counter() - start, 2)}
    if proc.returncode != 0:
        return {**stamp, "error": f"exit {proc.returncode}: {err.strip()[-800:]}"}
    return {**stamp, **json.loads(out.strip().splitlines()[-1])}


def _version_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over every round of every run (CPU seconds: rounds 2 on, round 1 also counts the set-up)."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return {"error": [r.get("error") for r in runs]}
    rounds = [x for r in good for x in r["rounds"]]
    stages = {key: _r(_median([x["stages"].get(key, 0.0) for x in rounds])) for key in STAGES}
    unknown = sorted(set().union(*(x["stages"] for x in rounds)) - set(STAGES))
    return {
        "runs": len(good),
        "rounds_measured": len(rounds),
        "stages_median_seconds": stages,
        "other_stage_keys": unknown,
        "round_seconds_median": _r(_median([x["seconds"] for x in rounds])),
        "round_seconds_each": [_r(x["seconds"], 2) for x in rounds],
        "unattributed_seconds_median": _r(_median([x["seconds"] - sum(x["stages"].values()) for x in rounds])),
        "round_cpu_seconds_median": _r(_median([x["cpu_seconds"] for x in rounds if x["round"] > 1])),
        "prove_seconds_median": _r(_median([x["prove_seconds"] for x in rounds])),
        "proofs_per_round": _median([x["proofs_made"] for x in rounds]),
        "attempts_total": sum(x["attempts"] or 1 for x in rounds),
        "rounds_finalized": [r["rounds_finalized"] for r in good],
        "slashed": [r["slashed"] for r in good],
        "final_accuracy": [_r(r["final_accuracy"]) for r in good],
        "run_wall_seconds": [_r(r["wall_seconds"], 1) for r in good],
        "load_average_1_5_15": [r["load_average_1_5_15"] for r in good],
        "errors": [r["error"] for r in runs if "error" in r],
    }


def default_round(quick: bool) -> dict[str, Any]:
    """The default round after (this checkout) and before (BEFORE_COMMIT's src/), each `repetitions` times in a
    fresh process, interleaved (after, before, after, before) so that load on the shared machine spreads over
    both."""
    rounds, repetitions = (1, 1) if quick else (3, 2)
    cfg = default_config(rounds)
    if quick:
        cfg = {**cfg, "clients": 4}
    try:
        versions = {"after": ROOT / "src", "before": before_src()}
    except (OSError, subprocess.CalledProcessError) as e:
        return {"config": cfg, "error": f"the before code is unavailable: {e}"}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in versions}
    for _ in range(repetitions):
        for name, src in versions.items():
            res = _subprocess_run(cfg, src)
            runs[name].append(res)
            print(f"  default round {name}: " + (res.get("error") or
                  f"{[round(x['seconds'], 1) for x in res['rounds']]} s per round"), file=sys.stderr, flush=True)
    table = {name: _version_summary(r) for name, r in runs.items()}
    after, before = table["after"], table["before"]
    ratios: dict[str, Any] = {}
    if "error" not in after and "error" not in before:
        ratios = {
            "round_seconds_after_over_before": _ratio(after["round_seconds_median"], before["round_seconds_median"]),
            "round_cpu_seconds_after_over_before": _ratio(after["round_cpu_seconds_median"],
                                                          before["round_cpu_seconds_median"]),
            "validation_seconds_after_over_before": _ratio(after["stages_median_seconds"]["validation"],
                                                           before["stages_median_seconds"]["validation"]),
            "stage_seconds_after_minus_before": {
                k: _r((after["stages_median_seconds"][k] or 0.0) - (before["stages_median_seconds"][k] or 0.0))
                for k in STAGES},
        }
        # what the new validation work (recompute the sum and the model, verify every proof) adds to a round, as
        # a share of the round before and after: the target's question, apart from the stages issue 11 also changed
        added = (after["stages_median_seconds"]["validation"] or 0.0) - (before["stages_median_seconds"]["validation"]
                                                                         or 0.0)
        ratios["validation_added_seconds"] = _r(added)
        ratios["validation_added_over_before_round"] = _ratio(added, before["round_seconds_median"])
        ratios["validation_added_over_after_round"] = _ratio(added, after["round_seconds_median"])
        ratios["target_round_at_most_after_over_before"] = ROUND_SLOWDOWN_TARGET
        ratios["target_met_wall"] = ratios["round_seconds_after_over_before"] <= ROUND_SLOWDOWN_TARGET
        if ratios["round_cpu_seconds_after_over_before"] is not None:
            ratios["target_met_cpu"] = ratios["round_cpu_seconds_after_over_before"] <= ROUND_SLOWDOWN_TARGET
    return {"config": cfg, "rounds_per_run": rounds, "repetitions": repetitions,
            "before_commit": BEFORE_COMMIT, "harness": "bench/protocol_round.py, torch on one thread",
            "after": after, "before": before, **ratios}


# -- all -----------------------------------------------------------------------------------------------
def _stamp() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):  # a `git archive` snapshot of a commit: it says which
        marker = Path(__file__).parent.parent / ".commit"
        commit = marker.read_text().strip() if marker.exists() else None
    return {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "git_commit": commit,
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]}


PARTS = ("attacks", "overhead", "stages")


def run(quick: bool = False, only: tuple[str, ...] = PARTS) -> dict[str, Any]:
    """One torch thread: on this shared 2-core machine two intra-op threads competing with other jobs made a
    plain round 50x slower (1.35 s vs 0.027 s for 20 members), which would swamp every ratio."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_parts(quick, only)
    finally:
        torch.set_num_threads(threads)


def _run_parts(quick: bool, only: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"torch_threads": 1}
    timings: dict[str, float] = {}

    def part(name: str, fn: Any) -> None:
        if name not in only:
            return
        start = time.perf_counter()
        print(f"[protocol] {name} ...", file=sys.stderr, flush=True)
        try:
            fn()
        except Exception as e:  # one broken part must not lose the others' figures
            import traceback

            traceback.print_exc()
            out[name] = {"error": f"{type(e).__name__}: {e}", **_stamp()}
        timings[name] = round(time.perf_counter() - start, 1)

    def attacks() -> None:
        out["attacks"] = {"member": member_attacks(quick), "role": role_attacks(quick), **_stamp()}

    def over() -> None:
        figures = overhead(quick)
        out["overhead"] = {**figures, **_stamp()}
        out["vs_centralized"] = {**vs_centralized(figures), "dp_member_secagg_epsilon_sweep": epsilon_sweep(quick)}

    def stage() -> None:
        out["stages"] = {**stages(quick), **_stamp()}

    part("attacks", attacks)
    part("overhead", over)
    part("stages", stage)
    out["part_seconds"] = timings
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", action="append", choices=PARTS)
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick, only=tuple(args.only or PARTS)), indent=2))
