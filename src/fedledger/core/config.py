"""`FederationConfig`: the one description of a federated run.

Loaded from TOML, overridden by command-line flags, validated by pydantic, frozen once built.
Invalid values raise `ConfigError` with one line that names the field and the valid choices.
"""

from __future__ import annotations

import copy
import difflib
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from fedledger.core.errors import ConfigError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


_COMPRESS = re.compile(r"^srht:([0-9]+(?:\.[0-9]+)?)$")


def parse_compress(value: str) -> float | None:
    """`none` -> None; `srht:RATIO` -> RATIO (model length over sent length, 1 < RATIO <= 4096); ValueError
    with one line otherwise (fedledger.privacy.compress builds the map)."""
    v = str(value).strip().lower()
    if v in ("", "none"):
        return None
    m = _COMPRESS.match(v)
    if m is None:
        raise ValueError(f"compress must be none or srht:RATIO (e.g. srht:8), got {value!r}")
    ratio = float(m.group(1))
    if not 1 < ratio <= 4096:
        raise ValueError(f"compress srht:RATIO needs 1 < RATIO <= 4096 (the model length over the sent length), "
                         f"got {m.group(1)}")
    return ratio


class PrivacyConfig(_Frozen):
    """Which privacy unit is protected and how much privacy may be spent (see docs/privacy.md)."""

    dp: Literal["none", "record", "member"] = "none"
    epsilon: float = Field(3.0, gt=0)
    delta: float = Field(1e-5, gt=0, lt=1)
    clip_norm: float = Field(1.0, gt=0)
    adaptive_clip: bool = False
    target_quantile: float = Field(0.5, gt=0, lt=1)
    secagg: bool = False
    bits: int | Literal["auto"] = Field(
        32, description="bits per coordinate on the wire, 8..32, or auto: the fewest that hold the noised sum of the "
                        "cohort (privacy/compress.py auto_bits)")
    compress: str = Field("none", description="member-level linear compression before quantization: none or "
                                              "srht:RATIO (model length over sent length; docs/privacy.md)")
    secret_sampling: bool = False
    spare_releases: int = Field(
        2, ge=0, le=64,
        description="member-level releases planned beyond one per round, used only on a ledger: an attempt the "
                    "committee rejects (or whose aggregator misses its deadline) was unmasked, so it is accounted, "
                    "and the noise is planned for rounds + spare releases; a run that needs more stops")


    @field_validator("bits")
    @classmethod
    def _bits_range(cls, v: int | str) -> int | str:
        if v != "auto" and not 8 <= int(v) <= 32:
            raise ValueError("bits must be in 8..32 or auto")
        return v

    @field_validator("compress")
    @classmethod
    def _compress_spec(cls, v: str) -> str:
        parse_compress(v)
        return v.strip().lower()


class ChainConfig(_Frozen):
    """Where the ledger lives: `auto` (managed anvil), `memory` (py-evm) or a JSON-RPC URL."""

    chain: str = "auto"
    enabled: bool = False
    committee: int = Field(3, ge=1, le=32, description="validators who check and vote on each round")
    claim_rewards: bool = Field(False, description="after the rounds, every trainer claims its rewards on chain")

    @field_validator("chain")
    @classmethod
    def _known_chain(cls, v: str) -> str:
        if v in ("auto", "memory") or v.startswith(("http://", "https://")):
            return v
        raise ValueError("chain must be auto, memory or an http(s):// URL")


class DataConfig(_Frozen):
    """A user's own data: a table (`path`, CSV or Parquet) or a Python data factory (`factory`); see docs/api.md.

    Relative paths in a config file are relative to that file. With neither set, `dataset` names a bundled set.
    """

    path: str | None = Field(None, description="CSV (or Parquet, with pyarrow) file, one row per example")
    label: str = Field("label", description="the column holding the label")
    key: str | None = Field(None, description="column the natural partition splits by (e.g. a hospital site)")
    features: tuple[str, ...] | None = Field(None, description="feature columns (default: all but label and key)")
    categorical: tuple[str, ...] = Field((), description="columns one-hot encoded even if they hold numbers")
    drop: tuple[str, ...] = Field((), description="columns left out")
    factory: str | None = Field(
        None, description="path/to/file.py:name or package.module:name, called as factory(clients, seed)")

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if self.path is not None and self.factory is not None:
            raise ValueError("give either path (a table) or factory (Python), not both")
        return self

    @property
    def own(self) -> bool:
        return self.path is not None or self.factory is not None


#: What record-level DP (`dp = "record"`, local SGD) trains with where the config does not say:
#: * a linear model: DP-SGD's noise grows with the parameter count (its norm is sigma * C * sqrt(d) per step),
#:   and at this data size a linear model beats a network under DP (Tramer and Boneh 2021, "Differentially
#:   Private Learning Needs Better Features (or Much More Data)"); on digits the MLP (d = 9,610) ends at
#:   0.84-0.89, the logistic regression (d = 650) at 0.89-0.90;
#: * a larger batch (more records averaged per noisy step);
#: * a small clip norm with a large learning rate: nearly every per-example gradient is clipped, so a step is
#:   a normalized-gradient step of length lr * C (De et al. 2022, "Unlocking high-accuracy differentially
#:   private image classification through scale"); lr * C = 1 did best of 0.5, 1 and 2;
#: * one local epoch per round (two took more noise per step for no gain).
#: Measured on digits, 5 members, 10 rounds, epsilon 3 (docs/privacy.md, "Record-level recipe"). Non-DP runs keep
#: the plain defaults below.
RECORD_DP_RECIPE: dict[str, Any] = {"model": "logreg", "lr": 4.0, "batch_size": 64, "local_epochs": 1.0,
                                    "clip_norm": 0.25}


class FederationConfig(_Frozen):
    dataset: str = "digits"
    partition: str = "dirichlet:0.5"
    clients: int = Field(10, ge=1)
    fraction: float = Field(1.0, gt=0, le=1, description="share of members sampled per round")
    rounds: int = Field(30, ge=1)
    model: str = "mlp"
    strategy: str = "fedavg"
    optimizer: Literal["sgd", "adam"] = "sgd"
    local_epochs: float = Field(1.0, gt=0)
    local_steps: int | None = Field(None, ge=1, description="fixed local steps; overrides local_epochs")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    proximal_mu: float = Field(0.0, ge=0, description="FedProx proximal term")
    server_lr: float | None = Field(None, gt=0, description="server step size (strategy default if unset)")
    heterogeneity: float = Field(0.0, ge=0, le=1, description="spread of member compute budgets")
    dropout: float = Field(0.0, ge=0, lt=1, description="chance a sampled member drops out of a round")
    trim_fraction: float = Field(0.1, ge=0, lt=0.5)
    krum_byzantine: int = Field(1, ge=0)
    holdout_fraction: float = Field(0.2, ge=0, lt=1, description="each member's held-out share (0: none)")
    test_fraction: float = Field(0.2, gt=0, lt=1)
    max_samples: int | None = Field(None, ge=1, description="cap on training samples (quick runs)")
    seed: int = 0
    deterministic: bool = Field(
        False, description="derive every secret (keys, noise, masks, commitment randomness) from the public seed: "
                           "reproducible bit for bit, for simulations and tests only; refused on an external chain")
    out: str = "runs/latest"
    baseline: bool = False
    batched: bool = True
    train_memory_mib: int | None = Field(
        None, ge=1, description="working memory (MiB) of one block of the batched trainer, which bounds a plain "
                                "round's memory whatever the cohort (unset: DEFAULT_BLOCK_BYTES of "
                                "fedledger.learning.local); the block fixes the floating-point rounding, so runs "
                                "compare bit for bit only with the same value")
    proofs: Literal["none", "update", "training"] = Field(
        "none", description="zero-knowledge proofs every round: update (well-formed, bound to SecAgg+) or training"
    )
    attack: str = Field("", description="attacks to inject, e.g. 'label_flip:0.3,malicious_aggregator'")
    privacy: PrivacyConfig = PrivacyConfig()
    ledger: ChainConfig = ChainConfig()
    data: DataConfig = DataConfig()

    @model_validator(mode="before")
    @classmethod
    def _dp_recipe(cls, values: Any) -> Any:
        # record-level DP trains with its own defaults (RECORD_DP_RECIPE) for what the config does not set
        if not isinstance(values, dict):
            return values
        privacy = values.get("privacy")
        given = (set(privacy) if isinstance(privacy, dict) else
                 set(privacy.model_fields_set) if isinstance(privacy, PrivacyConfig) else set())
        dp = privacy.get("dp") if isinstance(privacy, dict) else getattr(privacy, "dp", None)
        if dp != "record" or values.get("optimizer", "sgd") != "sgd":
            return values
        out = {k: v for k, v in RECORD_DP_RECIPE.items() if k != "clip_norm" and k not in values}
        if "clip_norm" not in given:
            privacy = privacy.model_dump() if isinstance(privacy, PrivacyConfig) else dict(privacy or {})
            out["privacy"] = {**privacy, "clip_norm": RECORD_DP_RECIPE["clip_norm"]}
        return {**values, **out}

    @model_validator(mode="before")
    @classmethod
    def _name_own_data(cls, values: Any) -> Any:
        # own data is named after its file or factory unless the config names it (`dataset` then is a label)
        if isinstance(values, dict) and "dataset" not in values and isinstance(values.get("data"), dict):
            source = values["data"].get("path") or values["data"].get("factory")
            if source:
                stem = Path(str(source).rpartition(":")[0] if values["data"].get("factory") else str(source)).name
                values = {**values, "dataset": stem.split(".")[0] or "own"}
        return values

    @model_validator(mode="after")
    def _deterministic_only_on_dev_chains(self) -> FederationConfig:
        if self.deterministic and self.ledger.enabled and self.ledger.chain not in ("auto", "memory"):
            raise PydanticCustomError(
                "deterministic_on_external_chain",
                "deterministic mode derives every secret from the public seed; it is for simulations on a dev "
                "chain (auto, memory), not for {chain}: drop --deterministic",
                {"chain": self.ledger.chain},
            )
        return self

    def replace(self, **changes: Any) -> FederationConfig:
        return build_config({**self.model_dump(), **changes})


def _section_model(loc: tuple[object, ...]) -> type[BaseModel]:
    """The config model that holds the key at `loc` (FederationConfig or one of its sections)."""
    model: type[BaseModel] = FederationConfig
    for part in loc[:-1]:
        field_info = model.model_fields.get(str(part))
        annotation = field_info.annotation if field_info is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return model


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "config"
    if first["type"] == "extra_forbidden":
        valid = sorted(_section_model(first["loc"]).model_fields)
        close = difflib.get_close_matches(str(first["loc"][-1]), valid, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
        return f"unknown key {where!r}: {hint}"
    return f"invalid {where}: {first['msg']}"


def build_config(values: dict[str, Any]) -> FederationConfig:
    try:
        return FederationConfig.model_validate(values)
    except ValidationError as e:
        raise ConfigError(_describe(e)) from None


#: What `fedledger run` runs unless told `--plain`: the whole system. Every round on a managed chain with a
#: validator committee, member-level distributed DP through SecAgg+, a zero-knowledge proof per update,
#: and rewards claimed at the end. (The library's `FederationConfig()` defaults are plain federated
#: learning, so code that builds a config states what it adds.)
WHOLE_SYSTEM: dict[str, Any] = {
    "proofs": "update",
    "privacy": {"dp": "member", "secagg": True},
    "ledger": {"enabled": True, "chain": "auto", "claim_rewards": True},
}


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


_PATH_KEYS = ("model", "data.path", "data.factory")


def _nest(key: str, value: Any) -> dict[str, Any]:
    section, _, leaf = key.rpartition(".")
    return {section: {leaf: value}} if section else {leaf: value}


def resolve_paths(values: dict[str, Any], base: Path) -> dict[str, Any]:
    """Paths a config file names (its own data file, data factory and model factory file) made absolute against
    `base`, the file's directory, so a project runs from any working directory (`fedledger new`)."""
    from fedledger.core.plugins import resolve_file_spec

    out = dict(values)
    if isinstance(out.get("model"), str):
        out["model"] = resolve_file_spec(out["model"], base)
    data = out.get("data")
    if isinstance(data, dict):
        data = dict(data)
        if isinstance(data.get("path"), str) and not Path(data["path"]).is_absolute():
            data["path"] = str((base / data["path"]).resolve())
        if isinstance(data.get("factory"), str):
            data["factory"] = resolve_file_spec(data["factory"], base)
        out["data"] = data
    return out


def load_config(path: Path | str | None, overrides: dict[str, Any] | None = None,
                base: dict[str, Any] | None = None) -> FederationConfig:
    """`base` (if any), then a TOML file (if any), then non-None overrides (dotted keys reach sections).

    A user who leaves member-level DP (`dp = "none"` or `"record"`) also leaves what only the member-level
    pipeline has, unless asked for explicitly: secure aggregation and update proofs from `base`.
    """
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except IsADirectoryError:
            raise ConfigError(f"config file {path} is a directory") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {path} is not UTF-8 text (byte {e.start}): TOML files are UTF-8") from None
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
        values = resolve_paths(values, Path(path).parent)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key in _PATH_KEYS and isinstance(value, str):  # a path on the command line is relative to where it ran
            value = resolve_paths(_nest(key, value), Path.cwd())
            value = value[key] if "." not in key else value["data"][key.partition(".")[2]]
        section, _, leaf = key.rpartition(".")
        target = values.setdefault(section, {}) if section else values
        target[leaf] = value
    if base:
        base = copy.deepcopy(base)  # never the caller's dict: WHOLE_SYSTEM is shared by every run in a process
        if values.get("privacy", {}).get("dp", base.get("privacy", {}).get("dp")) != "member":
            base.get("privacy", {}).pop("secagg", None)
            base.pop("proofs", None)
        values = _merge(base, values)
    return build_config(values)


#: privacy settings only a DP run reads, and (of those) the ones only member-level DP reads
DP_SETTINGS = ("epsilon", "delta", "clip_norm", "adaptive_clip", "target_quantile", "bits", "secret_sampling",
               "spare_releases", "compress")
MEMBER_DP_SETTINGS = ("adaptive_clip", "target_quantile", "bits", "secret_sampling", "spare_releases", "compress")


def unused_privacy_settings(privacy: PrivacyConfig, given: Iterable[str]) -> list[str]:
    """The privacy settings among `given` (field names) that a run with this privacy unit would ignore."""
    idle = {"none": DP_SETTINGS, "record": MEMBER_DP_SETTINGS}.get(privacy.dp, ())
    if privacy.secagg:  # secure aggregation without member-level DP quantizes to `bits` and proves the clip norm
        idle = tuple(k for k in idle if k not in ("bits", "clip_norm"))
    given = set(given)
    return [k for k in idle if k in given]


def privacy_keys_in(path: Path | str | None) -> set[str]:
    """The `[privacy]` keys a TOML config file sets (none if there is no file; errors are load_config's)."""
    if path is None:
        return set()
    try:
        section = tomllib.loads(Path(path).read_text(encoding="utf-8")).get("privacy", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return set()
    return set(section) if isinstance(section, dict) else set()
