"""Every bad input and fault a user can meet ends with one line on stderr and a non-zero exit, and loses
nothing already written (issue 16, item 4). Each case goes through the real command line (`main`)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from fedledger.cli.main import main
from fedledger.ledger.anvil import find_anvil

PLAIN = ["--plain", "--dataset", "digits", "--model", "logreg", "--clients", "3", "--rounds", "2", "--quiet"]
needs_anvil = pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed (make node)")


def cli(argv: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the command line in this process: (exit code, stdout, stderr)."""
    capfd.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own exits (bad flags, --help)
        code = int(e.code or 0)
    out, err = capfd.readouterr()
    return code, out, err


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "run"
    assert main(["run", *PLAIN, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def memory_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("memory") / "run"
    assert main(["run", *PLAIN, "--chain", "memory", "--out", str(out)]) == 0
    return out


@dataclass(frozen=True)
class Case:
    """`prepare(tmp, runs)` lays out the files and returns the command; the command must exit `code` with one
    line on stderr that says `says` (and none of `never`), and leave every file that was there untouched."""

    name: str
    prepare: Callable[[Path, dict[str, Path]], list[str]]
    code: int
    says: str
    never: tuple[str, ...] = ()
    not_created: tuple[str, ...] = ()  # paths (under tmp) the command must not create


def _copy(runs: dict[str, Path], which: str, tmp: Path) -> Path:
    return Path(shutil.copytree(runs[which], tmp / which))


def _out_is_file(tmp: Path, runs: dict[str, Path]) -> list[str]:
    (tmp / "results").write_text("keep me")
    return ["run", *PLAIN, "--out", str(tmp / "results")]


def _out_under_file(tmp: Path, runs: dict[str, Path]) -> list[str]:
    (tmp / "notes.txt").write_text("keep me")
    return ["run", *PLAIN, "--out", str(tmp / "notes.txt" / "run")]


def _out_unwritable(tmp: Path, runs: dict[str, Path]) -> list[str]:
    if os.geteuid() != 0:
        locked = tmp / "locked"
        locked.mkdir(mode=0o500)
        return ["run", *PLAIN, "--out", str(locked / "run")]
    target = Path("/sys/fedledger-run")  # root writes through permission bits: a read-only file system instead
    try:
        target.mkdir()
    except OSError:
        return ["run", *PLAIN, "--out", str(target)]
    target.rmdir()
    pytest.skip("no unwritable place for root here")


def _truncated_checkpoint(tmp: Path, runs: dict[str, Path]) -> list[str]:
    run = _copy(runs, "plain", tmp)
    ckpt = run / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    return ["run", *PLAIN, "--rounds", "3", "--out", str(run)]


def _toml_not_utf8(tmp: Path, runs: dict[str, Path]) -> list[str]:
    (tmp / "fed.toml").write_bytes(b'dataset = "d\xefgits"\n'.replace(b"\xef", b"\xff"))
    return ["run", "--plain", "--config", str(tmp / "fed.toml"), "--out", str(tmp / "run")]


def _toml_unknown_key(tmp: Path, runs: dict[str, Path]) -> list[str]:
    (tmp / "fed.toml").write_text('dataset = "digits"\nroundz = 3\n')
    return ["run", "--plain", "--config", str(tmp / "fed.toml"), "--out", str(tmp / "run")]


def _toml_unknown_section_key(tmp: Path, runs: dict[str, Path]) -> list[str]:
    (tmp / "fed.toml").write_text('[privacy]\nepsilom = 2.0\n')
    return ["run", "--plain", "--config", str(tmp / "fed.toml"), "--out", str(tmp / "run")]


def _changed_config(tmp: Path, runs: dict[str, Path]) -> list[str]:
    run = _copy(runs, "plain", tmp)
    return ["run", *PLAIN, "--model", "mlp", "--out", str(run)]


def _unknown_choice(tmp: Path, runs: dict[str, Path]) -> list[str]:
    return ["run", *PLAIN, "--dataset", "imagenet", "--out", str(tmp / "run")]


def _corrupt_federation_run(tmp: Path, runs: dict[str, Path]) -> list[str]:
    run = _copy(runs, "memory", tmp)
    (run / "chain" / "federation.json").write_text('{"task_id": 1, "memb')
    return ["run", *PLAIN, "--chain", "memory", "--out", str(run)]


def _audit_missing_dir(tmp: Path, runs: dict[str, Path]) -> list[str]:
    return ["audit", str(tmp / "no-such-run")]


def _audit_memory_run(tmp: Path, runs: dict[str, Path]) -> list[str]:
    return ["audit", str(_copy(runs, "memory", tmp))]


def _audit_on_memory_chain(tmp: Path, runs: dict[str, Path]) -> list[str]:
    return ["audit", "--chain", "memory", str(_copy(runs, "memory", tmp))]


def _chain_status_without_out(tmp: Path, runs: dict[str, Path]) -> list[str]:
    os.chdir(tmp)  # the default --out is runs/latest, relative to where the user stands
    return ["chain", "status"]


def _run_on_unreachable_url(tmp: Path, runs: dict[str, Path]) -> list[str]:
    return ["run", *PLAIN, "--chain", f"http://127.0.0.1:{free_port()}", "--out", str(tmp / "run")]


def _status_of_unreachable_url(tmp: Path, runs: dict[str, Path]) -> list[str]:
    return ["chain", "status", "--chain", f"http://127.0.0.1:{free_port()}", "--out", str(tmp / "run")]


def _node_killed_mid_run(tmp: Path, runs: dict[str, Path]) -> list[str]:
    os.environ["FEDLEDGER_KILL_AT"] = "2:open:node"  # the managed anvil dies as round 2 opens
    return ["run", *PLAIN, "--rounds", "3", "--chain", "auto", "--out", str(tmp / "run")]


def _privacy_flag_without_dp(*flags: str) -> Callable[[Path, dict[str, Path]], list[str]]:
    def prepare(tmp: Path, runs: dict[str, Path]) -> list[str]:
        return ["run", *PLAIN, *flags, "--out", str(tmp / "run")]
    return prepare


def _toml_turns_dp_off_with_a_budget(tmp: Path, runs: dict[str, Path]) -> list[str]:
    (tmp / "fed.toml").write_text('dataset = "digits"\nrounds = 1\n[privacy]\ndp = "none"\nepsilon = 1.0\n')
    return ["run", "--config", str(tmp / "fed.toml"), "--out", str(tmp / "run")]


NO_DP = "does nothing without DP: this run would train with no privacy at all; add --dp record"
CASES = [
    # issue 17, item 4: a privacy flag the run would ignore is refused before any work, naming the flag
    Case("--epsilon without DP", _privacy_flag_without_dp("--epsilon", "1"), 2, f"--epsilon {NO_DP}",
         not_created=("run",)),
    Case("--delta with --dp none", _privacy_flag_without_dp("--dp", "none", "--delta", "1e-6"), 2,
         f"--delta {NO_DP}", not_created=("run",)),
    Case("--clip-norm without DP", _privacy_flag_without_dp("--clip-norm", "2"), 2, f"--clip-norm {NO_DP}"),
    Case("--bits without DP", _privacy_flag_without_dp("--bits", "16"), 2, f"--bits {NO_DP}"),
    Case("--adaptive-clip without DP", _privacy_flag_without_dp("--adaptive-clip"), 2, f"--adaptive-clip {NO_DP}"),
    Case("--bits with record-level DP", _privacy_flag_without_dp("--dp", "record", "--bits", "16"), 2,
         "--bits applies to member-level DP only (--dp member); --dp record would ignore it"),
    Case("--secret-sampling with record-level DP",
         _privacy_flag_without_dp("--dp", "record", "--secret-sampling"), 2, "--secret-sampling applies to "
         "member-level DP only"),
    # issue 17, item 2: --secagg without member-level DP runs; what it cannot do is refused in one line
    Case("--secagg with record-level DP on a chain",
         _privacy_flag_without_dp("--dp", "record", "--secagg", "--chain", "memory"), 2,
         "--secagg with --dp record runs off chain only for now"),
    Case("--secagg with a robust strategy", _privacy_flag_without_dp("--secagg", "--strategy", "median"), 2,
         "strategy median needs to see individual updates; with --secagg use fedavg"),
    Case("--secret-sampling with record-level DP through SecAgg+",
         _privacy_flag_without_dp("--dp", "record", "--secagg", "--secret-sampling"), 2,
         "--secret-sampling applies to member-level DP only"),
    Case("--epsilon with --secagg without DP", _privacy_flag_without_dp("--secagg", "--epsilon", "1"), 2,
         f"--epsilon {NO_DP}"),
    Case("a config file turning DP off with a budget", _toml_turns_dp_off_with_a_budget, 2,
         f"fed.toml {NO_DP}", not_created=("run",)),
    Case("out is a file", _out_is_file, 2, "is a file"),
    Case("out under a file", _out_under_file, 2, "cannot create --out"),
    Case("out unwritable", _out_unwritable, 2, "--out"),
    Case("truncated checkpoint", _truncated_checkpoint, 3, "checkpoint.pt is truncated or damaged"),
    Case("non-UTF-8 TOML", _toml_not_utf8, 2, "is not UTF-8"),
    Case("unknown TOML key", _toml_unknown_key, 2, "unknown key 'roundz': did you mean 'rounds'?"),
    Case("unknown TOML key in a section", _toml_unknown_section_key, 2, "did you mean 'epsilon'?"),
    Case("changed configuration", _changed_config, 2, "model: 'logreg' in the run, 'mlp' now"),
    Case("unknown choice", _unknown_choice, 2, "invalid choice: 'imagenet'", never=("usage:",)),
    Case("corrupt federation.json in run", _corrupt_federation_run, 3, "federation.json is damaged"),
    Case("audit of a missing directory", _audit_missing_dir, 3, "does not exist", never=("ledger record",)),
    Case("audit of a memory run", _audit_memory_run, 3, "--chain memory", never=("chain deploy",),
         not_created=("memory/chain/anvil-state.json", "memory/chain/node.json", "memory/chain/anvil.log")),
    Case("audit on a memory chain", _audit_on_memory_chain, 3, "nothing to audit", never=("chain deploy",)),
    Case("chain status without --out", _chain_status_without_out, 3, "no chain state in runs/latest",
         not_created=("runs",)),
    Case("run on an unreachable URL", _run_on_unreachable_url, 6, "cannot reach the JSON-RPC node",
         never=("HTTPConnectionPool", "Max retries")),
    Case("status of an unreachable URL", _status_of_unreachable_url, 6, "(connection refused)",
         never=("HTTPConnectionPool", "Max retries")),
]
SLOW_CASES = [
    Case("anvil killed mid-run", _node_killed_mid_run, 6, "the chain node stopped answering",
         never=("requests", "ConnectionError")),
]


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c.name) for c in CASES]
    + [pytest.param(c, id=c.name, marks=[pytest.mark.slow, pytest.mark.anvil, needs_anvil]) for c in SLOW_CASES],
)
def test_bad_input_is_one_line_and_loses_nothing(case: Case, tmp_path: Path, plain_run: Path, memory_run: Path,
                                                 capfd: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FEDLEDGER_KILL_AT", raising=False)
    argv = case.prepare(tmp_path, {"plain": plain_run, "memory": memory_run})
    before = snapshot(tmp_path)
    code, _, err = cli(argv, capfd)
    lines = err.strip().splitlines()
    assert code == case.code, err
    assert len(lines) == 1 and lines[0].startswith("fedledger"), err
    assert case.says in lines[0] and "Traceback" not in err
    assert not any(word in err for word in case.never), err
    after = snapshot(tmp_path)
    assert {k: after.get(k) for k in before} == before  # nothing already written was changed or removed
    assert not any((tmp_path / p).exists() for p in case.not_created)


@pytest.mark.slow
@pytest.mark.anvil
@needs_anvil
def test_a_run_whose_node_died_resumes_and_its_audit_ignores_a_corrupt_federation_file(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    argv = ["run", *PLAIN, "--rounds", "3", "--chain", "auto", "--out", str(out)]
    monkeypatch.setenv("FEDLEDGER_KILL_AT", "2:open:node")
    assert cli(argv, capfd)[0] == 6
    assert [r["round"] for r in json.loads((out / "results.json").read_text())["rounds"]] == [1]
    code, stdout, err = cli([a for a in argv if a != "--quiet"], capfd)
    assert code == 0, err
    assert stdout.splitlines()[1] == "resumed after round 1"  # said at the start, not after the run
    assert len(json.loads((out / "results.json").read_text())["rounds"]) == 3
    code, stdout, err = cli(["chain", "status", "--out", str(out)], capfd)
    assert code == 0 and "managed anvil on" in stdout, err
    assert "http://" not in stdout  # the node this command started is gone when it exits: no URL to try
    (out / "chain" / "federation.json").write_text("{not json")  # audit trusts only the chain and the blobs
    code, stdout, err = cli(["audit", str(out)], capfd)
    assert code == 0 and stdout.startswith("audit ok: task 1, 3 finalized rounds"), err


# -- output without noise -----------------------------------------------------------------------------------


def test_help_imports_no_heavy_module_and_shows_defaults() -> None:
    code = (
        "import sys\n"
        "from fedledger.cli.main import build_parser\n"
        "p = build_parser(); p.format_help()\n"
        "assert not {'torch', 'numpy', 'pydantic', 'web3'} & set(sys.modules), sorted(sys.modules)\n"
        "run = p._subparsers._group_actions[0].choices['run'].format_help()\n"
        "assert 'torch' not in sys.modules\n"
        "print(run)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())  # argparse wraps lines
    assert "--rounds ROUNDS rounds to run (default: 30)" in text
    assert "--epsilon EPSILON" in text and "PRIVACY." not in text and "LEDGER." not in text
    assert "(default: member; with --plain none)" in text and "(default: auto; with --plain off)" in text


def test_builtin_names_on_the_command_line_are_the_registries() -> None:
    from fedledger.cli.main import DATASET_NAMES, MODEL_NAMES, STRATEGY_NAMES
    from fedledger.data import DATASETS
    from fedledger.learning import STRATEGIES
    from fedledger.models import MODELS

    assert (set(DATASET_NAMES), set(STRATEGY_NAMES), set(MODEL_NAMES)) == (set(DATASETS), set(STRATEGIES), set(MODELS))


def test_circom_statistics_reach_stderr_without_colour_codes(capfd: pytest.CaptureFixture[str]) -> None:
    from fedledger.zk.backend import _quiet_stdout

    with _quiet_stdout():
        os.write(1, b"\x1b[32mtemplate instances\x1b[0m: 242\nwires: 12\n")
    out, err = capfd.readouterr()
    assert out == "" and err.splitlines() == ["circom: template instances: 242", "circom: wires: 12"]


def test_a_fedledger_warning_is_one_line_once(capfd: pytest.CaptureFixture[str]) -> None:
    import warnings

    from fedledger.cli import main as cli_main
    from fedledger.zk.backend import DevelopmentSetupWarning

    cli_main._warned.clear()
    for where in range(2):  # two places, one text: as setup() and _load() both warn
        cli_main._show_warning(DevelopmentSetupWarning("DEVELOPMENT-ONLY KEYS"), DevelopmentSetupWarning,
                               f"/src/x{where}.py", 10 + where)
    err = capfd.readouterr().err
    assert err == "fedledger: warning: DEVELOPMENT-ONLY KEYS\n"
    assert warnings.showwarning is not cli_main._show_warning  # only installed while a command runs


@pytest.mark.slow
def test_whole_system_run_warns_about_development_keys_once_without_a_source_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("FEDLEDGER_KILL_AT", None)
    done = subprocess.run(
        [sys.executable, "-m", "fedledger.cli", "run", "--dataset", "digits", "--model", "logreg", "--clients", "4",
         "--rounds", "1", "--chain", "memory", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, env=env, check=False, timeout=900)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("DEVELOPMENT-ONLY") == 1, done.stderr
    assert ".py:" not in done.stderr and "\x1b[" not in done.stderr + done.stdout
    lines = done.stdout.splitlines()  # the privacy outlook comes before the first round (issue 17, item 4)
    assert lines[1].startswith("privacy: member level") and lines[2].startswith("round 1/1 ")
    assert done.stderr.count("fedledger: warning: member-level DP with 4 members") == 1, done.stderr
