import gzip

import numpy as np
import pytest

import skbnn.datasets
from skbnn.datasets import load_fashion_mnist, make_random_prototypes

# ---------------------------------------------------------------------------
# make_random_prototypes
# ---------------------------------------------------------------------------


def reference_random_prototypes(n_samples, n_features, n_classes, flip_prob, seed):
    """Straightforward re-implementation of the papers' recipe."""
    rng = np.random.default_rng(seed)
    prototypes = rng.choice([-1, +1], size=(n_classes, n_features))
    rows, labels = [], []
    for c in range(n_classes):
        n_c = n_samples // n_classes + (1 if c < n_samples % n_classes else 0)
        for _ in range(n_c):
            while True:
                flip = rng.random(n_features) < flip_prob
                sample = prototypes[c].copy()
                sample[flip] *= -1
                if not any(np.array_equal(sample, r) for r in rows):
                    break
            rows.append(sample)
            labels.append(c)
    return np.array(rows), np.array(labels), prototypes


@pytest.mark.parametrize("n_samples", [30, 37])
def test_shapes_dtypes_values_and_balance(n_samples):
    X, y = make_random_prototypes(n_samples, n_features=50, n_classes=10,
                                  random_state=0)
    assert X.shape == (n_samples, 50) and X.dtype == np.int8
    assert y.shape == (n_samples,) and y.dtype == np.int64
    assert set(np.unique(X)) == {-1, 1}
    counts = np.bincount(y, minlength=10)
    extra = n_samples % 10
    assert counts.tolist() == [n_samples // 10 + (c < extra) for c in range(10)]
    # Class-block order, not shuffled.
    assert np.all(np.diff(y) >= 0)


def test_return_prototypes():
    X, y, P = make_random_prototypes(20, n_features=40, n_classes=4,
                                     random_state=1, return_prototypes=True)
    assert P.shape == (4, 40) and P.dtype == np.int8
    assert set(np.unique(P)) <= {-1, 1}


def test_int_seed_is_deterministic_and_seeds_differ():
    a = make_random_prototypes(50, n_features=64, random_state=42)
    b = make_random_prototypes(50, n_features=64, random_state=42)
    c = make_random_prototypes(50, n_features=64, random_state=43)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize(
    "n_samples, n_features, n_classes, flip_prob, seed",
    [
        (23, 40, 3, 0.44, 42),
        (10, 100, 10, 0.46, 7),
        # 3 bits, 8 samples: every possible row, so duplicates must be redrawn.
        (8, 3, 2, 0.3, 0),
    ],
)
def test_bit_exact_against_reference(n_samples, n_features, n_classes,
                                     flip_prob, seed):
    X, y, P = make_random_prototypes(n_samples, n_features, n_classes,
                                     flip_prob, seed, return_prototypes=True)
    X_ref, y_ref, P_ref = reference_random_prototypes(
        n_samples, n_features, n_classes, flip_prob, seed)
    np.testing.assert_array_equal(P, P_ref)
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)


def test_samples_are_distinct():
    X, _ = make_random_prototypes(8, n_features=3, n_classes=2, flip_prob=0.3,
                                  random_state=0)
    assert len(np.unique(X, axis=0)) == 8


@pytest.mark.parametrize("flip_prob", [0.1, 0.44, 0.5])
def test_empirical_flip_rate(flip_prob):
    X, y, P = make_random_prototypes(200, n_features=1000, flip_prob=flip_prob,
                                     random_state=3, return_prototypes=True)
    assert abs(np.mean(X != P[y]) - flip_prob) < 0.02


def _nearest_prototype_accuracy(flip_prob):
    X, y, P = make_random_prototypes(2000, n_features=200, n_classes=10,
                                     flip_prob=flip_prob, random_state=5,
                                     return_prototypes=True)
    scores = X.astype(np.int32) @ P.T.astype(np.int32)
    return np.mean(np.argmax(scores, axis=1) == y)


def test_nearest_prototype_accuracy():
    assert _nearest_prototype_accuracy(0.3) > 0.95
    assert _nearest_prototype_accuracy(0.5) < 0.2


def test_generator_is_used_directly():
    a = make_random_prototypes(20, n_features=30, random_state=np.random.default_rng(9))
    b = make_random_prototypes(20, n_features=30, random_state=9)
    np.testing.assert_array_equal(a[0], b[0])
    rng = np.random.default_rng(9)
    first = make_random_prototypes(20, n_features=30, random_state=rng)
    second = make_random_prototypes(20, n_features=30, random_state=rng)
    assert not np.array_equal(first[0], second[0])


def test_random_state_instance_seeds_default_rng():
    seed = np.random.RandomState(4).randint(2**31 - 1)
    a = make_random_prototypes(20, n_features=30,
                               random_state=np.random.RandomState(4))
    b = make_random_prototypes(20, n_features=30, random_state=seed)
    np.testing.assert_array_equal(a[0], b[0])


def test_numpy_scalar_arguments_accepted():
    X, y = make_random_prototypes(np.int64(20), n_features=np.int32(30),
                                  n_classes=np.int64(4),
                                  flip_prob=np.float32(0.25),
                                  random_state=np.int64(1))
    assert X.shape == (20, 30)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(n_samples=0), ValueError, "n_samples"),
        (dict(n_samples=5), ValueError, "n_samples"),  # fewer than n_classes
        (dict(n_samples=10.0), TypeError, "n_samples"),
        (dict(n_samples=True), TypeError, "n_samples"),
        (dict(n_features=0), ValueError, "n_features"),
        (dict(n_features="10"), TypeError, "n_features"),
        (dict(n_classes=1), ValueError, "n_classes"),
        (dict(n_classes=2.5), TypeError, "n_classes"),
        (dict(flip_prob=-0.1), ValueError, "flip_prob"),
        (dict(flip_prob=1.5), ValueError, "flip_prob"),
        (dict(flip_prob=float("nan")), ValueError, "flip_prob"),
        (dict(flip_prob=True), TypeError, "flip_prob"),
        (dict(flip_prob="0.4"), TypeError, "flip_prob"),
        (dict(flip_prob=None), TypeError, "flip_prob"),
        (dict(random_state="42"), TypeError, "random_state"),
        (dict(random_state=1.5), TypeError, "random_state"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    params = dict(n_samples=20, n_features=10, n_classes=10, random_state=0)
    params.update(kwargs)
    with pytest.raises(error, match=match):
        make_random_prototypes(**params)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_samples=20, n_features=10, n_classes=10, flip_prob=0.0),
        dict(n_samples=20, n_features=10, n_classes=10, flip_prob=1.0),
        dict(n_samples=9, n_features=3, n_classes=2, flip_prob=0.3),
    ],
)
def test_impossible_requests_raise_instead_of_hanging(kwargs):
    with pytest.raises(ValueError, match="n_samples"):
        make_random_prototypes(random_state=0, **kwargs)


def test_extreme_flip_prob_with_one_sample_per_class():
    X, y, P = make_random_prototypes(4, n_features=64, n_classes=4,
                                     flip_prob=1.0, random_state=0,
                                     return_prototypes=True)
    np.testing.assert_array_equal(X, -P)


# ---------------------------------------------------------------------------
# load_fashion_mnist
# ---------------------------------------------------------------------------

IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
FILES = {
    "train-images-idx3-ubyte": "X_train",
    "train-labels-idx1-ubyte": "y_train",
    "t10k-images-idx3-ubyte": "X_test",
    "t10k-labels-idx1-ubyte": "y_test",
}


def idx_bytes(array, magic):
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def fake_fashion_mnist():
    rng = np.random.default_rng(0)
    return {
        "X_train": rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8),
        "y_train": np.array([0, 9, 3, 3, 1], dtype=np.uint8),
        "X_test": rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8),
        "y_test": np.array([2, 8, 5], dtype=np.uint8),
    }


def write_fashion_mnist(directory, arrays, compress=True):
    directory.mkdir(parents=True, exist_ok=True)
    for name, key in FILES.items():
        magic = IMAGES_MAGIC if key.startswith("X") else LABELS_MAGIC
        data = idx_bytes(arrays[key], magic)
        if compress:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)


def check_round_trip(bunch, arrays, directory):
    for key in ("X_train", "X_test"):
        expected = arrays[key].reshape(len(arrays[key]), -1)
        assert bunch[key].dtype == np.uint8
        np.testing.assert_array_equal(bunch[key], expected)
    for key in ("y_train", "y_test"):
        assert bunch[key].dtype == np.int64
        np.testing.assert_array_equal(bunch[key], arrays[key])
    assert bunch.data_dir == str(directory)
    assert bunch.target_names == [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]
    assert isinstance(bunch.DESCR, str) and bunch.DESCR


@pytest.fixture
def no_system_data(monkeypatch, tmp_path):
    """Isolate tests from a real installation and the caller's SKBNN_DATA."""
    monkeypatch.delenv("SKBNN_DATA", raising=False)
    monkeypatch.setattr(skbnn.datasets, "_SYSTEM_DIR", str(tmp_path / "system"))


def test_load_via_data_home(tmp_path, no_system_data):
    arrays = fake_fashion_mnist()
    write_fashion_mnist(tmp_path / "fm", arrays)
    bunch = load_fashion_mnist(data_home=tmp_path / "fm")
    check_round_trip(bunch, arrays, tmp_path / "fm")
    assert bunch.X_train.shape == (5, 784) and bunch.X_test.shape == (3, 784)
    # Rows are flattened row-major.
    assert bunch.X_train[1, 28 * 2 + 5] == arrays["X_train"][1, 2, 5]
    bunch.X_train[0, 0] = 0  # writable, not a view of immutable bytes


def test_load_via_env_var(tmp_path, monkeypatch, no_system_data):
    arrays = fake_fashion_mnist()
    write_fashion_mnist(tmp_path / "env", arrays)
    monkeypatch.setenv("SKBNN_DATA", str(tmp_path / "env"))
    check_round_trip(load_fashion_mnist(), arrays, tmp_path / "env")


def test_falls_back_to_system_dir(tmp_path, monkeypatch, no_system_data):
    arrays = fake_fashion_mnist()
    write_fashion_mnist(tmp_path / "system", arrays)
    monkeypatch.setenv("SKBNN_DATA", str(tmp_path / "empty"))
    check_round_trip(load_fashion_mnist(), arrays, tmp_path / "system")


def test_load_uncompressed_files(tmp_path, no_system_data):
    arrays = fake_fashion_mnist()
    write_fashion_mnist(tmp_path, arrays, compress=False)
    check_round_trip(load_fashion_mnist(tmp_path), arrays, tmp_path)


def test_missing_files_message(tmp_path, monkeypatch, no_system_data):
    monkeypatch.setenv("SKBNN_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as excinfo:
        load_fashion_mnist()
    message = str(excinfo.value)
    assert "apt-get install -y dataset-fashion-mnist" in message
    assert "SKBNN_DATA" in message and "data_home" in message
    assert str(tmp_path / "env") in message
    assert str(tmp_path / "system") in message


def test_data_home_is_the_only_directory_searched(tmp_path, monkeypatch,
                                                  no_system_data):
    write_fashion_mnist(tmp_path / "env", fake_fashion_mnist())
    monkeypatch.setenv("SKBNN_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError,
                       match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist(data_home=tmp_path / "missing")


def test_incomplete_directory_is_skipped(tmp_path, no_system_data):
    write_fashion_mnist(tmp_path, fake_fashion_mnist())
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="SKBNN_DATA"):
        load_fashion_mnist(tmp_path)


def test_corrupt_magic(tmp_path, no_system_data):
    arrays = fake_fashion_mnist()
    write_fashion_mnist(tmp_path, arrays)
    # A labels header on an images file.
    bad = idx_bytes(arrays["X_train"], LABELS_MAGIC)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(bad))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        load_fashion_mnist(tmp_path)


def test_truncated_data(tmp_path, no_system_data):
    arrays = fake_fashion_mnist()
    write_fashion_mnist(tmp_path, arrays)
    bad = idx_bytes(arrays["X_test"], IMAGES_MAGIC)[:-1]
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(bad))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz"):
        load_fashion_mnist(tmp_path)


def test_not_gzip(tmp_path, no_system_data):
    write_fashion_mnist(tmp_path, fake_fashion_mnist())
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz"):
        load_fashion_mnist(tmp_path)


def test_label_count_mismatch(tmp_path, no_system_data):
    arrays = fake_fashion_mnist()
    arrays["y_train"] = arrays["y_train"][:4]
    write_fashion_mnist(tmp_path, arrays)
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz"):
        load_fashion_mnist(tmp_path)
