"""Raw sources: the idx parser, Fashion-MNIST (skipped without the Debian files), the .npz cache."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from fedledger.core.errors import DataError
from fedledger.data import load_federated, load_raw
from fedledger.data.sources import FASHION_MNIST_DIR, RawData, cached, parse_idx, read_digits, read_fashion_mnist

HAVE_FASHION = all(
    (FASHION_MNIST_DIR / f).is_file()
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
)  # fmt: skip
needs_fashion = pytest.mark.skipif(not HAVE_FASHION, reason="Debian package dataset-fashion-mnist not installed")


def idx_bytes(arr: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + np.array(arr.shape, dtype=">u4").tobytes()
    return header + arr.tobytes()


# -- idx ---------------------------------------------------------------------------------------


def test_parse_idx_uint8_images_and_labels() -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(idx_bytes(images, 0x08)), images)
    labels = np.array([3, 1, 4], dtype=np.uint8)
    np.testing.assert_array_equal(parse_idx(idx_bytes(labels, 0x08)), labels)


def test_parse_idx_big_endian_types() -> None:
    values = np.array([[1, -2], [70000, 5]], dtype=">i4")
    out = parse_idx(idx_bytes(values, 0x0C))
    np.testing.assert_array_equal(out, [[1, -2], [70000, 5]])
    assert out.dtype == np.dtype("int32") and out.dtype.isnative
    floats = np.array([1.5, -0.25], dtype=">f8")
    np.testing.assert_array_equal(parse_idx(idx_bytes(floats, 0x0E)), [1.5, -0.25])


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "bad magic"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x07", "bad magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x07", "unknown idx type"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "truncated"),
        (b"\x00\x00\x08\x00", "truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x07\x07", "header says (3,)"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x07\x07", "holds 2 bytes"),
    ],
)
def test_parse_idx_rejects_malformed_files(data: bytes, fragment: str) -> None:
    with pytest.raises(DataError) as exc:
        parse_idx(data, "f.idx")
    assert fragment in str(exc.value)


def write_fake_fashion(directory: Path, n_train: int = 30, n_test: int = 10, test_labels: int | None = None) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": (rng.integers(0, 256, (n_train, 28, 28)).astype(np.uint8), 0x08),
        "train-labels-idx1-ubyte.gz": (np.arange(n_train, dtype=np.uint8) % 10, 0x08),
        "t10k-images-idx3-ubyte.gz": (rng.integers(0, 256, (n_test, 28, 28)).astype(np.uint8), 0x08),
        "t10k-labels-idx1-ubyte.gz": (np.arange(test_labels or n_test, dtype=np.uint8) % 10, 0x08),
    }
    for name, (arr, code) in arrays.items():
        with gzip.open(directory / name, "wb") as fh:
            fh.write(idx_bytes(arr, code))


def test_read_fashion_mnist_from_idx_files(tmp_path: Path) -> None:
    write_fake_fashion(tmp_path)
    raw = read_fashion_mnist(tmp_path)
    assert raw.kind == "image" and raw.features.shape == (40, 1, 28, 28) and raw.features.dtype == np.uint8
    assert raw.official_test is not None and raw.official_test.sum() == 10 and not raw.official_test[:30].any()
    np.testing.assert_array_equal(raw.y[:30], np.arange(30) % 10)
    assert raw.input_shape == (1, 28, 28)


def test_pixel_moments_and_both_normalization_paths_agree(tmp_path: Path) -> None:
    from dataclasses import replace

    from fedledger.data.preprocess import fit_transform

    write_fake_fashion(tmp_path, n_train=50, n_test=20)
    raw = read_fashion_mnist(tmp_path)
    assert raw.pixel_moments is not None
    flat = raw.features.reshape(len(raw), -1).astype(np.int64)
    np.testing.assert_array_equal(raw.pixel_moments[:, 0], flat.sum(axis=1))
    np.testing.assert_array_equal(raw.pixel_moments[:, 1], (flat**2).sum(axis=1))
    rows = np.random.default_rng(0).permutation(len(raw))[:60]
    train = np.zeros(60, dtype=bool)
    train[:45] = True
    x_fast, st_fast = fit_transform(raw, rows, train)
    x_slow, st_slow = fit_transform(replace(raw, pixel_moments=None), rows, train)
    np.testing.assert_array_equal(x_fast, x_slow)
    pixels = raw.features[rows[train]].astype(np.float64) / 255.0
    np.testing.assert_allclose(st_fast.mean, [pixels.mean()], rtol=1e-12)
    np.testing.assert_allclose(st_fast.scale, [pixels.std()], rtol=1e-9)
    assert st_fast.mean == st_slow.mean and st_fast.scale == st_slow.scale
    expected = (raw.features[rows] / 255.0 - pixels.mean()) / pixels.std()
    np.testing.assert_allclose(x_fast, expected, rtol=1e-5, atol=1e-5)


def test_read_fashion_mnist_missing_files_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_fashion_mnist(tmp_path)
    message = str(exc.value)
    assert "\n" not in message and "make setup" in message and "dataset-fashion-mnist" in message


def test_read_fashion_mnist_rejects_disagreeing_files(tmp_path: Path) -> None:
    write_fake_fashion(tmp_path, test_labels=9)
    with pytest.raises(DataError, match="disagree"):
        read_fashion_mnist(tmp_path)


def test_read_fashion_mnist_rejects_corrupt_gzip(tmp_path: Path) -> None:
    write_fake_fashion(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="cannot read"):
        read_fashion_mnist(tmp_path)


@pytest.mark.slow
@needs_fashion
def test_fashion_mnist_federation_uses_the_official_test_split(data_cache: Path) -> None:
    fd = load_federated("fashion_mnist", "dirichlet:0.3", 20, seed=0, cache_dir=data_cache)
    raw = load_raw("fashion_mnist", cache_dir=data_cache)
    assert raw.official_test is not None
    assert fd.input_shape == (1, 28, 28) and fd.num_classes == 10
    assert len(fd.test) == 10_000 and raw.official_test[fd.test.index].all()
    pooled = fd.pooled_train()
    assert pooled.X.shape[1:] == (1, 28, 28) and pooled.X.dtype == np.float32
    assert sum(len(m) for m in fd.members) == 60_000
    # Normalized with the training pixels' statistics: mean 0, std 1 on the train pool only.
    s1 = sum(float(m.train.X.sum(dtype=np.float64)) for m in fd.members)
    s2 = sum(float(np.square(m.train.X.astype(np.float64)).sum()) for m in fd.members)
    count = pooled.X.size
    assert abs(s1 / count) < 1e-4
    assert abs(np.sqrt(s2 / count - (s1 / count) ** 2) - 1.0) < 1e-4
    st = fd.standardization
    assert st is not None and 0.2 < st.mean[0] < 0.4  # pixel mean in [0, 1] units
    # Pixel 0 maps to -mean/std, 255 to (1-mean)/std.
    assert float(pooled.X.min()) == pytest.approx(-st.mean[0] / st.scale[0], rel=1e-5)
    assert float(pooled.X.max()) == pytest.approx((1 - st.mean[0]) / st.scale[0], rel=1e-5)


@needs_fashion
def test_fashion_mnist_max_samples_keeps_the_official_ratio(data_cache: Path) -> None:
    fd = load_federated("fashion_mnist", "iid", 10, seed=1, max_samples=6000, cache_dir=data_cache)
    assert sum(len(m) for m in fd.members) == 6000 and len(fd.test) == 1000
    assert np.bincount(fd.test.y, minlength=10).tolist() == [100] * 10  # stratified


# -- cache -------------------------------------------------------------------------------------


def test_cache_writes_then_reads_the_npz(tmp_path: Path) -> None:
    first = cached("digits", 1, read_digits, tmp_path)
    path = tmp_path / "digits-v1.npz"
    assert path.is_file()
    # Prove the second load reads the file: plant a recognisable change in it.
    planted = RawData(
        kind=first.kind, features=first.features, feature_names=first.feature_names,
        categorical=first.categorical, categorical_names=(), categorical_levels=(),
        y=np.full_like(first.y, 7), class_names=first.class_names,
    )  # fmt: skip
    planted.to_npz(path)
    second = cached("digits", 1, read_digits, tmp_path)
    assert (second.y == 7).all()
    np.testing.assert_array_equal(second.features, first.features)
    assert not second.features.flags.writeable


def test_cache_round_trips_keys_units_and_levels(tmp_path: Path, data_cache: Path) -> None:
    raw = load_raw("randhie", cache_dir=data_cache)
    raw.to_npz(tmp_path / "x.npz")
    back = RawData.from_npz(tmp_path / "x.npz")
    for name in ("features", "categorical", "y", "key", "unit"):
        np.testing.assert_array_equal(getattr(back, name), getattr(raw, name))
    assert back.categorical_levels == raw.categorical_levels and back.feature_names == raw.feature_names
    assert back.official_test is None


def test_corrupt_cache_is_parsed_again(tmp_path: Path) -> None:
    path = tmp_path / "digits-v1.npz"
    path.write_bytes(b"not a zip file")
    raw = cached("digits", 1, read_digits, tmp_path)
    assert len(raw) == 1797
    assert RawData.from_npz(path).y.shape == (1797,)  # rewritten


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_cache_dir_still_loads(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        assert len(cached("digits", 1, read_digits, tmp_path / "sub")) == 1797
    finally:
        tmp_path.chmod(0o700)


def test_cache_path_that_is_a_file_still_loads(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache directory should be")
    assert len(cached("digits", 1, read_digits, blocker)) == 1797
