"""SRHT compression (fedledger.privacy.compress): linear, so it commutes with the SecAgg+ masks; clipped and
accounted in the compressed space; configured with one-line refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedledger.core.config import build_config, parse_compress
from fedledger.core.errors import ConfigError
from fedledger.core.rng import DeterministicEntropy, Purpose
from fedledger.privacy import DistributedDP, decode_sum, encode_members, plan_distributed_dp
from fedledger.privacy.compress import SketchMap, auto_bits, round_map, sketch_rows
from fedledger.secagg import SecAggParams, run_round, simulated_identities
from fedledger.secagg.messages import Kind
from fedledger.secagg.packing import packed_size


@settings(max_examples=25, deadline=None)
@given(d=st.integers(5, 3000), ratio=st.sampled_from([1.5, 2.0, 4.0, 10.0]), seed=st.binary(min_size=1, max_size=8),
       n=st.integers(1, 6), rnd=st.integers(0, 1000))
def test_decompression_of_a_sum_is_the_sum_of_decompressions(d: int, ratio: float, seed: bytes, n: int,
                                                             rnd: int) -> None:
    plan = plan_distributed_dp(epsilon=8, delta=1e-5, rounds=1, d=d, n=max(n, 2), bits=32, compress=ratio)
    sk = round_map(plan, seed, rnd, b"round-seed")
    assert isinstance(sk, SketchMap) and sk.rows == sketch_rows(d, ratio) == plan.sketch_rows
    g = torch.Generator().manual_seed(rnd)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    c = sk.compress(x)
    assert torch.allclose(sk.compress(x.sum(0, keepdim=True)), c.sum(0, keepdim=True), atol=1e-9)
    assert torch.allclose(sk.decompress(c.sum(0, keepdim=True))[0], sk.decompress(c).sum(0), atol=1e-9)
    y = sk.forward(c)  # and through the rotation that follows it (what decode_sum inverts)
    assert torch.allclose(sk.inverse(y.sum(0, keepdim=True))[0], sk.inverse(y).sum(0), atol=1e-9)
    assert torch.allclose(sk.inverse(y), sk.decompress(c), atol=1e-9)


def test_the_map_is_public_per_round_and_unbiased() -> None:
    d = 2000
    plan = plan_distributed_dp(epsilon=8, delta=1e-5, rounds=1, d=d, n=5, bits=32, compress=4)
    a = round_map(plan, b"task", 3, b"chain-seed-1")
    assert torch.equal(a.kept, round_map(plan, b"task", 3, b"chain-seed-1").kept)  # every role derives the same
    assert not torch.equal(a.kept, round_map(plan, b"task", 3, b"chain-seed-2").kept)  # the chain's seed moves it
    assert not torch.equal(a.kept, round_map(plan, b"task", 4, b"chain-seed-1").kept)
    x = torch.randn(1, d, dtype=torch.float64)
    est = torch.stack([round_map(plan, b"task", r).decompress(round_map(plan, b"task", r).compress(x))[0]
                       for r in range(400)]).mean(0)
    # an average of 400 independent sketches: error shrinks like sqrt((p/k - 1) / 400) ~ 0.09 of ||x||
    assert float((est - x[0]).norm() / x.norm()) < 0.15
    norms = [float(round_map(plan, b"task", r).compress(x).norm() ** 2) for r in range(200)]
    assert abs(np.mean(norms) / float(x.norm() ** 2) - 1) < 0.05  # E||c||^2 = ||x||^2


def _members(n: int) -> tuple[list[int], dict, dict]:
    ids, pki = simulated_identities(list(range(n)), b"compress-test")
    return list(range(n)), ids, pki


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=st.integers(20, 1500), ratio=st.sampled_from([2.0, 5.0, 10.0]), n=st.integers(3, 6),
       seed=st.binary(min_size=4, max_size=8), drops=st.sets(st.integers(0, 5), max_size=2))
def test_compression_commutes_with_the_masks_under_dropouts(d: int, ratio: float, n: int, seed: bytes,
                                                           drops: set[int]) -> None:
    probe = SecAggParams.for_cohort(n, 8, 20, dropout=0.34)
    drops = set(sorted(i for i in drops if i < n)[: n - probe.threshold])  # within what SecAgg+ recovers from
    survivors = [i for i in range(n) if i not in drops]
    plan = plan_distributed_dp(epsilon=4, delta=1e-5, rounds=2, d=d, n=n, min_survivors=len(survivors), bits=20,
                               compress=ratio)
    sk = round_map(plan, seed, 1, seed[::-1])
    ent = DeterministicEntropy(int.from_bytes(seed, "big"))
    x = torch.from_numpy(np.random.default_rng(d).normal(0, 0.3, (n, d)))
    enc = encode_members(plan, x, 1.0, sk, ent.stream(Purpose.DP_NOISE, round=1))
    members, ids, pki = _members(n)
    params = SecAggParams.for_cohort(n, plan.length, plan.bits, dropout=0.34)
    out = run_round(enc.wrapped, members, ids, pki, params, b"\x01" * 32, 1, {m: Kind.MASKED_INPUT for m in drops},
                    ent.stream(Purpose.SECAGG, round=1).bytes)
    assert sorted(out.survivors) == survivors
    mod = 1 << plan.bits
    exact = enc.wrapped[survivors].astype(np.uint64).sum(axis=0) % mod
    assert np.array_equal(np.asarray(out.total, dtype=np.uint64), exact)  # the masks cancel exactly
    # decoding the masked sum = decompressing the sum of what the survivors fed in = the sum of decompressions
    dec = decode_sum(plan, out.total, 1.0, sk).total.to(torch.float64)
    signed = torch.from_numpy((enc.values + enc.noise)[survivors][:, : plan.padded].astype(np.float64))
    each = sk.inverse(signed) / enc.scale
    assert torch.allclose(dec, each.sum(0), atol=1e-4 * (1 + float(each.abs().max())))
    # and the clipped compressed vectors are what is decompressed: without noise and rounding, the same sum
    clipped_sum = sk.decompress(torch.from_numpy(enc.clipped[survivors]).sum(0, keepdim=True))[0]
    assert float((dec - clipped_sum).norm()) <= 1.0 * math.sqrt(len(survivors) * plan.member_variance
                                                               * plan.padded) * 4 / enc.scale + 1e-6


def test_sensitivity_is_that_of_the_compressed_vector_even_for_an_adversarial_update() -> None:
    """Clipping happens after compression: an update whose mass sits on the kept coordinates (its compressed norm
    is sqrt(p / k) times its own) still sends a vector within the plan's L2 sensitivity."""
    d = 4000
    plan = plan_distributed_dp(epsilon=3, delta=1e-5, rounds=5, d=d, n=10, bits=24, compress=8)
    sk = round_map(plan, b"task", 0, b"seed")
    picked = torch.zeros(1, sk.rows, dtype=torch.float64)
    picked[0, :] = 1.0
    adversarial = sk.decompress(picked)  # lies in the kept span: compress(x) = (p / k) ... larger than ||x||
    adversarial = adversarial / adversarial.norm()  # ||x|| = C = 1
    assert float(sk.compress(adversarial).norm()) > 2.5
    rnd = torch.randn(3, d, dtype=torch.float64)
    enc = encode_members(plan, torch.cat([adversarial, rnd]), 1.0, sk, DeterministicEntropy(0).stream(Purpose.DP_NOISE))
    norms = np.linalg.norm(enc.values[:, : plan.padded].astype(np.float64), axis=1)
    assert (norms <= plan.rounding_bound + 1e-9).all()
    assert np.allclose(np.linalg.norm(enc.clipped, axis=1), 1.0)  # every one clipped to C in the compressed space
    assert plan.l2_sensitivity == pytest.approx(plan.rounding_bound)
    assert plan.padded < d / 7  # the plan's vector is the compressed one


def test_auto_bits_is_the_fewest_that_hold_the_noised_sum() -> None:
    kw = dict(epsilon=3, delta=1e-5, rounds=30, d=105_866, n=20, min_survivors=18, compress=10.0)
    plan = auto_bits(plan_distributed_dp, **kw)
    assert plan.rounding_bound <= 1.05 * plan.int_norm
    fewer = plan.bits - 1
    try:
        smaller = plan_distributed_dp(bits=fewer, **kw)
    except ConfigError:
        return
    assert smaller.rounding_bound > 1.05 * smaller.int_norm


def test_distributed_dp_with_compression_sends_the_compressed_vector() -> None:
    d = 3000
    deltas = torch.randn(4, d) * 0.01
    sent = {}
    for ratio in (None, 10.0):
        ddp = DistributedDP(epsilon=8, delta=1e-5, clip_norm=1.0, d=d, n=4, rounds=2, bits=16, compress=ratio)
        res = ddp.aggregate(deltas, 0, entropy=DeterministicEntropy(3), round_seed=b"s")
        assert res.sum.shape == (d,)
        sent[ratio] = (res.bytes_up_per_member, ddp.plan.length)
    assert sent[10.0][1] <= math.ceil(d / 10 / 64) * 64 + 64  # about d / 10 coordinates
    # measured through SecAgg+ (every message serialized): only the masked input shrinks, by exactly its packing
    assert sent[None][0] - sent[10.0][0] == packed_size(sent[None][1], 16) - packed_size(sent[10.0][1], 16)


def test_auto_bits_through_the_pipeline() -> None:
    ddp = DistributedDP(epsilon=8, delta=1e-5, clip_norm=1.0, d=3000, n=4, rounds=2, bits="auto", compress=10.0)
    assert ddp.secagg_params is not None and ddp.secagg_params.bits == ddp.plan.bits < 32
    res = ddp.aggregate(torch.randn(4, 3000) * 0.01, 0, entropy=DeterministicEntropy(4))
    assert torch.isfinite(res.sum).all()


@pytest.mark.parametrize("value", ["srht:1", "srht:0.5", "srht:", "srht:x", "zip:4", "srht:5000", "srht:-3"])
def test_bad_compress_values_are_refused_with_one_line(value: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_compress(value)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError) as c:
        build_config({"privacy": {"dp": "member", "compress": value}})
    assert "\n" not in str(c.value)


def test_compress_and_bits_auto_parse() -> None:
    assert parse_compress("none") is None and parse_compress("SRHT:8") == 8.0
    cfg = build_config({"privacy": {"dp": "member", "compress": "srht:8", "bits": "auto"}})
    assert cfg.privacy.compress == "srht:8" and cfg.privacy.bits == "auto"
    with pytest.raises(ConfigError):
        build_config({"privacy": {"dp": "member", "bits": 7}})


@pytest.mark.parametrize(("flags", "says"), [
    (["--compress", "srht:8"], "--compress does nothing without DP"),
    (["--dp", "record", "--compress", "srht:8"], "--compress applies to member-level DP only"),
    (["--dp", "member", "--compress", "srht:1"], "1 < RATIO"),
    (["--dp", "member", "--compress", "gzip"], "none or srht:RATIO"),
    (["--dp", "member", "--bits", "7"], "8..32 or auto"),
    (["--dp", "member", "--bits", "many"], "8..32 or auto"),
])
def test_cli_refuses_bad_compression_flags_with_one_line(flags: list[str], says: str, tmp_path,
                                                         capfd: pytest.CaptureFixture[str]) -> None:
    from fedledger.cli.main import main

    argv = ["run", "--plain", "--dataset", "digits", "--model", "logreg", "--clients", "3", "--rounds", "1",
            "--quiet", "--out", str(tmp_path / "run"), *flags]
    capfd.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:
        code = int(e.code or 0)
    _, err = capfd.readouterr()
    assert code != 0 and says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "results.json").exists()


def test_a_compressed_run_reports_its_bytes_per_member_against_float32(tmp_path) -> None:
    from fedledger.sim import Simulation

    cfg = build_config({"dataset": "digits", "model": "mlp", "clients": 6, "rounds": 1, "seed": 0,
                        "deterministic": True, "out": str(tmp_path),
                        "privacy": {"dp": "member", "secagg": True, "epsilon": 8, "compress": "srht:8",
                                    "bits": "auto"}})
    sim = Simulation(cfg)
    res = sim.run().to_json()
    t = res["traffic"]
    assert t["float32_bytes"] == 4 * sim.dim and t["sketch_rows"] and t["effective_ratio"] > 7 and t["bits"] < 32
    assert t["bytes_up_per_member_per_round"] == [round(r["bytes_up"] / r["participants"]) for r in res["rounds"]]
    assert t["reduction_vs_float32"] > 0.8


@pytest.mark.slow
def test_whole_system_round_with_compression_finalizes_and_measures_the_wire(tmp_path) -> None:
    """Trainers compress with the map seeded by the round's seed on chain, validators decompress with the same
    one and accept the round; bytes_up is what the transport carried."""
    from fedledger.ledger.anvil import find_anvil
    from fedledger.sim import Simulation

    if find_anvil() is None:
        pytest.skip("anvil is not installed")
    res = {}
    for compress in ("none", "srht:8"):
        cfg = build_config({"dataset": "digits", "model": "mlp", "clients": 4, "rounds": 1, "seed": 0,
                            "ledger": {"enabled": True, "chain": "auto"},
                            "privacy": {"dp": "member", "secagg": True, "epsilon": 8, "compress": compress,
                                        "bits": 16}})
        out = tmp_path / compress.replace(":", "-")
        res[compress] = Simulation(cfg).run(out=out).to_json()
        assert res[compress]["rounds"][0]["finalized"]
    full, small = (res[k]["traffic"]["bytes_up_per_member_mean"] for k in ("none", "srht:8"))
    dim = res["none"]["traffic"]["model_parameters"]
    # the masked input shrinks from the whole model to about an eighth of it at 2 bytes a coordinate
    assert full - small >= 2 * (dim - res["srht:8"]["traffic"]["coordinates_sent"]) - 64
