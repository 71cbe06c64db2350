"""Economics benchmark (issue 14, item 6): `fedledger economics` at its defaults (60 rounds, 20 trainers,
10 validators, 5 aggregators, 20% adversarial in every role, secure aggregation: scored from group sums only).

Figures: the targets' metrics (reputation-quality Spearman and Pearson, honest share of rewards, net tokens
per kind, flag precision and recall) and the extra privacy cost of releasing group sums under a reference
member-level DP plan. `--quick`: 15 rounds, 10 trainers (a smoke run). `bench/run.py --only economics` writes
bench/results/economics.json.
"""

from __future__ import annotations

import json
from typing import Any

from fedledger.sim.economics import EconomicsConfig, run_economics

KEYS = ("reputation_quality_spearman", "reputation_quality_pearson", "honest_reward_share",
        "honest_trainer_reward_share", "net_by_kind", "free_riders_and_poisoners_below_stake", "flag_precision",
        "flag_recall", "validator_agreement_by_kind", "final_accuracy", "group_release_privacy", "settings")


def run(quick: bool = False) -> dict[str, Any]:
    cfg = EconomicsConfig(rounds=15, members=10, validators=5, aggregators=3) if quick else EconomicsConfig()
    result = run_economics(cfg)
    figures = {k: result[k] for k in KEYS}
    figures["command"] = (f"fedledger economics --rounds {cfg.rounds} --members {cfg.members} --validators "
                          f"{cfg.validators} --aggregators {cfg.aggregators} --seed {cfg.seed} --out DIR")
    return figures


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))
