"""User code named in a config: `path/to/file.py:name` or `package.module:name`.

A user's model factory and data loader are named by a spec string, so that a config file (and the
`results.json` and export that record it) says exactly which code built the model. A spec whose module
part ends in `.py` (or contains a path separator) is loaded from that file, so no `PYTHONPATH` is needed;
anything else is imported as a module. Every failure is a `ConfigError` with one line.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedledger.core.errors import ConfigError


def is_file_spec(spec: str) -> bool:
    """True if `spec` names a Python file (`dir/model.py:build`) rather than an importable module."""
    module, sep, _ = spec.rpartition(":")
    return bool(sep) and (module.endswith(".py") or "/" in module or "\\" in module)


def split_spec(spec: str, what: str) -> tuple[str, str]:
    module, sep, attr = str(spec).rpartition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"{what} {spec!r} must be path/to/file.py:name or package.module:name")
    return module, attr


def _load_file(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"{what} file not found: {path}")
    # One module object per file content and place: loading the same file twice gives the same module,
    # and the name never collides with an importable module (or with the `__main__` of a script).
    resolved = path.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    name = f"fedledger_user_{resolved.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, resolved)
    if loader_spec is None or loader_spec.loader is None:
        raise ConfigError(f"{what} file {path} cannot be loaded as Python")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    # The file's own directory is importable while it loads, so `from helpers import x` beside it works.
    added = str(resolved.parent) not in sys.path
    if added:
        sys.path.insert(0, str(resolved.parent))
    try:
        loader_spec.loader.exec_module(module)
    except Exception as e:  # user code: any failure is the user's, reported in one line
        del sys.modules[name]
        raise ConfigError(f"{what} file {path} failed to load: {type(e).__name__}: {e}") from None
    finally:
        if added:
            sys.path.remove(str(resolved.parent))
    return module


def load_object(spec: str, what: str = "factory") -> Callable[..., Any]:
    """The callable `spec` names; ConfigError (one line) if it cannot be found or is not callable."""
    module_name, attr = split_spec(spec, what)
    if is_file_spec(spec):
        module = _load_file(Path(module_name), what)
    else:
        try:
            module = importlib.import_module(module_name)
        except Exception as e:  # ImportError, or the module itself raised while importing
            raise ConfigError(f"cannot import {what} {spec!r}: {type(e).__name__}: {e}") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{what} {spec!r}: {module_name} has no {attr!r}") from None
    if not callable(obj):
        raise ConfigError(f"{what} {spec!r} is not callable")
    return obj


def spec_of(fn: Callable[..., Any], what: str = "factory") -> str:
    """The spec string that names `fn` again: `file.py:name` for a function defined in a file (a script's
    `__main__` included), `module:name` for one in an importable module. Refuses lambdas and nested functions,
    which no spec can name."""
    name = getattr(fn, "__qualname__", "")
    if not name or "<" in name or "." in name:
        raise ConfigError(f"{what} {fn!r} must be a module-level function (a spec names it in the run's config)")
    module = getattr(fn, "__module__", None) or ""
    try:
        source = inspect.getsourcefile(fn) if inspect.isfunction(fn) or inspect.isclass(fn) else None
    except TypeError:  # a built-in
        source = None
    if source is not None and not Path(source).is_file():  # code typed at a prompt or given to python -c
        source = None
    installed = source is not None and any(part in ("site-packages", "dist-packages") for part in Path(source).parts)
    # An installed package (or fedledger itself) is named by module; a user's own file by its path, which works
    # whatever the current directory and sys.path are when the spec is loaded again (a resume, an export).
    if module and module != "__main__" and (installed or source is None or module.split(".")[0] == "fedledger"):
        return f"{module}:{name}"
    if source is None:
        raise ConfigError(f"{what} {name!r} is not defined in a file; define it in a .py file")
    return f"{Path(source).resolve()}:{name}"


def resolve_file_spec(spec: str, base: Path) -> str:
    """`spec` with a relative file path made absolute against `base` (a config file's directory)."""
    if not is_file_spec(spec):
        return spec
    module, attr = split_spec(spec, "spec")
    path = Path(module)
    return spec if path.is_absolute() else f"{(base / path).resolve()}:{attr}"
