"""`fedledger new NAME`: a small project directory that runs as it is.

    fedledger new clinic                     # clinic/fedledger.toml, model.py, data.py, README.md
    fedledger run --config clinic/fedledger.toml

The project's model factory and data loader are plain Python files named from the config by path, so no
PYTHONPATH or package is needed; replace them with your own model and data.
"""

from __future__ import annotations

import argparse
import re
from importlib import resources
from pathlib import Path

from fedledger.core.errors import ConfigError

FILES = ("fedledger.toml", "model.py", "data.py", "README.md")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "new",
        help="write a small project (config, model, data loader) that `fedledger run --config` runs",
        description="Write NAME/fedledger.toml, NAME/model.py (build(input_shape, num_classes) -> nn.Module), "
                    "NAME/data.py (load_members(clients, seed)) and NAME/README.md. Then: "
                    "fedledger run --config NAME/fedledger.toml",
    )
    p.add_argument("name", metavar="NAME", help="the project directory to create (must not exist or be empty)")
    p.set_defaults(func=cmd_new)


def write_project(directory: Path) -> list[Path]:
    name = directory.name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ConfigError(f"project name {name!r}: use letters, digits, '-', '_' or '.', starting with a letter "
                          "or digit")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ConfigError(f"{directory} already exists and is not an empty directory; choose another NAME")
    templates = resources.files("fedledger.cli") / "templates"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create {directory}: {e.strerror or e}") from None
    written = []
    for filename in FILES:
        text = (templates / f"{filename}.tmpl").read_text().format(name=name)
        (directory / filename).write_text(text)
        written.append(directory / filename)
    return written


def cmd_new(args: argparse.Namespace) -> int:
    directory = Path(args.name)
    write_project(directory)
    print(f"wrote {directory}/: {', '.join(FILES)}")
    print(f"run it:  fedledger run --config {directory / 'fedledger.toml'}")
    return 0
