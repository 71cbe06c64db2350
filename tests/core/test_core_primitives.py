"""Hashing, Merkle trees and the blob store: the integrity primitives everything else relies on."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fedledger.core.blobstore import BlobStore
from fedledger.core.config import load_config
from fedledger.core.errors import ConfigError, IntegrityError
from fedledger.core.hashing import Usage, domain_hash
from fedledger.core.merkle import MerkleTree, verify_proof
from fedledger.core.vectors import ParamLayout, from_bytes, to_bytes


def test_domains_separate_equal_bytes() -> None:
    assert domain_hash(Usage.MODEL, b"x") != domain_hash(Usage.BLOB, b"x")


def test_part_boundaries_are_unambiguous() -> None:
    assert domain_hash(Usage.BLOB, b"ab", b"c") != domain_hash(Usage.BLOB, b"a", b"bc")


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=40), st.data())
def test_every_leaf_proves_membership(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree(leaves)
    i = data.draw(st.integers(0, len(leaves) - 1))
    verify_proof(tree.root, leaves[i], tree.proof(i))


@given(st.lists(st.binary(min_size=1, max_size=20), min_size=2, max_size=30, unique=True), st.data())
def test_a_foreign_leaf_is_rejected(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree(leaves[1:])
    i = data.draw(st.integers(0, len(leaves) - 2))
    with pytest.raises(IntegrityError):
        verify_proof(tree.root, leaves[0], tree.proof(i))


def test_blob_roundtrip_and_tamper_detection(tmp_path) -> None:
    store = BlobStore(tmp_path)
    addr = store.put(b"model bytes")
    assert store.get(addr) == b"model bytes"
    assert addr in store
    path = next(p for p in tmp_path.rglob("*") if p.is_file())
    path.write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="does not match"):
        store.get(addr)
    with pytest.raises(IntegrityError, match="not in the store"):
        store.get(b"\x00" * 32)


def test_layout_roundtrip_keeps_leading_member_dimension() -> None:
    params = {"w": torch.randn(3, 4), "b": torch.randn(4)}
    layout = ParamLayout.of(params)
    stacked = {k: torch.stack([v, 2 * v]) for k, v in params.items()}
    flat = layout.flatten(stacked)
    assert flat.shape == (2, 16)
    back = layout.unflatten(flat)
    assert torch.equal(back["w"][1], 2 * params["w"])
    assert torch.equal(from_bytes(to_bytes(flat[0])), flat[0])


def test_config_from_toml_with_overrides(tmp_path) -> None:
    path = tmp_path / "fed.toml"
    path.write_text('dataset = "breast_cancer"\nrounds = 5\n[privacy]\nepsilon = 2.0\n')
    cfg = load_config(path, {"rounds": 7, "privacy.delta": 1e-6, "lr": None})
    assert (cfg.dataset, cfg.rounds, cfg.privacy.epsilon, cfg.privacy.delta) == ("breast_cancer", 7, 2.0, 1e-6)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rounds = 0", "invalid rounds"),
        ("colour = 1", "unknown key .colour.: valid keys: attack, baseline"),
        ("roundss = 1", "did you mean .rounds."),
        ("rounds = [", "not valid TOML"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_config_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_leaving_member_dp_does_not_change_the_whole_system_for_later_runs() -> None:
    import copy

    from fedledger.core.config import WHOLE_SYSTEM

    before = copy.deepcopy(WHOLE_SYSTEM)
    assert load_config(None, {"privacy.dp": "none"}, base=WHOLE_SYSTEM).privacy.secagg is False
    assert before == WHOLE_SYSTEM
    assert load_config(None, {}, base=WHOLE_SYSTEM).privacy.secagg is True


def test_paths_given_as_overrides_are_relative_to_the_working_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, {"model": "nets/a.py:build", "data.path": "t.csv", "data.label": "y"})
    assert cfg.model == f"{tmp_path.resolve() / 'nets' / 'a.py'}:build"
    assert cfg.data.path == str(tmp_path.resolve() / "t.csv")
    assert load_config(None, {"model": "mylab.models:build"}).model == "mylab.models:build"
