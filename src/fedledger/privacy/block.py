"""The `privacy` block of results.json: what was protected, by which mechanism, accounted how."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from fedledger.privacy.distributed import DdpPlan


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "unknown"


def privacy_block(
    privacy: Any,
    *,
    epsilon_spent: float | None = None,
    rounds_done: int | None = None,
    plan: DdpPlan | None = None,
    noise_multiplier: float | None = None,
    max_grad_norm: float | None = None,
    sample_rate: float | None = None,
    steps_per_round: int | None = None,
    secagg: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the block from a `PrivacyConfig` and what the run measured.

    record: pass noise_multiplier, max_grad_norm, sample_rate, steps_per_round and the largest
    member epsilon so far. member: pass the `DdpPlan` (and optionally secagg parameters).
    Amplification by subsampling is claimed for member-level DP only when `secret_sampling` is
    set, because cohorts are public on the chain; record-level DP-SGD samples batches privately
    inside each member, so its amplification over records is always claimed.
    """
    unit = privacy.dp
    accountant = {
        "library": f"dp-accounting {_version('dp-accounting')}",
        "method": "RDP (Renyi DP), converted to (epsilon, delta)",
        "neighbouring": {"record": "add or remove one training record of one member",
                         "member": "add or remove one member's whole update",
                         "none": None}[unit],
    }
    block: dict[str, Any] = {
        "unit": unit,
        "epsilon_budget": privacy.epsilon if unit != "none" else None,
        "delta": privacy.delta if unit != "none" else None,
        "epsilon_spent": epsilon_spent,
        "rounds_accounted": rounds_done,
        "secure_aggregation": secagg if secagg is not None else bool(getattr(privacy, "secagg", False)),
        "quantization_bits": privacy.bits,
    }
    if unit == "none":
        block |= {"mechanism": "none", "accountant": None, "parameters": {},
                  "amplification_by_subsampling": False}
        return block
    if unit == "record":
        block |= {
            "mechanism": "DP-SGD (per-example clipping, Gaussian noise, Poisson-sampled batches; Opacus "
                         f"{_version('opacus')})",
            "accountant": accountant | {"per_member": True,
                                        "reported": "largest member epsilon at the task's delta"},
            "parameters": {"noise_multiplier": noise_multiplier, "max_grad_norm": max_grad_norm,
                           "sample_rate": sample_rate, "steps_per_round": steps_per_round},
            "amplification_by_subsampling": True,
            "amplification_note": "over records: each member samples its own batches privately (Poisson)",
        }
        return block
    if plan is None:
        raise ValueError("member-level block needs the DdpPlan")
    block |= {
        "mechanism": "distributed discrete Gaussian (Kairouz, Liu, Steinke 2021) through SecAgg+: clip, "
                     "randomized Hadamard rotation, conditional stochastic rounding, exact discrete Gaussian "
                     "shares (Canonne, Kamath, Steinke 2020), modulo 2^bits",
        "accountant": accountant | {"event": "ZCDpEvent per round (KLS21 Thm. 2, incl. tau)"
                                    if not plan.secret_sampling else
                                    "PoissonSampledDpEvent(GaussianDpEvent) per round"},
        "parameters": {
            "clip_norm_initial": privacy.clip_norm,
            "adaptive_clip": privacy.adaptive_clip,
            "target_quantile": privacy.target_quantile if privacy.adaptive_clip else None,
            "noise_multiplier": plan.noise_multiplier_actual,
            "member_noise_variance": plan.member_variance,
            "min_survivors": plan.min_survivors,
            "cohort": plan.n,
            "l2_sensitivity": plan.l2_sensitivity,
            "l1_sensitivity": plan.l1_sensitivity,
            "tau": plan.tau,
            "rho_per_round": plan.rho_per_round,
            "rounds_planned": plan.rounds,
            "epsilon_at_planned_rounds": plan.epsilon_total,
            "padded_length": plan.padded,
            "rotation_block": plan.block,
            "bits": plan.bits,
        },
        "amplification_by_subsampling": bool(plan.secret_sampling),
        "amplification_note": (f"claimed: sampling is secret, rate {plan.sample_rate}" if plan.secret_sampling
                               else "not claimed: cohorts are public on the chain"),
    }
    return block
