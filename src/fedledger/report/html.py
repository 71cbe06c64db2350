"""`fedledger report DIR`: one self-contained HTML page describing a run.

The page is built from `DIR/results.json` (written by `fedledger run`) and, when the run had a
ledger, from the chain itself (`DIR/chain/`, reopened through `fedledger.ledger`): the chain is the
source of truth for finalized rounds, balances, reputation and slashing, so the report reads them
there and checks the chain's model hash of every round against results.json.

Self-contained means one file that works offline: CSS inline, no script, charts embedded as
base64 PNG data URIs, no external font, stylesheet, image or link. Every string that comes from
results.json or the chain is escaped with `html.escape` before it reaches the page.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from web3.exceptions import Web3Exception

from fedledger import __version__
from fedledger.core.errors import DataError, FedLedgerError, IntegrityError
from fedledger.privacy.cost import privacy_cost_note
from fedledger.report import charts
from fedledger.report.chain import ChainView, read_chain
from fedledger.report.scores import render_scores

REPORT_FILE = "report.html"
RESULTS_FILE = "results.json"
_ROUND_KEYS = ("round", "accuracy", "loss", "participants", "dropped", "bytes_up", "bytes_down")
_MANY_ROWS = 30  # longer tables fold into <details>

Cell = Any  # a value formatted by `_fmt`, or `Raw` markup the report built itself


class Raw(str):
    """Markup made by this module (already escaped where it holds data)."""


# ---------------------------------------------------------------------------------------------- input
def load_results(run_dir: Path) -> dict[str, Any]:
    """DIR/results.json, checked for the fields the report needs; DataError in one line otherwise."""
    if not run_dir.exists():
        raise DataError(f"run directory {run_dir} does not exist")
    if not run_dir.is_dir():
        raise DataError(f"{run_dir} is not a directory (give the run's --out directory)")
    path = run_dir / RESULTS_FILE
    if not path.is_file():
        raise DataError(f"{path} is missing: is {run_dir} the --out directory of a finished `fedledger run`?")
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path} cannot be read as JSON ({e})") from None
    if not isinstance(results, dict) or not isinstance(results.get("config"), dict):
        raise DataError(f"{path} has no `config` object; it is not a fedledger results file")
    rounds = results.get("rounds")
    if not isinstance(rounds, list) or not all(isinstance(r, dict) for r in rounds):
        raise DataError(f"{path} has no `rounds` list; it is not a fedledger results file")
    for r in rounds:
        missing = [k for k in _ROUND_KEYS if k not in r]
        if missing:
            raise DataError(f"{path}: round record {r.get('round', '?')} lacks {', '.join(missing)}")
        wrong = [k for k in _ROUND_KEYS if not _number(r[k], integer=k not in ("accuracy", "loss"))]
        if wrong:
            raise DataError(f"{path}: round record {r['round']} has non-numeric {', '.join(wrong)}")
    for where, block in (("", results), ("config.", results["config"])):
        for key in ("privacy", "ledger"):
            if block.get(key) is not None and not isinstance(block[key], dict):
                raise DataError(f"{path}: `{where}{key}` is not an object")
    for key in ("final_accuracy", "centralized_accuracy", "accuracy_ratio"):
        if results.get(key) is not None and not _number(results[key]):
            raise DataError(f"{path}: `{key}` is not a number")
    return results


def _number(x: Any, *, integer: bool = False) -> bool:
    if isinstance(x, bool):
        return False
    return isinstance(x, int) if integer else isinstance(x, (int, float))


def _chain_view(run_dir: Path, results: Mapping[str, Any]) -> tuple[ChainView | None, str | None]:
    """The chain as read now, or None and a note saying why it is not shown."""
    chain_dir = run_dir / "chain"
    ledger_cfg = results["config"].get("ledger") or {}
    chain = str(ledger_cfg.get("chain") or "auto")
    if "ledger" not in results and not chain_dir.is_dir():
        return None, None  # no ledger at all
    if chain == "memory":
        return None, ("the run used the in-process chain, which keeps no state after the run; "
                      "ledger figures below come from results.json")
    if not (chain_dir / "federation.json").is_file():
        return None, f"{chain_dir} holds no federation; ledger figures below come from results.json"
    try:
        return read_chain(run_dir, chain), None
    except (FedLedgerError, OSError, Web3Exception) as e:  # a node or state gone: report what results.json has
        return None, f"the chain could not be reopened ({e}); ledger figures below come from results.json"


@dataclass(frozen=True)
class AuditVerdict:
    """What `fedledger audit` says of the run, as the report shows it."""

    status: str  # "passed" | "failed" | "not run"
    detail: str

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def run_audit(run_dir: Path, results: Mapping[str, Any]) -> AuditVerdict:
    """Re-verify every finalized round from the chain and the blobs (`fedledger.protocol.audit`)."""
    chain = str((results["config"].get("ledger") or {}).get("chain") or "auto")
    if "ledger" not in results or results.get("ledger") is None:
        return AuditVerdict("not run", "no ledger: nothing was recorded to audit")
    if chain == "memory":
        return AuditVerdict("not run", "the in-process chain keeps no state after the run")
    from fedledger.protocol.audit import audit_run

    try:
        report = audit_run(run_dir, "auto" if chain in ("auto", "") else chain)
    except IntegrityError as e:
        return AuditVerdict("failed", str(e))
    except (FedLedgerError, OSError, Web3Exception) as e:
        return AuditVerdict("not run", f"the chain could not be audited ({e})")
    return AuditVerdict("passed", f"{len(report.rounds)} finalized rounds re-verified from the chain and the blobs "
                                  f"({report.checks} checks; aggregates recomputed in {len(report.recomputed)})")


# --------------------------------------------------------------------------------------- formatting
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 4) -> str:
    """A value as escaped text: floats to `digits` decimals, None as a dash."""
    if isinstance(value, Raw):
        return value
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return str(value)
    return _e(value)


def _g(value: Any) -> str:
    """A parameter value: floats with 6 significant digits, everything else as `_fmt`."""
    if isinstance(value, float) and not math.isnan(value):
        return _e(f"{value:.6g}")
    return _fmt(value)


def _mb(n: Any) -> str:
    return f"{int(n) / 1e6:.3f}"


def _tokens(x: float) -> str:
    return f"{x:,.4f}"


def _code(value: Any) -> Raw:
    return Raw(f"<code>{_e(value)}</code>")


def _table(headers: Sequence[str], rows: Iterable[Sequence[Cell]], *, cls: str = "", numeric_from: int = 1) -> Raw:
    rows = list(rows)
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            numeric = i >= numeric_from and isinstance(c, (int, float)) and not isinstance(c, bool)
            align = ' class="num"' if numeric else ""
            cells.append(f"<td{align}>{_fmt(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    table = f'<table class="{_e(cls)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    if len(rows) > _MANY_ROWS:
        table = f"<details><summary>show all {len(rows)} rows</summary>{table}</details>"
    return Raw(table)


def _kv(mapping: Mapping[str, Any]) -> Raw:
    """A key/value table; nested mappings become nested tables, lists are joined."""
    rows = []
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            cell = _kv(value) if value else Raw("&ndash;")
        elif isinstance(value, (list, tuple)):
            cell = Raw(", ".join(_g(v) for v in value)) if value else Raw("&ndash;")
        else:
            cell = Raw(_g(value))
        rows.append(f"<tr><th>{_e(key)}</th><td>{cell}</td></tr>")
    return Raw(f'<table class="kv"><tbody>{"".join(rows)}</tbody></table>')


def _img(png: bytes, alt: str) -> Raw:
    data = base64.b64encode(png).decode("ascii")
    return Raw(f'<img class="chart" alt="{_e(alt)}" src="data:image/png;base64,{data}">')


def _section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{_e(anchor)}"><h2>{_e(title)}</h2>{"".join(parts)}</section>'


def _p(text: str) -> str:
    return f"<p>{_e(text)}</p>"


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


# ----------------------------------------------------------------------------------------- sections
def _card(label: str, value: str, detail: str = "", cls: str = "") -> str:
    return (f'<div class="card {cls}"><div class="label">{_e(label)}</div><div class="value">{value}</div>'
            f'<div class="detail">{detail}</div></div>')


def _model_name(spec: Any) -> str:
    """A model spec as a reader names it: `net.py:build` for `/long/path/net.py:build`."""
    text = str(spec)
    path, sep, factory = text.rpartition(":")
    if sep and ("/" in path or "\\" in path):
        return f"{Path(path).name}:{factory}"
    return text


def _trained(cfg: Mapping[str, Any]) -> str:
    return (f"{_e(_model_name(cfg.get('model')))} on {_e(cfg.get('dataset'))}, {_e(cfg.get('clients'))} members "
            f"({_e(cfg.get('partition'))}), {_e(cfg.get('strategy'))}, {_e(cfg.get('rounds'))} rounds")


def _glance(res: Mapping[str, Any], chain: ChainView | None, audit: AuditVerdict | None) -> str:
    """The run at a glance: status, what was trained, accuracy against the baseline, privacy and its cost, the
    audit verdict, who was paid and who was slashed (and why)."""
    cfg, rounds = res["config"], res["rounds"]
    planned = cfg.get("rounds")
    done = len(rounds)
    finalized = chain.finalized_rounds if chain is not None else (res.get("ledger") or {}).get("finalized_rounds")
    complete = isinstance(planned, int) and done >= planned
    status = "complete" if complete else "stopped early" if done else "no round yet"
    detail = f"{done} of {_e(planned)} rounds" + (f", {_e(finalized)} finalized on chain" if finalized is not None
                                                  else "")
    cards = [_card("status", _e(status), detail, "good" if complete else "warn"),
             _card("trained", _e(_model_name(cfg.get("model"))), _trained(cfg))]

    acc = res.get("final_accuracy")
    central = res.get("centralized_accuracy")
    if central is not None:
        ratio = res.get("accuracy_ratio")
        cards.append(_card("accuracy", _fmt(acc), f"centralized baseline {_fmt(central)}: {_fmt(ratio)}&times; of it"))
    else:
        cards.append(_card("accuracy", _fmt(acc), "no centralized baseline (run with --baseline)"))

    privacy = res.get("privacy") or {}
    if privacy.get("unit") not in (None, "none"):
        spent, budget = privacy.get("epsilon_spent"), privacy.get("epsilon_budget")
        cost = (f"; it cost {_fmt(1 - float(res['accuracy_ratio']), 3)} of the baseline's accuracy (DP and "
                "federation together)" if res.get("accuracy_ratio") is not None else "")
        cards.append(_card("privacy", f"&epsilon; {_fmt(spent, 3)} of {_fmt(budget, 3)}",
                           f"{_e(privacy.get('unit'))}-level DP at &delta; {_g(privacy.get('delta'))}{cost}"))
    else:
        cards.append(_card("privacy", "none", "no differential privacy: updates are not protected", "warn"))

    if audit is not None:
        cls = {"passed": "good", "failed": "bad"}.get(audit.status, "warn")
        cards.append(_card("audit", _e(audit.status), _e(audit.detail), cls))

    if chain is not None:
        trainers = [m for m in chain.members if m.role == "trainer"]
        validators = [m for m in chain.members if m.role == "validator"]
        paid = [m for m in trainers if m.reward > 0]
        total = sum(m.reward for m in paid)
        low, high = (min(m.reward for m in paid), max(m.reward for m in paid)) if paid else (0.0, 0.0)
        pay = (f"{len(paid)} of {len(trainers)} trainers hold {total:.4g} reward tokens"
               + ((f" ({low:.4g} each)" if low == high else f" ({low:.4g} to {high:.4g} each)") if paid else "")
               + f"; validators {sum(m.reward for m in validators):.4g}")
        cards.append(_card("paid", f"{total:.4g} tokens", _e(pay)))
        slashed = [s for s in chain.slashing if s.event == "Slashed"]
        if slashed:
            who = "; ".join(f"{s.member}: {s.amount or 0:.4g} staked tokens in round {s.round} ({s.reason})"
                            for s in slashed[:6])
            more = f"; and {len(slashed) - 6} more" if len(slashed) > 6 else ""
            cards.append(_card("slashed", str(len(slashed)), _e(who + more), "bad"))
        else:
            cards.append(_card("slashed", "nobody", "no member lost stake", "good"))
    zk = res.get("zk") or {}
    keys = zk.get("keys") or {}
    if keys.get("development_only"):
        cards.append(_card("proofs", "development keys",
                           "single-party Groth16 setup: whoever ran it can forge proofs", "warn"))
    return f'<section id="glance" class="glance">{"".join(cards)}</section>'


def _time(res: Mapping[str, Any]) -> str:
    rounds = [r for r in res["rounds"] if isinstance(r.get("stages"), Mapping) and r["stages"]]
    if not rounds:
        return _section("time", "Time per stage", _p("The run recorded no per-stage times."))
    totals: dict[str, float] = {}
    for r in rounds:
        for k, v in r["stages"].items():
            totals[k] = totals.get(k, 0.0) + float(v)
    whole = sum(totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    rows = [(k, Raw(f"{v:.2f}"), Raw(f"{100 * v / whole:.1f}%")) for k, v in ranked]
    return _section(
        "time", "Time per stage",
        _img(charts.stages([r["round"] for r in rounds], [r["stages"] for r in rounds]), "seconds per stage per round"),
        _table(["stage", "seconds in all rounds", "share"], rows),
    )


def _proofs(res: Mapping[str, Any]) -> str:
    zk = res.get("zk") or {}
    per_round = [r for r in res["rounds"] if isinstance(r.get("proofs"), Mapping)]
    if not zk and not per_round:
        return _section("proofs", "Proofs", _p("No zero-knowledge proofs in this run (--proofs none)."))
    parts: list[str] = []
    keys = zk.get("keys") or {}
    if keys.get("development_only"):
        parts.append('<p class="bad"><b>Development keys.</b> The Groth16 keys come from a single-party setup: whoever '
                     "ran it knows the toxic waste and can forge proofs. Import ceremony keys "
                     "(<code>fedledger zk setup --zkey</code>) for anything of value.</p>")
    facts = {"circuit": keys.get("circuit"), "key setup": keys.get("kind")}
    if zk.get("proof_of_training"):
        facts["statement"] = "each update is E epochs of fixed-point gradient descent on the committed data"
    elif zk.get("update_spec"):
        facts["statement"] = ("each masked input is a well-formed update: entries in range, L2 norm and noise share "
                              "bounded, bound to the masked input by a random linear check")
    parts.append(_kv(facts))
    if per_round:
        made = sum(int(r["proofs"].get("made", 0)) for r in per_round)
        verified = sum(int(r["proofs"].get("verified", 0)) for r in per_round)
        rejected = sum(int(r["proofs"].get("rejected", 0)) for r in per_round)
        prove = sum(float(r["proofs"].get("prove_seconds", 0.0)) for r in per_round)
        seconds = sum(float(r.get("seconds", 0.0)) for r in per_round) or 1.0
        parts.append(_p(f"{made} proofs made, {verified} verified, {rejected} rejected; proving and verifying took "
                        f"{prove:.1f} s, {100 * prove / seconds:.0f}% of the rounds' time."))
        parts.append(_table(["round", "made", "verified", "rejected", "seconds", "linear check", "excluded"],
                            [(r["round"], r["proofs"].get("made"), r["proofs"].get("verified"),
                              r["proofs"].get("rejected"), r["proofs"].get("prove_seconds"),
                              r["proofs"].get("linear_check"), ", ".join(map(str, r["proofs"].get("excluded") or [])))
                             for r in per_round]))
    return _section("proofs", "Proofs", *parts)


def _summary(res: Mapping[str, Any], chain: ChainView | None) -> str:
    cfg = res["config"]
    rounds = res["rounds"]
    privacy = res.get("privacy") or {}
    facts: dict[str, Any] = {
        "dataset": cfg.get("dataset"),
        "partition": cfg.get("partition"),
        "model": cfg.get("model"),
        "strategy": cfg.get("strategy"),
        "members": cfg.get("clients"),
        "fraction sampled per round": cfg.get("fraction"),
        "rounds completed / planned": Raw(f"{len(rounds)} / {_fmt(cfg.get('rounds'))}"),
        "local training": Raw(
            f"{_fmt(cfg.get('optimizer'))}, lr {_g(cfg.get('lr'))}, batch {_fmt(cfg.get('batch_size'))}, "
            + (f"{_fmt(cfg.get('local_steps'))} steps" if cfg.get("local_steps") is not None
               else f"{_g(cfg.get('local_epochs'))} epochs")
        ) if cfg.get("optimizer") is not None else "the members' own code (not recorded by fedledger)",
        "dropout": cfg.get("dropout"),
        "seed": cfg.get("seed"),
        "final accuracy": Raw(_fmt(res.get("final_accuracy"))),
    }
    if rounds:
        best = max(rounds, key=lambda r: -1.0 if _nan(r["accuracy"]) else r["accuracy"])
        facts["best accuracy (round)"] = Raw(f"{_fmt(best['accuracy'])} ({_fmt(best['round'])})")
    if "centralized_accuracy" in res:
        facts["centralized accuracy, same budget"] = Raw(_fmt(res["centralized_accuracy"]))
        facts["accuracy ratio (federated / centralized)"] = Raw(_fmt(res.get("accuracy_ratio")))
    if res.get("central_dp"):
        facts["central DP, same epsilon, steps and accountant"] = Raw(_fmt(res["central_dp"].get("accuracy")))
    cost = privacy_cost_note(res)
    if cost is not None:
        facts["what privacy costs"] = cost
    facts["final model hash"] = _code(res.get("final_model_hash", ""))
    facts["privacy"] = (
        Raw(f"{_fmt(privacy.get('unit'))}-level DP, epsilon {_fmt(privacy.get('epsilon_spent'))} of "
            f"{_fmt(privacy.get('epsilon_budget'))} at delta {_g(privacy.get('delta'))}")
        if privacy.get("unit") not in (None, "none") else "none"
    )
    facts["secure aggregation"] = "yes" if privacy.get("secure_aggregation") else "no"
    if chain is not None:
        facts["ledger"] = Raw(f"task {chain.task_id}: {chain.finalized_rounds} rounds finalized on {_e(chain.backend)}")
    elif "ledger" in res:
        facts["ledger"] = Raw(f"{_fmt(res['ledger'].get('finalized_rounds'))} rounds finalized (results.json)")
    else:
        facts["ledger"] = "none"
    if rounds:
        facts["time in rounds (s)"] = Raw(f"{sum(float(r.get('seconds', 0.0)) for r in rounds):.1f}")
        facts["traffic up / down (MB)"] = Raw(
            f"{_mb(sum(r['bytes_up'] for r in rounds))} / {_mb(sum(r['bytes_down'] for r in rounds))}"
        )
    if res.get("resumed_from_round"):
        facts["resumed after round"] = res["resumed_from_round"]
    return _section("summary", "Summary", _kv(facts))


def _nan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _learning(res: Mapping[str, Any]) -> str:
    rounds = res["rounds"]
    if not rounds:
        return _section("accuracy", "Accuracy and loss per round", _p("No round was recorded."))
    png = charts.accuracy_loss(
        [r["round"] for r in rounds],
        [r["accuracy"] for r in rounds],
        [r["loss"] for r in rounds],
        centralized=res.get("centralized_accuracy"),
    )
    rows = [
        (r["round"], r["accuracy"], r["loss"], r.get("train_loss"), r.get("seconds"), r.get("aggregated", True),
         _code(r.get("model_hash", "")))
        for r in rounds
    ]
    table = _table(["round", "accuracy", "test loss", "train loss", "seconds", "aggregated", "model hash"], rows)
    return _section(
        "accuracy", "Accuracy and loss per round",
        _img(png, "accuracy and test loss per round"),
        _note("Accuracy and loss on the global test set after each round's aggregate; train loss is the mean local "
              "loss of the round's members. A round that is not aggregated kept the previous model."),
        table,
    )


def _privacy(res: Mapping[str, Any]) -> str:
    block = res.get("privacy") or {}
    rounds = res["rounds"]
    parts: list[str] = []
    eps = [r.get("epsilon_spent") for r in rounds]
    if block.get("unit") in (None, "none"):
        parts.append(_p("This run used no differential privacy: updates are protected by nothing beyond the protocol."))
    elif any(e is not None for e in eps):
        parts.append(_img(charts.epsilon([r["round"] for r in rounds], eps, budget=block.get("epsilon_budget")),
                          "epsilon spent per round"))
        parts.append(_table(["round", "epsilon spent so far"], [(r["round"], r.get("epsilon_spent")) for r in rounds]))
    amp = block.get("amplification_by_subsampling")
    overview: dict[str, Any] = {
        "privacy unit": block.get("unit"),
        "mechanism": block.get("mechanism"),
        "epsilon budget": block.get("epsilon_budget"),
        "delta": block.get("delta"),
        "epsilon spent": block.get("epsilon_spent"),
        "rounds accounted": block.get("rounds_accounted"),
        "amplification by subsampling": block.get("amplification_note") or ("claimed" if amp else "not claimed"),
        "quantization bits": block.get("quantization_bits"),
    }
    parts.append("<h3>Mechanism</h3>" + _kv(overview))
    accountant = block.get("accountant")
    parts.append("<h3>Accountant</h3>" + (_kv(accountant) if isinstance(accountant, Mapping) else _p("none")))
    params = block.get("parameters")
    parts.append("<h3>Parameters</h3>" + (_kv(params) if isinstance(params, Mapping) and params else _p("none")))
    secagg = block.get("secure_aggregation")
    parts.append("<h3>Secure aggregation</h3>" + (_kv(secagg) if isinstance(secagg, Mapping) else _p(_fmt(secagg))))
    known = {"unit", "mechanism", "epsilon_budget", "delta", "epsilon_spent", "rounds_accounted", "accountant",
             "parameters", "secure_aggregation", "amplification_by_subsampling", "amplification_note",
             "quantization_bits"}
    other = {k: v for k, v in block.items() if k not in known}
    if other:
        parts.append("<h3>Other fields</h3>" + _kv(other))
    return _section("privacy", "Privacy", *parts)


def _participation(res: Mapping[str, Any]) -> str:
    rounds = res["rounds"]
    if not rounds:
        return _section("participation", "Participation and traffic", _p("No round was recorded."))
    x = [r["round"] for r in rounds]
    survivors = [int(r.get("survivors", r["participants"])) for r in rounds]
    rows: list[Sequence[Cell]] = [
        (r["round"], r["participants"] + r["dropped"], r["participants"], r["dropped"], s, r.get("aggregated", True),
         Raw(_mb(r["bytes_up"])), Raw(_mb(r["bytes_down"])))
        for r, s in zip(rounds, survivors, strict=True)
    ]
    rows.append((Raw("<b>total</b>"), sum(r["participants"] + r["dropped"] for r in rounds),
                 sum(r["participants"] for r in rounds), sum(r["dropped"] for r in rounds), sum(survivors), Raw(""),
                 Raw(_mb(sum(r["bytes_up"] for r in rounds))), Raw(_mb(sum(r["bytes_down"] for r in rounds)))))
    return _section(
        "participation", "Participation and traffic",
        _img(charts.participation(x, [r["participants"] for r in rounds], survivors, [r["dropped"] for r in rounds]),
             "members who took part, dropped out and reached the aggregate per round"),
        _img(charts.traffic(x, [r["bytes_up"] for r in rounds], [r["bytes_down"] for r in rounds]),
             "bytes up and down per round"),
        _note("sampled: the round's cohort; took part: sampled members that trained and sent an update; dropped: "
              "sampled members that dropped out; survivors: members whose update is in the released aggregate "
              "(0 when too few survived to release it). Traffic counts what crosses the wire to and from the "
              "aggregator, secure-aggregation messages included."),
        _table(["round", "sampled", "took part", "dropped", "survivors", "aggregated", "MB up", "MB down"], rows),
    )


def _gas_table(gas: Mapping[str, Any]) -> Raw:
    rows = []
    for op in sorted(gas, key=lambda k: (k.startswith(("deploy:", "wire:")), k)):
        g = gas[op] if isinstance(gas[op], Mapping) else {}
        count, mean = g.get("count"), g.get("mean")
        total = count * mean if isinstance(count, (int, float)) and isinstance(mean, (int, float)) else None
        rows.append((op, count, _int(mean), _int(g.get("min")), _int(g.get("max")), _int(total)))
    return _table(["operation", "transactions", "mean gas", "min gas", "max gas", "total gas"], rows)


def _int(x: Any) -> Any:
    return round(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x) else x


def _ledger(res: Mapping[str, Any], chain: ChainView | None, note: str | None) -> str:
    ledger = res.get("ledger")
    if chain is None and ledger is None and note is None:
        return _section("ledger", "Ledger", _p("This run had no ledger: nothing was recorded on a chain, so there are "
                                               "no finalized rounds, balances, reputation or slashing to show."))
    parts: list[str] = []
    if note:
        parts.append(_note(note))
    by_round = {r["round"]: r for r in res["rounds"]}
    if chain is not None:
        dp = (res["config"].get("privacy") or {}).get("dp", "none")
        parts.append(_kv({
            "chain": chain.backend,
            "task": chain.task_id,
            "rounds finalized / opened": Raw(f"{chain.finalized_rounds} / {chain.current_round}"),
            "privacy spent on chain (epsilon)": chain.privacy_spent,
            "privacy budget on chain (epsilon)": chain.privacy_budget if dp != "none" else Raw("not set (no DP)"),
            "reward per round (reward tokens)": Raw(_tokens(chain.reward_per_round)),
            "committee size": chain.committee_size,
            "quorum": Raw(f"{chain.quorum_bps / 100:.2f}% of committee stake"),
        }))
        rows = []
        mismatches = 0
        for cr in chain.rounds:
            rec = by_round.get(cr.round)
            if rec is None:
                match: Cell = Raw("not in results.json")
            else:
                ok = str(rec.get("model_hash", "")).lower() == cr.model_hash.lower()
                mismatches += not ok
                match = Raw("yes") if ok else Raw('<b class="bad">NO</b>')
            rows.append((
                cr.round, cr.status, cr.attempts, cr.aggregator,
                Raw(f"{cr.votes_accept} / {cr.votes_reject}"),
                Raw(f"{cr.accept_weight:g} / {cr.committee_weight:g}"),
                cr.survivor_count, rec.get("chain_txs") if rec else None,
                Raw(_tokens(cr.contributor_pool)), Raw(_tokens(cr.claimed)), Raw(_tokens(cr.validator_reward)),
                cr.privacy_spent, match,
            ))
        parts.append("<h3>Rounds on chain</h3>")
        parts.append(_table(
            ["round", "status", "attempts", "aggregator", "votes accept / reject", "accept / committee stake",
             "survivors", "chain txs", "contributor pool", "claimed", "reward per validator", "privacy spent",
             "model hash matches results.json"], rows))
        parts.append(_note(
            "Rewards are minted at finalization behind a Merkle root: contributors' shares stay in the Rewards "
            "contract until each claims with its proof, so unclaimed shares do not show in balances below."
            + (f" {mismatches} round(s) carry a model hash on chain that differs from results.json."
               if mismatches else "")))
    elif ledger is not None:
        parts.append(_kv({"chain": ledger.get("backend"), "task": ledger.get("task_id"),
                          "rounds finalized": ledger.get("finalized_rounds"),
                          "privacy spent (epsilon)": ledger.get("privacy_spent")}))
        parts.append("<h3>Rounds</h3>")
        parts.append(_table(["round", "chain txs", "finalized"],
                            [(r["round"], r.get("chain_txs"), r.get("finalized")) for r in res["rounds"]]))

    gas = (ledger or {}).get("gas")
    if isinstance(gas, Mapping) and gas:
        parts.append("<h3>Gas per operation</h3>")
        parts.append(_note("Gas used by the run's own transactions, set-up and deployment included "
                           "(from results.json)."))
        parts.append(_gas_table(gas))

    if chain is not None:
        parts.append("<h3>Token balances</h3>")
        parts.append(_table(
            ["member", "address", "stake (utility)", "utility balance", "reward balance", "reputation"],
            [(m.label, _code(m.address), Raw(_tokens(m.stake)), Raw(_tokens(m.utility)), Raw(_tokens(m.reward)),
              m.reputation) for m in chain.members],
            numeric_from=2,
        ))
        parts.append("<h3>Reputation</h3>")
        parts.append(_reputation(chain))
        parts.append("<h3>Contribution scores and pay</h3>")
        parts.append(render_scores(chain.scores))
        parts.append("<h3>Slashing, rejected and reopened rounds</h3>")
        if chain.slashing:
            parts.append(_table(["block", "event", "round", "member", "amount (utility)", "reason"],
                                [(s.block, s.event, s.round, s.member,
                                  Raw(_tokens(s.amount)) if s.amount is not None else None, s.reason)
                                 for s in chain.slashing]))
        else:
            parts.append(_p("No slashing events: no member was slashed and no round was reopened or rejected."))

    contracts = chain.contracts if chain is not None else (ledger or {}).get("contracts")
    if isinstance(contracts, Mapping) and contracts:
        parts.append("<h3>Contracts</h3>")
        parts.append(_table(["contract", "address"], [(k, _code(v)) for k, v in contracts.items()]))
    return _section("ledger", "Ledger", *parts)


def _reputation(chain: ChainView) -> str:
    hist = chain.reputation
    if not hist.epochs:
        moved = [m for m in chain.members if m.reputation != chain.default_reputation]
        text = ("No reputation epoch was posted for this task"
                + (f"; every member holds the default score {chain.default_reputation}." if not moved else
                   "; scores that differ from the default come from other tasks (see the balances table)."))
        return _p(text)
    labels = list(hist.scores)
    series = []
    for label in labels:
        last: float = float(chain.default_reputation)
        line = []
        for s in hist.scores[label]:
            last = float(s) if s is not None else last
            line.append(last)
        series.append(line)
    rows = [[label, *hist.scores[label]] for label in labels]
    headers = ["member"] + [f"epoch {e} (round {hist.epoch_round.get(e, '?')})" for e in hist.epochs]
    return (_img(charts.reputation(list(hist.epochs), series, labels), "reputation per member over epochs")
            + _table(headers, rows))


def _configuration(res: Mapping[str, Any]) -> str:
    return _section("config", "Run configuration", _kv(res["config"]))


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;
padding:0 1.2em 3em;color:#1d2430;line-height:1.45}
header{border-bottom:2px solid #3b5b8c;margin-bottom:1em}
h1{font-size:1.5em;margin:.8em 0 .2em}h2{font-size:1.25em;border-bottom:1px solid #d5dbe5;padding-bottom:.2em;
margin-top:2em}h3{font-size:1.05em;margin:1.4em 0 .4em}
nav a{margin-right:1em;color:#3b5b8c}
table{border-collapse:collapse;margin:.5em 0;font-size:.88em}
th,td{border:1px solid #d5dbe5;padding:.25em .55em;text-align:left;vertical-align:top}
thead th{background:#eef2f8}table.kv>tbody>tr>th{background:#f6f8fb;font-weight:600;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.85em;word-break:break-all}
img.chart{max-width:100%;display:block;margin:.6em 0}
.note{color:#5a6472;font-size:.9em}.bad{color:#b00020}
footer{margin-top:3em;color:#5a6472;font-size:.85em}
.glance{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:.7em;margin:1em 0}
.card{border:1px solid #d5dbe5;border-left:5px solid #3b5b8c;border-radius:4px;padding:.5em .7em;background:#fbfcfe}
.card .label{font-size:.75em;text-transform:uppercase;letter-spacing:.05em;color:#5a6472}
.card .value{font-size:1.35em;font-weight:650;margin:.1em 0;overflow-wrap:anywhere}
.card .detail{font-size:.85em;color:#39424e;overflow-wrap:anywhere}
.card.good{border-left-color:#1b7f3b}.card.warn{border-left-color:#c07a00}.card.bad{border-left-color:#b00020}
"""


def render(results: Mapping[str, Any], *, chain: ChainView | None = None, chain_note: str | None = None,
           audit: AuditVerdict | None = None) -> str:
    """The whole page as a string (pure: no file or chain access)."""
    cfg = results["config"]
    title = (f"fedledger run: {cfg.get('dataset', '?')} / {_model_name(cfg.get('model', '?'))} / "
             f"{cfg.get('strategy', '?')}")
    nav = "".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (("summary", "summary"), ("accuracy", "accuracy &amp; loss"), ("privacy", "privacy"),
                     ("proofs", "proofs"), ("time", "time"), ("participation", "participation"),
                     ("ledger", "ledger"), ("config", "configuration"))
    )
    body = "".join((
        _glance(results, chain, audit),
        _summary(results, chain),
        _learning(results),
        _privacy(results),
        _proofs(results),
        _time(results),
        _participation(results),
        _ledger(results, chain, chain_note),
        _configuration(results),
    ))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><nav>{nav}</nav></header>"
        f"{body}"
        f"<footer>Written by fedledger {_e(__version__)} from results.json"
        f"{' and the chain' if chain is not None else ''}.</footer>"
        "</body></html>\n"
    )


def write_report(run_dir: Path, out: Path | None = None, *, audit: bool = False) -> Path:
    """Write the run's HTML report (default DIR/report.html) and return its path. `audit`: re-verify the run
    from the chain and the blobs first and show the verdict at the top."""
    return build_report(run_dir, out, audit=audit)[0]


def build_report(run_dir: Path, out: Path | None = None, *, audit: bool = True) -> tuple[Path, AuditVerdict | None]:
    """`write_report`, also returning the audit verdict (None when `audit` is False)."""
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    verdict = run_audit(run_dir, results) if audit else None
    chain, note = _chain_view(run_dir, results)
    page = render(results, chain=chain, chain_note=note, audit=verdict)
    out = Path(out) if out is not None else run_dir / REPORT_FILE
    if out.is_dir():
        raise DataError(f"{out} is a directory; give a file name for the report")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out, verdict


__all__ = ["AuditVerdict", "build_report", "load_results", "render", "run_audit", "write_report"]
