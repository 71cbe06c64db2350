"""`Federation`: fedledger from Python. Build from a config, plug in your data and your model, run, read results.

    import fedledger

    fed = fedledger.Federation({"rounds": 5, "clients": 4, "partition": "natural",
                                "data": {"path": "patients.csv", "label": "outcome", "key": "site"}},
                               model=my_factory)          # factory(input_shape, num_classes) -> nn.Module
    result = fed.run("runs/patients")                     # RunResult: rounds, final_accuracy, ...
    fed.export("models/patients", format="onnx")
    model, preprocessing = fedledger.load_model("models/patients")

A thin facade over `FederationConfig` (the config), `fedledger.data` (the data) and `Simulation` (the run): it
adds nothing those do not do, so a run from Python and the same run from `fedledger run --config` agree.
Library defaults are plain federated learning; `whole_system=True` starts from what `fedledger run` runs
(ledger, member-level DP through SecAgg+, update proofs), exactly as the command line does without --plain.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fedledger.core.config import WHOLE_SYSTEM, FederationConfig, load_config
from fedledger.core.errors import ConfigError
from fedledger.core.plugins import resolve_file_spec, spec_of
from fedledger.data import FederatedData, load_data
from fedledger.data.members import call_factory, from_members
from fedledger.sim.federation import RoundRecord, RunResult, Simulation

ConfigLike = FederationConfig | Mapping[str, Any] | str | Path | None


def _dotted(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def build(config: ConfigLike = None, *, whole_system: bool = False, **overrides: Any) -> FederationConfig:
    """A FederationConfig from a FederationConfig, a dict (sections as nested dicts), or a TOML file path;
    keyword overrides on top (`privacy={"dp": "record"}` or `rounds=5`)."""
    base = WHOLE_SYSTEM if whole_system else None
    if isinstance(config, FederationConfig):
        if whole_system:
            raise ConfigError("whole_system applies when building a config; this FederationConfig is built already")
        return config.replace(**overrides) if overrides else config
    if isinstance(config, str | Path):
        return load_config(Path(config), _dotted(overrides), base=base)
    if config is None or isinstance(config, Mapping):
        return load_config(None, _dotted({**(config or {}), **overrides}), base=base)
    raise ConfigError(f"config must be a FederationConfig, a dict or a TOML path, not {type(config).__name__}")


class Federation:
    """One federated run, configured from Python.

    config: a FederationConfig, a dict of its fields (sections `privacy`, `ledger`, `data` as nested dicts), or
        the path of a TOML file; keyword arguments override it.
    data: where the members' data comes from, if not from the config:
        - a data factory `factory(clients, seed)` returning one `(X, y)` or torch Dataset per member, or
          `{"members": [...], "test": (X, y)}` (see `fedledger.data.members`);
        - the members themselves: a list (or name -> member mapping) of `(X, y)` / Datasets, or that dict;
        - a FederatedData;
        - a path to a CSV/Parquet table (the config's `data.label`, `data.key` say which columns are which).
    model: a model name (`logreg`, `mlp`, ...), a spec (`path/to/model.py:factory`, `package.module:factory`),
        or the factory itself, `factory(input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module`,
        a module-level function or class (its spec is recorded in the run's config and export).
    whole_system: start from what `fedledger run` runs (ledger, DP, proofs) rather than plain FL.
    """

    def __init__(self, config: ConfigLike = None, *, data: Any = None, model: str | Callable[..., Any] | None = None,
                 whole_system: bool = False, **overrides: Any) -> None:
        cfg = build(config, whole_system=whole_system, **overrides)
        if model is not None:
            spec = resolve_file_spec(model, Path.cwd()) if isinstance(model, str) else spec_of(model, "model factory")
            cfg = cfg.replace(model=spec)
        self._data: FederatedData | None = None
        self._factory: Callable[..., Any] | None = None
        if isinstance(data, str | Path):
            cfg = cfg.replace(dataset=Path(data).name.split(".")[0] or "own",
                              data={**cfg.data.model_dump(), "path": str(Path(data).resolve()), "factory": None})
        elif isinstance(data, FederatedData):
            self._data = data
            cfg = cfg.replace(clients=len(data.members), dataset=data.dataset)
        elif callable(data):
            self._factory = data
            try:
                spec = spec_of(data, "data factory")
            except ConfigError:
                spec = f"python:{getattr(data, '__qualname__', type(data).__name__)}"  # recorded, not reloadable
            name = getattr(data, "__name__", "own")
            cfg = cfg.replace(dataset=name, data={**cfg.data.model_dump(), "factory": spec, "path": None})
        elif isinstance(data, Mapping | Sequence):
            test = None
            members = data
            if isinstance(data, Mapping) and "members" in data:
                members, test = data["members"], data.get("test")
            self._data = from_members(members, test=test, seed=cfg.seed, holdout_fraction=cfg.holdout_fraction,
                                      test_fraction=cfg.test_fraction,
                                      class_names=tuple(data.get("class_names", ())) if isinstance(data, Mapping)
                                      else ())
            cfg = cfg.replace(clients=len(self._data.members),
                              dataset=cfg.dataset if "dataset" in overrides else "own")
        elif data is not None:
            raise ConfigError(f"data must be a factory, members, FederatedData or a table path, "
                              f"not {type(data).__name__}")
        self.config: FederationConfig = cfg
        self.simulation: Simulation | None = None
        self.result: RunResult | None = None
        self.out: Path | None = None

    @property
    def data(self) -> FederatedData:
        """The members' data (loaded on first use): train and held-out split per member, the global test set."""
        if self._data is None:
            cfg = self.config
            if self._factory is not None:
                assert cfg.data.factory is not None
                self._data = call_factory(self._factory, cfg.data.factory, cfg.clients, cfg.seed,
                                          dataset=cfg.dataset, holdout_fraction=cfg.holdout_fraction,
                                          test_fraction=cfg.test_fraction)
            else:
                self._data = load_data(cfg)
        return self._data

    def run(self, out: str | Path | None = None, *,
            on_round: Callable[[RoundRecord], None] | None = None) -> RunResult:
        """Run every round. With `out` (default: the config's `out`), the run directory gets checkpoint.pt after
        each round, model.json, and results.json at the end, and running again on it resumes."""
        where = Path(out) if out is not None else Path(self.config.out)
        if out is not None and str(where) != self.config.out:
            self.config = self.config.replace(out=str(where))
        self.simulation = Simulation(self.config, data=self.data)
        self.result = self.simulation.run(where, on_round=on_round)
        self.out = where
        tmp = where / "results.json.tmp"
        tmp.write_text(json.dumps(self.result.to_json(), indent=2))
        os.replace(tmp, where / "results.json")
        return self.result

    def export(self, dest: str | Path, format: str = "safetensors") -> Path:
        """Write the final global model of this run (see `fedledger export`); returns the manifest's path."""
        from fedledger.sim.export import export_run

        if self.out is None:
            raise ConfigError("nothing to export yet: call run() first")
        return export_run(self.out, dest, format)
