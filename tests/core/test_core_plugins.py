"""User code named by a spec: `path/to/file.py:name` (no PYTHONPATH) or `package.module:name`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fedledger.core.errors import ConfigError
from fedledger.core.plugins import is_file_spec, load_object, resolve_file_spec, spec_of
from fedledger.models import build_model
from fedledger.models.zoo import mlp


def test_file_and_module_specs(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("WIDTH = 5\n")
    (tmp_path / "net.py").write_text("from helpers import WIDTH\ndef build(shape, classes):\n    return WIDTH\n")
    spec = f"{tmp_path / 'net.py'}:build"
    assert is_file_spec(spec) and not is_file_spec("pkg.mod:build") and is_file_spec("net.py:build")
    fn = load_object(spec)
    assert fn((1,), 2) == 5 and load_object(spec) is fn  # loaded once; a sibling module imports
    assert str(tmp_path) not in sys.path  # the file's directory was importable only while it loaded
    assert load_object("fedledger.models.zoo:mlp") is mlp
    assert build_model("fedledger.models.zoo:mlp", (4,), 3)[-1].out_features == 3
    assert resolve_file_spec("net.py:build", tmp_path) == spec and resolve_file_spec("a.b:c", tmp_path) == "a.b:c"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nothing", "must be path/to/file.py:name"),
        ("missing_dir/net.py:build", "file not found"),
        ("no_such_module_xyz:build", "cannot import factory 'no_such_module_xyz:build': ModuleNotFoundError"),
        ("fedledger.models.zoo:nope", "has no 'nope'"),
        ("fedledger.models.zoo:MODELS", "is not callable"),
    ],
)
def test_bad_specs_are_one_line(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_object(spec)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_a_file_that_fails_to_import_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("import numpy\nraise RuntimeError('no GPU here')\n")
    with pytest.raises(ConfigError, match="failed to load: RuntimeError: no GPU here"):
        load_object(f"{tmp_path / 'bad.py'}:build")


def test_spec_of_names_functions_again() -> None:
    assert spec_of(mlp) == "fedledger.models.zoo:mlp"
    assert spec_of(test_bad_specs_are_one_line) == f"{Path(__file__).resolve()}:test_bad_specs_are_one_line"
    with pytest.raises(ConfigError, match="module-level"):
        spec_of(lambda shape, classes: None)

    def nested(shape: tuple[int, ...], classes: int) -> None: ...

    with pytest.raises(ConfigError, match="module-level"):
        spec_of(nested)
