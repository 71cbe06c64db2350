"""Members' data handed over from Python: per-member tensors, arrays or torch Datasets.

A data factory (`[data] factory = "loader.py:load_members"`) is called as `factory(clients, seed)` and returns
either one entry per member, or a mapping with `members` (and optionally `test` and `class_names`):

    def load_members(clients: int, seed: int):
        return {"members": [(X0, y0), (X1, y1), ...], "test": (X_test, y_test)}

A member is `(X, y)` (numpy arrays or torch tensors: features [n, *input_shape], integer labels [n]) or a
map-style torch Dataset whose items are `(x, y)`. A mapping of name -> member names the members. Without
`test`, a stratified `test_fraction` of every member's rows is set apart as the global test set; each member's
held-out split is then a stratified `holdout_fraction` of what is left. The data are used as given: no
preprocessing is fitted (the factory standardizes if the model needs it), so an export carries none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from fedledger.core.errors import ConfigError, DataError
from fedledger.core.rng import numpy_rng
from fedledger.data.partition import stratified_pick
from fedledger.data.types import FederatedData, Member, Split

FACTORY_SIGNATURE = "factory(clients: int, seed: int) -> list[(X, y) | Dataset] | {'members': ..., 'test': ...}"


def _array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def as_split(member: Any, what: str) -> Split:
    """One member's examples as a Split (float32 features, int64 labels)."""
    if isinstance(member, tuple | list) and len(member) == 2:
        X, y = _array(member[0]), _array(member[1])
    elif len(getattr(member, "tensors", ())) == 2:  # a TensorDataset: its two tensors, without a per-item loop
        X, y = _array(member.tensors[0]), _array(member.tensors[1])
    elif hasattr(member, "__getitem__") and hasattr(member, "__len__") and not isinstance(member, str | bytes):
        # a map-style torch Dataset
        n = len(member)
        if n == 0:
            raise DataError(f"{what} is empty")
        try:
            items = [member[i] for i in range(n)]
            X = np.stack([_array(x) for x, _ in items])
            y = np.array([int(_array(t)) for _, t in items])
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"{what}: a Dataset item is not (features, label): {type(e).__name__}: {e}") from None
    else:
        raise DataError(f"{what} is a {type(member).__name__}; give (X, y) arrays/tensors or a torch Dataset")
    if X.ndim < 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise DataError(f"{what}: features {X.shape} and labels {y.shape} do not match ([n, ...] and [n])")
    if not np.issubdtype(y.dtype, np.integer) and not (np.issubdtype(y.dtype, np.floating)
                                                       and np.all(np.mod(y, 1) == 0)):
        raise DataError(f"{what}: labels must be integer class indices, got {y.dtype}")
    if len(y) and y.min() < 0:
        raise DataError(f"{what}: labels must be class indices >= 0, got {int(y.min())}")
    if not np.issubdtype(X.dtype, np.number) and X.dtype != np.bool_:
        raise DataError(f"{what}: features must be numbers, got {X.dtype}")
    X = X.astype(np.float32)
    if not np.isfinite(X).all():
        raise DataError(f"{what}: features contain NaN or infinity; impute them in the data factory")
    return Split(X=X, y=y.astype(np.int64))


def from_members(
    members: Sequence[Any] | Mapping[str, Any],
    *,
    test: Any = None,
    dataset: str = "own",
    seed: int = 0,
    holdout_fraction: float = 0.2,
    test_fraction: float = 0.2,
    class_names: Sequence[str] = (),
) -> FederatedData:
    """Members' own examples -> FederatedData (see the module docstring)."""
    if isinstance(members, Mapping):
        names, entries = [str(k) for k in members], list(members.values())
    elif isinstance(members, Sequence) and not isinstance(members, str | bytes):
        names, entries = [f"member-{i}" for i in range(len(members))], list(members)
    else:
        raise DataError(f"members must be a list or a mapping of members, got {type(members).__name__}")
    if not entries:
        raise DataError("the data source gave no members")
    splits = [as_split(m, f"member {name!r}") for name, m in zip(names, entries, strict=True)]
    shapes = {s.X.shape[1:] for s in splits}
    if len(shapes) != 1:
        raise DataError(f"members' features have different shapes: {sorted(shapes)}")
    test_split = as_split(test, "the test set") if test is not None else None
    if test_split is not None and test_split.X.shape[1:] != splits[0].X.shape[1:]:
        raise DataError(f"test features {test_split.X.shape[1:]} differ from members' {splits[0].X.shape[1:]}")

    pieces: list[Split] = []
    kept: list[Split] = []
    for i, s in enumerate(splits):
        if test_split is None:
            take = round(len(s) * test_fraction)
            out = stratified_pick(s.y, np.zeros(len(s), dtype=np.int64), np.array([min(take, len(s) - 2)]),
                                  numpy_rng(seed, "data", dataset, "test", i)) if take > 0 and len(s) > 2 else \
                np.zeros(len(s), dtype=bool)
            pieces.append(Split(X=s.X[out], y=s.y[out]))
            s = Split(X=s.X[~out], y=s.y[~out])
        kept.append(s)
    if test_split is None:
        test_split = Split.concat(pieces)
        if len(test_split) == 0:
            raise DataError("members are too small to set a test set apart; give the factory's result a 'test'")

    built = []
    for i, (name, s) in enumerate(zip(names, kept, strict=True)):
        n = len(s)
        if holdout_fraction > 0:
            if n < 2:
                raise DataError(f"member {name!r} has {n} example(s) left for training; need at least 2")
            hold = int(np.clip(round(n * holdout_fraction), 1, n - 1))
            mask = stratified_pick(s.y, np.zeros(n, dtype=np.int64), np.array([hold]),
                                   numpy_rng(seed, "data", dataset, "holdout", i))
        else:
            if n < 1:
                raise DataError(f"member {name!r} has no examples left for training")
            mask = np.zeros(n, dtype=bool)
        built.append(Member(index=i, name=name, train=Split(X=s.X[~mask], y=s.y[~mask]),
                            holdout=Split(X=s.X[mask], y=s.y[mask])))
    num_classes = max(len(class_names), 1 + max(int(s.y.max()) for s in [*splits, test_split] if len(s)))
    return FederatedData(
        dataset=dataset,
        input_shape=tuple(int(d) for d in splits[0].X.shape[1:]),
        num_classes=num_classes,
        members=tuple(built),
        test=test_split,
        partition="own",
        seed=seed,
        standardization=None,
        class_names=tuple(map(str, class_names)),
    )


def call_factory(factory: Callable[..., Any], spec: str, clients: int, seed: int, *, dataset: str,
                 holdout_fraction: float, test_fraction: float) -> FederatedData:
    """Call a data factory as `factory(clients, seed)` and turn what it returns into FederatedData."""
    try:
        got = factory(clients, seed)
    except (DataError, ConfigError):
        raise
    except Exception as e:  # user code: reported in one line
        raise DataError(f"data factory {spec!r} failed: {type(e).__name__}: {e} (expected {FACTORY_SIGNATURE})") \
            from None
    test, class_names = None, ()
    if isinstance(got, Mapping) and "members" in got:
        test, class_names = got.get("test"), tuple(got.get("class_names", ()))
        got = got["members"]
    data = from_members(got, test=test, dataset=dataset, seed=seed, holdout_fraction=holdout_fraction,
                        test_fraction=test_fraction, class_names=class_names)
    if len(data.members) != clients:
        raise DataError(f"data factory {spec!r} returned {len(data.members)} members; the config asks for "
                        f"clients = {clients} (set clients to match)")
    return data
