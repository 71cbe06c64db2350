"""Before training, a DP run says what it protects and how loud its noise is, and warns when the noise will
swamp learning, with a fix that works (issue 17, item 4)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from fedledger.cli.main import main
from fedledger.privacy.distributed import plan_distributed_dp
from fedledger.privacy.outlook import HOPELESS, SWAMP, member_outlook, record_outlook, record_ratio

LOGREG_DIGITS = 650  # 64 * 10 + 10 parameters


def _member(m: int, epsilon: float = 8.0, rounds: int = 10, d: int = LOGREG_DIGITS):
    plan = plan_distributed_dp(epsilon=epsilon, delta=1e-5, rounds=rounds, d=d, n=m, min_survivors=m, bits=20)
    return member_outlook(noise_multiplier=plan.noise_multiplier_actual, min_survivors=m, d=d, rounds=rounds,
                          epsilon=epsilon, delta=1e-5)


@pytest.mark.parametrize("members", [2, 4])
def test_member_level_dp_with_two_or_four_members_is_hopeless_and_says_what_to_change(members: int) -> None:
    out = _member(members)
    assert out.hopeless and out.noise_to_signal > HOPELESS
    assert out.warning is not None and "\n" not in out.warning
    assert f"member-level DP with {members} members" in out.warning and "nothing will be learned" in out.warning
    needed = int(re.search(r"at least (\d+) members", out.warning).group(1))  # type: ignore[union-attr]
    assert _member(needed).noise_to_signal <= SWAMP  # the fix it names is enough ...
    assert _member(needed - 2).noise_to_signal > SWAMP * 0.95  # ... and not far more than needed
    eps = float(re.search(r"or epsilon ([0-9.]+)", out.warning).group(1))  # type: ignore[union-attr]
    assert _member(members, epsilon=eps * 1.01).noise_to_signal <= SWAMP * 1.05


def test_member_level_dp_with_enough_members_does_not_warn() -> None:
    out = _member(100)
    assert out.warning is None and not out.hopeless
    assert out.summary.startswith("privacy: member level (add or remove one member's whole update), epsilon 8")
    assert "noise-to-signal per round" in out.summary


def test_fewer_rounds_is_offered_only_when_it_is_enough() -> None:
    out = _member(20, epsilon=3.0, rounds=10)  # ratio 6: 2 rounds would do
    assert out.warning is not None and "the noise will swamp learning" in out.warning
    rounds = int(re.search(r"or (\d+) rounds", out.warning).group(1))  # type: ignore[union-attr]
    assert 1 <= rounds < 10
    assert _member(20, epsilon=3.0, rounds=rounds).noise_to_signal <= SWAMP
    assert _member(20, epsilon=3.0, rounds=rounds + 1).noise_to_signal > SWAMP
    assert "fewer rounds would not be enough" in (_member(2).warning or "")


def test_record_ratio_is_the_noise_norm_over_the_signal_of_one_member() -> None:
    # one member, 640 records, batch 64: q = 0.1, 10 steps a round, expected batch 64; sigma 2, d = 100
    ratio = record_ratio([640], [2.0], batch_size=64, epochs=1, d=100)
    assert ratio == pytest.approx(2.0 * math.sqrt(100 * 10) / 64 / 10)
    # k identical members average their independent noise: the ratio falls by sqrt(k)
    assert record_ratio([640] * 4, [2.0] * 4, batch_size=64, epochs=1, d=100) == pytest.approx(ratio / 2)


def test_record_level_recipe_on_digits_does_not_warn_and_tiny_members_do() -> None:
    mlp_digits = 64 * 128 + 128 + 128 * 10 + 10
    ok = record_outlook(counts=[182, 359, 284, 177, 148], batch_size=64, epochs=1, rounds=10, epsilon=3,
                        delta=1e-5, d=mlp_digits, clip_norm=0.25)
    assert ok.warning is None and ok.noise_to_signal < 1.5
    assert ok.summary.startswith("privacy: record level (add or remove one training record of one member)")
    tiny = record_outlook(counts=[30, 30], batch_size=64, epochs=1, rounds=30, epsilon=1, delta=1e-5,
                          d=mlp_digits, clip_norm=0.25)
    assert tiny.warning is not None and tiny.hopeless and "more records per member" in tiny.warning


def test_a_member_level_run_with_two_members_prints_the_unit_and_warns_once(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from fedledger.cli import main as cli_main

    cli_main._warned.clear()
    argv = ["run", "--plain", "--dataset", "digits", "--model", "logreg", "--clients", "2", "--rounds", "1",
            "--dp", "member", "--epsilon", "8", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    out, err = capfd.readouterr()
    assert "privacy: member level (add or remove one member's whole update), epsilon 8" in out
    warnings = [line for line in err.splitlines() if line.startswith("fedledger: warning:")]
    assert len(warnings) == 1 and "member-level DP with 2 members" in warnings[0]
    assert "at least" in warnings[0] and "members per round" in warnings[0]


def test_a_plain_run_over_a_config_with_privacy_settings_warns_that_they_are_unused(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from fedledger.cli import main as cli_main

    cli_main._warned.clear()
    (tmp_path / "fed.toml").write_text('dataset = "digits"\nmodel = "logreg"\nclients = 2\nrounds = 1\n'
                                       '[privacy]\nepsilon = 8.0\nbits = 20\n')
    assert main(["run", "--plain", "--config", str(tmp_path / "fed.toml"), "--quiet",
                 "--out", str(tmp_path / "run")]) == 0
    err = capfd.readouterr().err
    assert "sets privacy.epsilon, privacy.bits, not used: DP is off in this run" in err
