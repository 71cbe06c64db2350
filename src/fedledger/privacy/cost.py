"""Why a private run trails the non-private one, in one sentence from results.json (issue 17, item 6).

The summary and the report print the three numbers (non-private centralized, central DP, fedledger); this
says where the gap comes from, with the numbers that set it: the run's privacy unit, its noise multiplier,
how many members share the noise, how many releases it was planned for, and how much of the budget a spare
release left unspent. When fedledger is within a couple of points of central DP at the same settings, the gap
is the privacy itself (what any mechanism with that noise would lose), not the federation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: fedledger within this many points of central DP: the federation costs nothing measurable (one run's spread)
CLOSE_POINTS = 2.0


def privacy_cost_note(payload: Mapping[str, Any]) -> str | None:
    """One line: what privacy costs in this run and why (None without DP or without the baselines)."""
    priv = payload.get("privacy") or {}
    central, dp = payload.get("centralized_accuracy"), payload.get("central_dp")
    if priv.get("unit") not in ("member", "record") or central is None or not dp:
        return None
    final = float(payload["final_accuracy"])
    gap = 100 * (central - final)
    fed = 100 * (float(dp["accuracy"]) - final)
    where = ("the privacy itself (central DP with the same noise is as far)" if fed <= CLOSE_POINTS else
             f"the privacy ({100 * (central - float(dp['accuracy'])):.1f} points, central DP) and the federation "
             f"({fed:.1f} points)")
    if priv["unit"] == "member":
        par = priv.get("parameters") or {}
        z, m, c = par.get("noise_multiplier"), par.get("min_survivors"), par.get("clip_norm_initial")
        planned, rounds = par.get("rounds_planned"), priv.get("rounds_accounted")
        if z is None or m is None or c is None or planned is None:
            return None
        spare = f", {int(planned) - int(rounds)} of them spare for redone rounds" if rounds and planned > rounds else ""
        unspent = priv["epsilon_budget"] - (priv.get("epsilon_spent") or 0.0)
        left = f"; {unspent:.2g} of epsilon {priv['epsilon_budget']:g} left unspent" if unspent > 0.01 else ""
        return (f"what privacy costs: {gap:.1f} points against the non-private model, from {where}: member-level "
                f"DP with {m} members puts noise of std {z * c / m:.3g} per coordinate (noise multiplier {z:.3g} "
                f"over {planned} planned releases{spare}) on a mean update of norm at most {c:g}{left}; "
                "more members or a larger epsilon shrink it")
    return (f"what privacy costs: {gap:.1f} points against the non-private model, from {where}: record-level "
            f"DP-SGD noise at epsilon {priv.get('epsilon_budget')}; more records per member or a larger epsilon "
            "shrink it")
