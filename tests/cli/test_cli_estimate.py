"""A run says before it starts how long it will take, when that is long."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedledger.cli import main as cli_main
from fedledger.core.config import WHOLE_SYSTEM, _merge, build_config
from fedledger.sim.estimate import estimate_run


def test_the_default_whole_system_run_is_modeled_as_long_and_proof_bound() -> None:
    est = estimate_run(build_config(WHOLE_SYSTEM))
    assert est.total_s > cli_main.LONG_RUN_S  # so `fedledger run` with no flags says how long it will take
    assert est.proof_s_per_round > 0.8 * (est.proof_s_per_round + est.other_s_per_round)  # proofs dominate
    assert "estimated time: about" in est.describe() and "update proofs" in est.describe()


def test_the_estimate_grows_with_rounds_and_members_and_drops_without_proofs() -> None:
    base = estimate_run(build_config(_merge(WHOLE_SYSTEM, {"rounds": 10, "clients": 10})))
    assert estimate_run(build_config(_merge(WHOLE_SYSTEM, {"rounds": 20, "clients": 10}))).total_s == \
        pytest.approx(2 * base.total_s)
    more = estimate_run(build_config(_merge(WHOLE_SYSTEM, {"rounds": 10, "clients": 20})))
    assert more.proof_s_per_round == pytest.approx(2 * base.proof_s_per_round)
    none = estimate_run(build_config(_merge(WHOLE_SYSTEM, {"rounds": 10, "clients": 10, "proofs": "none"})))
    assert none.proof_s_per_round == 0 and none.total_s < base.total_s / 5


def test_a_long_run_says_so_before_its_first_round(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_main, "LONG_RUN_S", 0)  # every run counts as long: a short real run shows the line
    argv = ["run", "--plain", "--dataset", "digits", "--model", "logreg", "--clients", "3", "--rounds", "2",
            "--out", str(tmp_path / "run")]
    assert cli_main.main(argv) == 0
    out = capsys.readouterr().out
    assert "estimated time: about" in out
    assert out.index("estimated time") < out.index("final accuracy")
