"""The command line as a user meets it: files written, one-line errors, exit codes."""

from __future__ import annotations

import json

import pytest

from fedledger.cli.main import main

ARGS = ["run", "--plain", "--dataset", "digits", "--clients", "5", "--rounds", "2", "--model", "logreg", "--quiet"]


def test_run_writes_results_and_plot(tmp_path) -> None:
    out = tmp_path / "run"
    assert main([*ARGS, "--out", str(out), "--baseline"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert {"config", "rounds", "final_accuracy", "centralized_accuracy", "accuracy_ratio"} <= res.keys()
    assert set(res["rounds"][0]) >= {"round", "accuracy", "loss", "participants", "dropped", "bytes_up",
                                     "bytes_down", "seconds"}
    assert len(res["rounds"]) == 2 and res["config"]["clients"] == 5
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_config_file_then_flags(tmp_path) -> None:
    cfg = tmp_path / "fed.toml"
    cfg.write_text('dataset = "breast_cancer"\nclients = 4\nrounds = 9\nmodel = "logreg"\n')
    out = tmp_path / "run"
    assert main(["run", "--plain", "--config", str(cfg), "--rounds", "1", "--quiet", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert (res["config"]["dataset"], res["config"]["rounds"]) == ("breast_cancer", 1)


@pytest.mark.parametrize(
    ("flag", "value", "choice"),
    [("--dataset", "imagenet", "digits"), ("--strategy", "fedmagic", "fedavg")],
)
def test_unknown_names_list_the_choices_and_exit_2(capsys, flag: str, value: str, choice: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*ARGS, flag, value])
    assert exc.value.code == 2
    assert choice in capsys.readouterr().err


def test_unknown_model_is_one_line_exit_2(tmp_path, capsys) -> None:
    assert main([*ARGS, "--model", "resnet", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "mlp" in err and "Traceback" not in err


def test_more_members_than_samples_is_one_clear_line(tmp_path, capsys) -> None:
    code = main([*ARGS, "--clients", "5000", "--partition", "iid", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.count("\n") == 0 and "5000" in err


def test_nan_loss_is_one_clear_line(tmp_path, capsys) -> None:
    code = main([*ARGS, "--lr", "1e30", "--model", "mlp", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 4 and "round 1" in err and err.count("\n") == 0


def test_bad_value_in_range_is_exit_2(tmp_path, capsys) -> None:
    assert main([*ARGS, "--dropout", "1.5", "--out", str(tmp_path)]) == 2
    assert "dropout" in capsys.readouterr().err


def _config(*flags: str):
    from fedledger.cli.main import build_parser, config_from_args

    return config_from_args(build_parser().parse_args(["run", *flags]))


def test_run_defaults_to_the_whole_system_and_plain_turns_it_off() -> None:
    cfg = _config()
    assert cfg.ledger.enabled and cfg.ledger.chain == "auto" and cfg.ledger.claim_rewards
    assert (cfg.privacy.dp, cfg.privacy.secagg, cfg.proofs) == ("member", True, "update")
    plain = _config("--plain")
    assert not plain.ledger.enabled
    assert (plain.privacy.dp, plain.privacy.secagg, plain.proofs) == ("none", False, "none")
    no_dp = _config("--dp", "none")  # leaving member-level DP leaves what only it has
    assert no_dp.ledger.enabled and (no_dp.privacy.secagg, no_dp.proofs) == (False, "none")
    assert not _config("--chain", "off").ledger.enabled
    assert _config("--plain", "--chain", "memory").ledger.enabled
