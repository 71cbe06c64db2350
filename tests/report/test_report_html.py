"""`fedledger report DIR`: one offline HTML page built from a real run (and its chain, when it had one)."""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fedledger.cli.main import main as fedledger_main
from fedledger.cli.report_cmd import register
from fedledger.core.errors import DataError
from fedledger.ledger import Ledger
from fedledger.ledger.anvil import find_anvil
from fedledger.report.html import write_report
from fedledger.secagg.keys import Identity

SECTIONS = ("summary", "accuracy", "privacy", "participation", "ledger", "config")
DP_RUN = ["run", "--plain", "--dataset", "digits", "--clients", "8", "--rounds", "2", "--model", "logreg",
          "--dp", "member", "--secagg", "--bits", "20", "--epsilon", "8", "--dropout", "0.25", "--max-samples", "600",
          "--baseline", "--quiet"]
needs_anvil = pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed (make node)")


class _Tables(HTMLParser):
    """Every table of the page as rows of cell texts, keyed by the id of the section holding it."""

    def __init__(self) -> None:
        super().__init__()
        self.section = ""
        self.tables: dict[str, list[list[list[str]]]] = {}
        self.stack: list[list[list[str]]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self.section = dict(attrs).get("id") or ""
        elif tag == "table":
            self.stack.append([])
            self.tables.setdefault(self.section, []).append(self.stack[-1])
        elif tag == "tr" and self.stack:
            self.stack[-1].append([])
        elif tag in ("td", "th") and self.stack:
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.stack:
            self.stack.pop()
        elif tag in ("td", "th") and self.cell is not None and self.stack:
            self.stack[-1][-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def tables(page: str) -> dict[str, list[list[list[str]]]]:
    parser = _Tables()
    parser.feed(page)
    return parser.tables


def table_with(page: str, section: str, header: str) -> list[list[str]]:
    """The rows (header row first) of the first table in `section` whose header row has `header`."""
    for t in tables(page)[section]:
        if t and header in t[0]:
            return t
    raise AssertionError(f"no table with column {header!r} in section {section!r}")


def kv(page: str, section: str) -> dict[str, str]:
    """The section's key/value rows (nested tables flattened in)."""
    return {row[0]: row[1] for t in tables(page)[section] for row in t if len(row) == 2}


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dp_run")
    assert fedledger_main([*DP_RUN, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def dp_page(dp_run: Path) -> str:
    path = write_report(dp_run)
    assert path == dp_run / "report.html"
    return path.read_text()


def _results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def test_every_section_carries_the_runs_numbers(dp_run: Path, dp_page: str) -> None:
    res = _results(dp_run)
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in dp_page

    summary = kv(dp_page, "summary")
    assert summary["dataset"] == "digits" and summary["model"] == "logreg" and summary["members"] == "8"
    assert summary["final accuracy"] == f"{res['final_accuracy']:.4f}"
    assert summary["centralized accuracy, same budget"] == f"{res['centralized_accuracy']:.4f}"
    assert summary["accuracy ratio (federated / centralized)"] == f"{res['accuracy_ratio']:.4f}"
    assert summary["final model hash"] == res["final_model_hash"]

    acc = table_with(dp_page, "accuracy", "test loss")
    assert [row[:3] for row in acc[1:]] == [
        [str(r["round"]), f"{r['accuracy']:.4f}", f"{r['loss']:.4f}"] for r in res["rounds"]
    ]
    assert [row[-1] for row in acc[1:]] == [r["model_hash"] for r in res["rounds"]]

    eps = table_with(dp_page, "privacy", "epsilon spent so far")
    assert [row[1] for row in eps[1:]] == [f"{r['epsilon_spent']:.4f}" for r in res["rounds"]]
    block = res["privacy"]
    privacy = kv(dp_page, "privacy")
    assert privacy["mechanism"] == block["mechanism"]
    assert privacy["epsilon spent"] == f"{block['epsilon_spent']:.6g}"
    assert privacy["amplification by subsampling"] == block["amplification_note"]
    assert privacy["noise_multiplier"] == f"{block['parameters']['noise_multiplier']:.6g}"
    assert privacy["library"] == block["accountant"]["library"]
    assert privacy["threshold"] == str(block["secure_aggregation"]["threshold"])

    part = table_with(dp_page, "participation", "dropped")
    assert part[0][:5] == ["round", "sampled", "took part", "dropped", "survivors"]
    for row, r in zip(part[1:-1], res["rounds"], strict=True):
        assert row[:5] == [str(r["round"]), str(r["participants"] + r["dropped"]), str(r["participants"]),
                           str(r["dropped"]), str(r["survivors"])]
        assert row[6:] == [f"{r['bytes_up'] / 1e6:.3f}", f"{r['bytes_down'] / 1e6:.3f}"]
    assert part[-1][3] == str(sum(r["dropped"] for r in res["rounds"]))
    assert sum(r["dropped"] for r in res["rounds"]) > 0  # the run exercised dropouts

    assert "This run had no ledger" in dp_page
    assert kv(dp_page, "config")["secagg"] == "yes"
    # accuracy & loss, epsilon, time per stage, participation, traffic
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', dp_page)) == 5


def test_page_is_self_contained(dp_page: str) -> None:
    refs = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", dp_page, flags=re.I)
    assert refs, "the page has images and in-page links"
    assert all(r.startswith(("data:image/png;base64,", "#")) for r in refs), [r[:40] for r in refs]
    lowered = dp_page.lower()
    for needle in ("http://", "https://", "<script", "<link", "@import", "url(", "<iframe", "<object"):
        assert needle not in lowered


def test_hostile_strings_in_results_are_escaped(dp_run: Path, tmp_path: Path) -> None:
    res = _results(dp_run)
    script = '<script>alert("pwned")</script>'
    img = '"><img src=x onerror=alert(1)>'
    res["config"]["dataset"] = script
    res["config"]["model"] = img
    res["config"]["strategy"] = r"$\frac{1}{0}$ & <b>"  # also must not reach matplotlib's mathtext
    res["config"]["<key onmouseover=alert(2)>"] = "x"
    res["rounds"][0]["model_hash"] = script
    res["privacy"]["mechanism"] = img
    (tmp_path / "results.json").write_text(json.dumps(res))
    page = write_report(tmp_path).read_text()

    lowered = page.lower()
    assert "<script" not in lowered
    assert "<img src=x" not in lowered
    assert "<key" not in lowered
    assert html.escape(r"$\frac{1}{0}$ & <b>") in page
    assert html.escape(script) in page and html.escape(img) in page
    assert kv(page, "summary")["dataset"] == script  # shown, as text
    assert table_with(page, "accuracy", "model hash")[1][-1] == script
    assert kv(page, "config")["<key onmouseover=alert(2)>"] == "x"


def test_missing_directory_or_results_is_one_line_data_error(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))

    missing = tmp_path / "nope"
    args = parser.parse_args(["report", str(missing)])
    with pytest.raises(DataError, match="does not exist") as info:
        args.func(args)
    assert "\n" not in str(info.value) and info.value.exit_code == 3

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"results\.json is missing"):
        write_report(empty)
    (empty / "results.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot be read as JSON"):
        write_report(empty)
    (empty / "results.json").write_text(json.dumps({"config": {}, "rounds": [{"round": 1}]}))
    with pytest.raises(DataError, match="round record 1 lacks accuracy"):
        write_report(empty)
    row = {"round": 1, "accuracy": 0.5, "loss": 1.0, "participants": 2, "dropped": 0, "bytes_up": "lots",
           "bytes_down": 8}
    (empty / "results.json").write_text(json.dumps({"config": {}, "rounds": [row]}))
    with pytest.raises(DataError, match="round record 1 has non-numeric bytes_up"):
        write_report(empty)
    (empty / "results.json").write_text(json.dumps({"config": {"privacy": "on"}, "rounds": []}))
    with pytest.raises(DataError, match=r"`config\.privacy` is not an object"):
        write_report(empty)
    assert not (empty / "report.html").exists()


def test_cli_writes_where_asked_and_prints_the_path(dp_run: Path, tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "sub" / "r.html"
    args = parser.parse_args(["report", str(dp_run), "--out", str(out)])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_text().startswith("<!DOCTYPE html>")
    args = parser.parse_args(["report", str(dp_run), "--out", str(tmp_path)])
    with pytest.raises(DataError, match="is a directory"):
        args.func(args)


# ------------------------------------------------------------------------------------------- chain
@pytest.fixture(scope="module")
def chain_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if find_anvil() is None:
        pytest.skip("anvil is not installed (make node)")
    out = tmp_path_factory.mktemp("chain_run")
    args = ["run", "--plain", "--dataset", "digits", "--clients", "4", "--rounds", "2", "--model", "logreg",
            "--max-samples", "600", "--chain", "auto", "--quiet", "--out", str(out)]
    assert fedledger_main(args) == 0
    return out


@pytest.mark.slow
@needs_anvil
def test_chain_run_shows_finalized_rounds_balances_and_contracts(chain_run: Path) -> None:
    res = _results(chain_run)
    page = write_report(chain_run).read_text()
    ledger = kv(page, "ledger")
    assert ledger["rounds finalized / opened"] == "2 / 2"
    assert ledger["task"] == str(res["ledger"]["task_id"])

    rounds = table_with(page, "ledger", "model hash matches results.json")
    head = rounds[0]
    assert [row[head.index("status")] for row in rounds[1:]] == ["finalized", "finalized"]
    assert [row[head.index("model hash matches results.json")] for row in rounds[1:]] == ["yes", "yes"]
    assert [row[head.index("chain txs")] for row in rounds[1:]] == [str(r["chain_txs"]) for r in res["rounds"]]

    gas = table_with(page, "ledger", "mean gas")
    assert {row[0] for row in gas[1:]} == set(res["ledger"]["gas"])
    contracts = table_with(page, "ledger", "contract")
    assert {row[0]: row[1] for row in contracts[1:]} == res["ledger"]["contracts"]

    balances = table_with(page, "ledger", "reward balance")
    head = balances[0]
    by_address = {row[head.index("address")]: row for row in balances[1:]}
    with Ledger.connect("auto", chain_run, deploy_if_missing=False) as chain:  # read the chain independently
        registered = {str(e.args["member"]) for e in chain.events("MemberRegistered")}
        assert set(by_address) == registered
        rewarded = 0
        for address, row in by_address.items():
            assert row[head.index("reward balance")] == f"{chain.reward_balance(address) / 1e18:,.4f}"
            assert row[head.index("stake (utility)")] == f"{chain.stake_of(address) / 1e18:,.4f}"
            rewarded += chain.reward_balance(address) > 0
    assert rewarded >= 1  # validators were paid at finalization
    assert sum(1 for row in balances[1:] if row[0].startswith("trainer #")) == 4
    assert "No slashing events" in page


@pytest.mark.slow
@needs_anvil
def test_a_tampered_results_file_is_caught_against_the_chain(chain_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "copy"
    shutil.copytree(chain_run, run, ignore=shutil.ignore_patterns("anvil.lock", "report.html"))
    res = _results(run)
    res["rounds"][0]["model_hash"] = "0x" + "ab" * 32
    (run / "results.json").write_text(json.dumps(res))
    page = write_report(run).read_text()
    rounds = table_with(page, "ledger", "model hash matches results.json")
    col = rounds[0].index("model hash matches results.json")
    assert [row[col] for row in rounds[1:]] == ["NO", "yes"]
    assert "1 round(s) carry a model hash on chain that differs from results.json" in page


@pytest.mark.slow
@needs_anvil
def test_ledger_without_chain_state_falls_back_to_results(chain_run: Path, tmp_path: Path) -> None:
    res = _results(chain_run)
    res["config"]["ledger"]["chain"] = "memory"  # as an in-process chain leaves it: nothing to reopen
    (tmp_path / "results.json").write_text(json.dumps(res))
    page = write_report(tmp_path).read_text()
    assert "keeps no state after the run" in page
    assert kv(page, "ledger")["rounds finalized"] == str(res["ledger"]["finalized_rounds"])
    assert {row[0] for row in table_with(page, "ledger", "mean gas")[1:]} == set(res["ledger"]["gas"])
    assert "reward balance" not in page  # balances only come from the chain itself


def _scripted_chain(run_dir: Path) -> dict[str, object]:
    """A federation on a real chain whose rounds go wrong the ways the report must show.

    Round 1: the aggregator misses its deadline and is slashed; the round is reopened and finalized with
    a reputation root. Round 2: the committee rejects the result; the round is reopened and finalized
    with a second reputation root. Scores of both epochs are applied with their Merkle proofs.
    """
    from fedledger.core.hashing import Usage, domain_hash
    from fedledger.ledger import Role, RoundResult, RoundStatus, TaskSpec
    from fedledger.ledger.claims import reputation_tree, reward_tree

    token = 10**18
    with Ledger.connect("auto", run_dir) as ledger:

        def join(account: int, role: Role, stake: int) -> Ledger:
            m = ledger.dev(account)
            if stake:
                ledger.transfer_utility(m.address, stake * token)
            m.register(role, Identity(domain_hash(Usage.SEED, b"report test", account.to_bytes(4, "big"))).public_bytes)
            if stake:
                m.stake(stake * token)
            return m

        members = [join(10 + i, Role.AGGREGATOR, 200) for i in range(2)]
        members += [join(40 + i, Role.VALIDATOR, 300) for i in range(3)]
        members += [join(100 + i, Role.TRAINER, 10) for i in range(4)]
        owner = join(1, Role.TASK_OWNER, 0)
        ledger.transfer_utility(owner.address, 300 * token)  # the task's deposit and escrowed reward budget
        tid = owner.create_task(TaskSpec(spec_hash=domain_hash(Usage.TASK_SPEC, b"report test"),
                                         reward_per_round=100 * token, rounds=2, privacy_budget=1, committee_size=3))
        for m in members:  # only members who joined the task are drawn for it
            m.join_task(tid)
        (run_dir / "chain" / "federation.json").write_text(json.dumps({"task_id": tid, "members": 4}))
        by_address = {m.address: m for m in members}
        trainers = [m.address for m in members[5:]]

        def settle(info, scores: dict[str, int], accept: bool) -> bytes:
            model = domain_hash(Usage.TASK_SPEC, b"model", bytes([info.round_id, info.attempt]))
            by_address[info.aggregator].submit_result(tid, info.round_id, RoundResult(
                model_hash=model, evidence_root=model, survivor_root=model, survivor_count=len(trainers),
                privacy_spent=0, reputation_root=reputation_tree(tid, info.round_id, scores).root,
                reward_root=reward_tree(tid, info.round_id, dict.fromkeys(trainers, 10**18)).root,
            ))
            for member in info.committee:
                by_address[member].vote(tid, info.round_id, accept)
            status = owner.finalize(tid, info.round_id)
            assert status is (RoundStatus.FINALIZED if accept else RoundStatus.REJECTED)
            if accept:
                epoch = ledger.reputation_epoch(tid, info.round_id)
                tree = reputation_tree(tid, info.round_id, scores)
                for member, score in scores.items():
                    ledger.apply_reputation(epoch, member, score, tree.proof(member))
            return model

        info = owner.open_round(tid)
        late = info.aggregator
        bonded = ledger.stake_of(late)
        ledger.advance_time(2 * ledger.task(tid).submit_window + 1)  # past the owner's grace: anyone reopens
        again = by_address[trainers[0]].reopen(tid, 1)
        slashed = bonded - ledger.stake_of(late)  # (it may be drawn, rejected and slashed again later)
        scores1 = {trainers[0]: 9_000, trainers[1]: 2_000}
        hashes = [settle(again, scores1, accept=True)]
        scores2 = {trainers[0]: 9_500, trainers[2]: 4_000}
        info = owner.open_round(tid)
        settle(info, scores2, accept=False)
        hashes.append(settle(owner.reopen(tid, 2), scores2, accept=True))
        labels = {str(e.args["member"]): f"trainer #{e.args['pool_index']}"
                  for e in ledger.events("MemberRegistered", role=1)}
        return {"late": late, "slashed": slashed, "hashes": hashes,
                "epochs": [{labels[a]: s for a, s in scores.items()} for scores in (scores1, scores2)]}


@pytest.mark.slow
@needs_anvil
def test_slashing_reopened_rounds_and_reputation_over_time(tmp_path: Path) -> None:
    chain = _scripted_chain(tmp_path)
    hashes = ["0x" + h.hex() for h in chain["hashes"]]  # type: ignore[attr-defined]
    rounds = [{"round": i + 1, "accuracy": 0.5, "loss": 1.0, "participants": 4, "dropped": 0, "bytes_up": 1,
               "bytes_down": 1, "seconds": 0.1, "model_hash": hashes[i]} for i in range(2)]
    results = {"config": {"dataset": "digits", "model": "logreg", "strategy": "fedavg", "clients": 4, "rounds": 2,
                          "privacy": {"dp": "none"}, "ledger": {"chain": "auto", "enabled": True}},
               "rounds": rounds, "final_accuracy": 0.5, "final_model_hash": hashes[-1], "privacy": {}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    page = write_report(tmp_path).read_text()

    on_chain = table_with(page, "ledger", "model hash matches results.json")
    head = on_chain[0]
    assert [(r[head.index("status")], r[head.index("attempts")], r[head.index("model hash matches results.json")])
            for r in on_chain[1:]] == [("finalized", "2", "yes"), ("finalized", "2", "yes")]

    slashing = table_with(page, "ledger", "reason")
    head = slashing[0]
    events = [(r[head.index("event")], r[head.index("round")], r[head.index("reason")]) for r in slashing[1:]]
    # a Slashed row names its round (the event carries it; issue 16: it showed a dash)
    assert events[:2] == [("Slashed", "1", "missed deadline"), ("RoundReopened", "1", "missed deadline")]
    # a result the committee rejects costs its aggregator a slash too (a proven fault: 2/3 of the stake said so)
    assert [(e[0], e[2]) for e in events[2:]] == [("Slashed", "rejected result"), ("RoundRejected", events[3][2]),
                                                 ("RoundReopened", "rejected")]
    assert [r[head.index("amount (utility)")] for r in slashing[4:]] == ["\u2013", "\u2013"]  # the events only
    slashed = f"{chain['slashed'] / 1e18:,.4f}"  # type: ignore[operator]
    assert chain["slashed"] > 0 and slashing[1][head.index("amount (utility)")] == slashed  # type: ignore[operator]
    assert slashing[1][head.index("member")] == slashing[2][head.index("member")]
    assert slashing[1][head.index("member")].startswith("aggregator #")

    reputation = next(t for t in tables(page)["ledger"] if t and t[0][0] == "member" and "epoch 1 (round 1)" in t[0])
    assert reputation[0][1:] == ["epoch 1 (round 1)", "epoch 2 (round 2)"]
    shown = {row[0]: row[1:] for row in reputation[1:]}
    epochs = chain["epochs"]
    assert set(shown) == set(epochs[0]) | set(epochs[1])  # type: ignore[index]
    for member, cells in shown.items():
        assert cells == [str(e[member]) if member in e else "\u2013" for e in epochs]  # type: ignore[attr-defined]
    balances = table_with(page, "ledger", "reward balance")
    latest = {m: s for e in epochs for m, s in e.items()}  # type: ignore[attr-defined]
    col = balances[0].index("reputation")
    assert {r[0]: r[col] for r in balances[1:] if r[0] in latest} == {m: str(s) for m, s in latest.items()}
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 4  # accuracy, participation, traffic, reputation


def test_empty_failed_and_unreleased_rounds_still_render(dp_run: Path, tmp_path: Path) -> None:
    res = _results(dp_run)
    res["rounds"][0].update(accuracy=float("nan"), loss=float("nan"), train_loss=float("nan"), aggregated=False,
                            survivors=0)
    res["final_accuracy"] = float("nan")
    (tmp_path / "results.json").write_text(json.dumps(res))  # json writes NaN, as the run's own writer would
    page = write_report(tmp_path).read_text()
    first = table_with(page, "accuracy", "test loss")[1]
    assert first[1:4] == ["n/a", "n/a", "n/a"] and first[5] == "no"
    assert table_with(page, "participation", "survivors")[1][4] == "0"

    res["rounds"] = []
    (tmp_path / "results.json").write_text(json.dumps(res))
    page = write_report(tmp_path).read_text()
    assert page.count("No round was recorded.") == 2
    assert kv(page, "summary")["rounds completed / planned"] == "0 / 2"


@pytest.mark.slow
@needs_anvil
def test_a_chain_that_cannot_be_reopened_is_reported_not_fatal(chain_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "copy"
    shutil.copytree(chain_run, run, ignore=shutil.ignore_patterns("anvil.lock", "report.html"))
    (run / "chain" / "anvil-state.json").unlink()  # the node restarts empty: the deployment is not there
    page = write_report(run).read_text()
    assert "the chain could not be reopened" in page
    res = _results(run)
    assert kv(page, "ledger")["rounds finalized"] == str(res["ledger"]["finalized_rounds"])
    assert "reward balance" not in page
