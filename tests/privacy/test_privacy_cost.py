"""The demo's summary and report say what privacy costs and why (issue 17, item 6)."""

from __future__ import annotations

from typing import Any

from fedledger.cli.main import summary_table
from fedledger.privacy.cost import privacy_cost_note


def _payload(final: float, central_dp: float) -> dict[str, Any]:
    return {
        "rounds": [{"round": 1, "accuracy": final, "loss": 0.4, "participants": 20, "dropped": 0, "bytes_up": 1,
                    "seconds": 1.0, "epsilon_spent": 7.56}],
        "final_accuracy": final, "centralized_accuracy": 0.9415, "accuracy_ratio": final / 0.9415,
        "central_dp_accuracy": central_dp, "central_dp_ratio": final / central_dp,
        "central_dp": {"accuracy": central_dp, "unit": "member", "epsilon": 7.56},
        "privacy": {"unit": "member", "epsilon_budget": 8.0, "epsilon_spent": 7.56, "rounds_accounted": 10,
                    "parameters": {"noise_multiplier": 2.115, "min_survivors": 20, "clip_norm_initial": 0.5,
                                   "rounds_planned": 11}},
    }


def test_the_gap_is_named_with_the_noise_that_sets_it() -> None:
    note = privacy_cost_note(_payload(0.8719, 0.8663))
    assert note is not None
    assert note.startswith("what privacy costs: 7.0 points against the non-private model, from the privacy itself")
    assert "20 members" in note and "noise of std 0.0529 per coordinate" in note  # z C / m = 2.115 * 0.5 / 20
    assert "11 planned releases, 1 of them spare" in note and "0.44 of epsilon 8 left unspent" in note
    assert note in summary_table(_payload(0.8719, 0.8663))


def test_a_federation_far_below_central_dp_is_blamed_on_the_federation_too() -> None:
    note = privacy_cost_note(_payload(0.80, 0.87))
    assert note is not None and "and the federation (7.0 points)" in note


def test_no_note_without_dp_or_baselines() -> None:
    assert privacy_cost_note({"final_accuracy": 0.9, "privacy": {"unit": "none"}}) is None
    payload = _payload(0.87, 0.86)
    del payload["central_dp"]
    assert privacy_cost_note(payload) is None
