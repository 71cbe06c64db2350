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


def _record_secagg_sim(tmp_path: Path, clients: int = 5):
    from fedledger.core.config import load_config
    from fedledger.sim.federation import Simulation

    cfg = load_config(None, {"dataset": "digits", "clients": clients, "rounds": 10, "privacy.dp": "record",
                             "privacy.secagg": True, "privacy.epsilon": 3.0, "out": str(tmp_path / "run")})
    return Simulation(cfg)


def test_record_level_through_secagg_outlook_is_the_noise_the_plan_actually_adds(tmp_path: Path) -> None:
    """The outlook of `--dp record --secagg` (what the CLI prints) against the noise the real pipeline puts on one
    step's sum: m members feed zero gradients through `encode_members` (their real noise shares, rotation, scale,
    rounding, wrap), the modular sum is decoded with `decode_sum`, and what is left is exactly the step's noise in
    model units. Its std must be the outlook's, not √m times it (the bug: each member counted as adding the full
    noise, as if the shares were independent DP-SGD noises that average out)."""
    import os

    import numpy as np

    from fedledger.cli.main import privacy_outlook
    from fedledger.core.rng import CryptoRng
    from fedledger.privacy.distributed import decode_sum, encode_members
    from fedledger.privacy.record_secagg import RecordPlan
    from fedledger.privacy.rotation import Rotation

    sim = _record_secagg_sim(tmp_path)
    plan = sim.ddp.plan
    assert isinstance(plan, RecordPlan)
    out = privacy_outlook(sim)
    assert out is not None and out.unit == "record" and out.step_noise_std is not None
    m = plan.min_survivors
    noise = []
    for step in range(16):
        rotation = Rotation.for_round(plan.d, b"outlook-test", step, block=plan.block)
        enc = encode_members(plan, np.zeros((m, plan.d)), plan.batch_clip, rotation, CryptoRng(os.urandom(32)))
        total = enc.wrapped.astype(np.int64).sum(axis=0) % (1 << plan.bits)
        noise.append(decode_sum(plan, total, plan.batch_clip, rotation).total.double().numpy())
    measured = float(np.concatenate(noise).std())
    assert measured == pytest.approx(out.step_noise_std, rel=0.03)  # 10,400 draws: 0.7% standard error
    # the ratio is that noise over `steps_per_round` steps of the expected batch, against T·C of signal
    batch = plan.sample_rate * float(sim.pool.counts.sum())
    expected = measured * math.sqrt(plan.d) / (batch * plan.record_clip * math.sqrt(plan.steps_per_round))
    assert out.noise_to_signal == pytest.approx(expected, rel=0.03)
    assert f"noise-to-signal per round {out.noise_to_signal:.2f}" in out.summary and "through SecAgg+" in out.summary
    # what the CLI printed before (each member adding its own full DP-SGD noise) overstates it by about √m
    p, cfg = sim.cfg.privacy, sim.cfg
    old = record_outlook(counts=[int(c) for c in sim.pool.counts], batch_size=cfg.batch_size, epochs=cfg.local_epochs,
                         rounds=cfg.rounds, epsilon=p.epsilon, delta=p.delta, d=sim.dim, clip_norm=p.clip_norm)
    assert old.noise_to_signal / out.noise_to_signal > 0.8 * math.sqrt(m)


def test_record_level_through_secagg_with_too_few_records_warns_with_a_fix_that_works(tmp_path: Path) -> None:
    from fedledger.privacy.outlook import record_secagg_outlook
    from fedledger.privacy.record_secagg import plan_record_secagg

    def outlook(epsilon: float, rounds: int = 10):
        plan = plan_record_secagg(epsilon=epsilon, delta=1e-5, steps_per_round=1, rounds=rounds, sample_rate=0.5,
                                  d=650, n=5, min_survivors=5, max_records=20, clip_norm=0.25)
        return record_secagg_outlook(plan=plan, counts=[20] * 5, rounds=rounds, epsilon=epsilon, delta=1e-5, d=650)

    out = outlook(1.0)
    assert out.warning is not None and "record-level DP through SecAgg+" in out.warning
    eps = float(re.search(r"or epsilon ([0-9.]+)", out.warning).group(1))  # type: ignore[union-attr]
    assert outlook(eps * 1.02).noise_to_signal <= SWAMP * 1.05


def test_secagg_without_dp_says_before_training_what_it_does_not_protect(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "--plain", "--dataset", "digits", "--model", "logreg", "--clients", "6", "--rounds", "1",
            "--secagg", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    said = capsys.readouterr()
    line = next(x for x in (said.out + said.err).splitlines() if x.startswith("privacy: SecAgg+ without DP"))
    assert "nothing bounds what two sums reveal together" in line and "--dp member" in line
    assert re.search(r"sums of at least \d+ members", line)
