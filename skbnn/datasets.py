"""Data sets used by the binary-neural-network papers reproduced in skbnn.

* :func:`make_random_prototypes` -- the synthetic "Random Prototypes"
  benchmark (generated, bit-exact with the reference code).
* :func:`load_fashion_mnist` -- Fashion-MNIST read from local IDX files
  (nothing is downloaded).
"""

import gzip
import os
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

__all__ = ["make_random_prototypes", "load_fashion_mnist"]


# ---------------------------------------------------------------------------
# Random Prototypes
# ---------------------------------------------------------------------------


def _check_int(value, name, minimum):
    # bool is an int subclass, but True as a sample count is surely a bug.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def _check_probability(value, name):
    if isinstance(value, bool) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{name} must be a real number in [0, 1], got {value!r}.")
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value}.")
    return value


def _make_generator(random_state):
    """Map ``random_state`` to the Generator the reference code would use."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        # Legacy RandomState: derive a seed so the stream is still reproducible.
        return np.random.default_rng(random_state.randint(2**31 - 1))
    if random_state is None or (
        isinstance(random_state, (int, np.integer))
        and not isinstance(random_state, bool)
    ):
        return np.random.default_rng(random_state)
    raise TypeError(
        "random_state must be None, an int, a numpy.random.Generator or a "
        f"numpy.random.RandomState, got {random_state!r}."
    )


def _check_feasible(n_samples, n_features, n_classes, flip_prob):
    """Reject requests for which redrawing duplicates would never end."""
    if flip_prob in (0.0, 1.0) and n_samples > n_classes:
        raise ValueError(
            f"flip_prob={flip_prob} makes every sample of a class identical, "
            "and duplicates are redrawn, so n_samples must equal n_classes; "
            f"got n_samples={n_samples}, n_classes={n_classes}."
        )
    # Past 62 bits any n_samples that fits in memory is feasible.
    if n_features < 63 and n_samples > 2**n_features:
        raise ValueError(
            f"n_samples={n_samples} exceeds the {2**n_features} distinct "
            f"samples that n_features={n_features} bits allow."
        )


def _class_sizes(n_samples, n_classes):
    """Split n_samples as evenly as possible; the first classes get the extra."""
    base, extra = divmod(n_samples, n_classes)
    return [base + (c < extra) for c in range(n_classes)]


def make_random_prototypes(
    n_samples,
    n_features=1000,
    n_classes=10,
    flip_prob=0.44,
    random_state=None,
    *,
    return_prototypes=False,
):
    """Generate the synthetic "Random Prototypes" classification benchmark.

    Each class ``c`` has a random prototype in ``{-1, +1}^n_features``; a
    sample of class ``c`` is its prototype with every bit flipped
    independently with probability ``flip_prob``. Duplicate samples are
    redrawn, so all rows of ``X`` are distinct.

    Parameters
    ----------
    n_samples : int
        Total number of samples, at least ``n_classes``. They are split as
        evenly as possible between the classes; the first
        ``n_samples % n_classes`` classes get one extra sample.
    n_features : int, default=1000
        Number of binary (±1) features, i.e. prototype length.
    n_classes : int, default=10
        Number of classes (at least 2).
    flip_prob : float, default=0.44
        Probability in ``[0, 1]`` of flipping each bit of the prototype.
        0.5 makes the samples independent of their class.
    random_state : None, int, numpy.random.Generator or \
numpy.random.RandomState, default=None
        Source of randomness. ``None`` or an int seeds
        ``numpy.random.default_rng`` (the papers' data set is
        ``random_state=42``); a ``Generator`` is used (and advanced) directly;
        a ``RandomState`` provides a seed via ``randint(2**31 - 1)``.
    return_prototypes : bool, default=False
        Keyword-only. If True, also return the class prototypes.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), dtype int8
        Samples with entries in ``{-1, +1}``.
    y : ndarray of shape (n_samples,), dtype int64
        Class labels ``0 .. n_classes - 1``.
    prototypes : ndarray of shape (n_classes, n_features), dtype int8
        Class prototypes. Only returned when ``return_prototypes=True``.

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If an argument is out of range, or no set of ``n_samples`` distinct
        samples can be generated (``n_samples > 2**n_features``, or
        ``flip_prob`` in ``{0, 1}`` with ``n_samples > n_classes`` or with
        coinciding prototypes).

    Notes
    -----
    The samples are returned in generation order, i.e. in contiguous class
    blocks (all of class 0, then class 1, ...), **not shuffled**: the papers
    shuffle with the run seed afterwards. Shuffle before training, e.g. with
    :func:`sklearn.model_selection.train_test_split` (which shuffles by
    default) or :func:`sklearn.utils.shuffle`; otherwise a plain head/tail
    split yields disjoint class sets.

    With an int ``random_state`` the output is bit-for-bit identical to the
    reference implementation: the prototypes are drawn with
    ``rng.choice([-1, 1], size=(n_classes, n_features))``, then each sample
    uses one ``rng.random(n_features) < flip_prob`` draw (plus a fresh draw
    for every discarded duplicate).

    The benchmark is described in Colombo, Pittorino & Roveri,
    arXiv:2412.00119, which used 12,000 samples with ``flip_prob=0.44``
    split 10,000 / 2,000 into train / test. The BEP paper (arXiv:2512.04189)
    used 20,000 train / 3,000 test samples with ``flip_prob=0.46``. For
    reference, the oracle that assigns each sample to the nearest true
    prototype scores about 97.4 % accuracy at ``flip_prob=0.44``
    (``n_features=1000``, ``n_classes=10``).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import train_test_split
    >>> from skbnn.datasets import make_random_prototypes
    >>> X, y = make_random_prototypes(12, n_features=16, n_classes=3,
    ...                               random_state=42)
    >>> X.shape, X.dtype, y.dtype
    ((12, 16), dtype('int8'), dtype('int64'))
    >>> np.unique(X).tolist()
    [-1, 1]
    >>> np.bincount(y).tolist()
    [4, 4, 4]
    >>> X_train, X_test, y_train, y_test = train_test_split(
    ...     X, y, test_size=3, random_state=0)
    >>> X_train.shape, X_test.shape
    ((9, 16), (3, 16))
    """
    n_features = _check_int(n_features, "n_features", 1)
    n_classes = _check_int(n_classes, "n_classes", 2)
    n_samples = _check_int(n_samples, "n_samples", n_classes)
    flip_prob = _check_probability(flip_prob, "flip_prob")
    _check_feasible(n_samples, n_features, n_classes, flip_prob)
    rng = _make_generator(random_state)

    prototypes = rng.choice([-1, 1], size=(n_classes, n_features)).astype(np.int8)
    if flip_prob in (0.0, 1.0) and len(np.unique(prototypes, axis=0)) < n_classes:
        raise ValueError(
            f"With flip_prob={flip_prob} samples equal (the negation of) their "
            "prototype, but two drawn prototypes coincide; increase "
            "n_features or use another random_state."
        )
    X = np.empty((n_samples, n_features), dtype=np.int8)
    y = np.empty(n_samples, dtype=np.int64)
    seen = set()
    i = 0
    for c, n_c in enumerate(_class_sizes(n_samples, n_classes)):
        for _ in range(n_c):
            while True:
                flips = rng.random(n_features) < flip_prob
                row = np.where(flips, -prototypes[c], prototypes[c])
                key = row.tobytes()
                if key not in seen:
                    break
            seen.add(key)
            X[i], y[i] = row, c
            i += 1

    if return_prototypes:
        return X, y, prototypes
    return X, y


# ---------------------------------------------------------------------------
# Fashion-MNIST
# ---------------------------------------------------------------------------

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# IDX magic: two zero bytes, type code 0x08 (unsigned byte), number of dims.
_IMAGES_MAGIC = 0x00000803
_LABELS_MAGIC = 0x00000801

_DESCR = """\
Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017, arXiv:1708.07747): 28x28
grayscale images of Zalando articles in 10 classes, 60,000 training and
10,000 test images. X_* are uint8 arrays of flattened (row-major) images,
y_* are int64 labels indexing target_names."""


def _candidate_dirs(data_home):
    if data_home is not None:
        return [Path(data_home).expanduser()]
    env = os.environ.get("SKBNN_DATA")
    return ([Path(env)] if env else []) + [Path(_SYSTEM_DIR)]


def _find_file(directory, name):
    """Return the path of ``name`` (.gz preferred) in directory, or None."""
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def _find_files(directories):
    for directory in directories:
        paths = {key: _find_file(directory, name) for key, name in _FILES.items()}
        if all(paths.values()):
            return directory, paths
    searched = "\n".join(f"  - {d}" for d in directories)
    raise FileNotFoundError(
        "Fashion-MNIST files not found. Searched:\n"
        f"{searched}\n"
        "Needed: " + ", ".join(f"{n}.gz" for n in _FILES.values()) + ".\n"
        "To get them, either run `apt-get install -y dataset-fashion-mnist` "
        f"(installs them in {_SYSTEM_DIR}), or put the four files in a folder "
        "and pass data_home=<folder> or set the SKBNN_DATA environment "
        "variable to it."
    )


def _read_bytes(path):
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (gzip.BadGzipFile, EOFError) as exc:
        raise ValueError(f"Corrupt gzip file {path}: {exc}") from exc


def _read_idx(path, magic):
    """Parse an IDX file of unsigned bytes into an array of the header's shape."""
    data = _read_bytes(path)
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(f"Corrupt IDX file {path}: truncated header.")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise ValueError(
            f"Corrupt IDX file {path}: magic number 0x{found:08X}, "
            f"expected 0x{magic:08X}."
        )
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    n_values = 1
    for dim in shape:  # Python ints: a corrupt header cannot overflow
        n_values *= dim
    if len(data) - header_size != n_values:
        raise ValueError(
            f"Corrupt IDX file {path}: header announces shape {shape} "
            f"({n_values} bytes of data) but {len(data) - header_size} "
            "bytes follow."
        )
    # Copy: a view of the immutable bytes would be a read-only array.
    return np.frombuffer(data, np.uint8, offset=header_size).reshape(shape).copy()


def _load_split(images_path, labels_path):
    images = _read_idx(images_path, _IMAGES_MAGIC)
    labels = _read_idx(labels_path, _LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(
            f"{images_path} holds {len(images)} images but {labels_path} "
            f"holds {len(labels)} labels."
        )
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(
            f"Corrupt IDX file {labels_path}: label {labels.max()} out of "
            f"range 0..{len(FASHION_MNIST_CLASSES) - 1}."
        )
    return images.reshape(len(images), -1), labels.astype(np.int64)


def load_fashion_mnist(data_home=None):
    """Load Fashion-MNIST from local gzipped IDX files.

    Nothing is downloaded. The four standard files
    ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
    ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (or the
    same names without ``.gz``, uncompressed) are read from the first
    directory holding all four, searched in this order:

    1. ``data_home``, if given (then it is the only directory searched);
    2. the directory named by the ``SKBNN_DATA`` environment variable;
    3. ``/usr/share/datasets/fashion-mnist``, where the Debian package
       ``dataset-fashion-mnist`` installs them
       (``apt-get install -y dataset-fashion-mnist``).

    Parameters
    ----------
    data_home : str or path-like, default=None
        Directory holding the four files. If None, ``SKBNN_DATA`` and then
        the system directory are searched.

    Returns
    -------
    data : sklearn.utils.Bunch
        Dictionary-like object with attributes:

        X_train : ndarray of shape (60000, 784), dtype uint8
            Training images, each flattened row-major.
        y_train : ndarray of shape (60000,), dtype int64
            Training labels in ``0 .. 9``.
        X_test : ndarray of shape (10000, 784), dtype uint8
            Official test images.
        y_test : ndarray of shape (10000,), dtype int64
            Official test labels.
        target_names : list of str
            The 10 class names, indexed by label.
        data_dir : str
            Directory the files were read from.
        DESCR : str
            Short description of the data set.

        The sizes are read from the IDX headers, not assumed.

    Raises
    ------
    FileNotFoundError
        If no searched directory holds the four files; the message lists the
        directories searched and how to obtain the files.
    ValueError
        If a file is corrupt (bad magic number, dimensions or size) or the
        image and label counts of a split disagree.

    Notes
    -----
    The binary-neural-network papers reproduced by skbnn train on 50,000
    images and report accuracy on the other 10,000 of the official
    60,000-image training split (shuffled with the run seed, the last 10,000
    held out); the official test set is not used there, and skbnn's
    benchmarks report it separately.  This function
    returns the official splits unchanged; the papers' split is
    ``order = np.random.default_rng(seed).permutation(60000)`` with
    ``order[:50000]`` for training and ``order[50000:]`` held out.

    Examples
    --------
    >>> from skbnn.datasets import load_fashion_mnist
    >>> data = load_fashion_mnist()  # doctest: +SKIP
    >>> data.X_train.shape, data.X_test.shape  # doctest: +SKIP
    ((60000, 784), (10000, 784))
    """
    directory, paths = _find_files(_candidate_dirs(data_home))
    X_train, y_train = _load_split(paths["train_images"], paths["train_labels"])
    X_test, y_test = _load_split(paths["test_images"], paths["test_labels"])
    if X_train.shape[1] != X_test.shape[1]:
        raise ValueError(
            f"Train images have {X_train.shape[1]} pixels but test images "
            f"have {X_test.shape[1]}."
        )
    return Bunch(
        X_train=X_train,
        y_train=y_train,
        X_test=X_test,
        y_test=y_test,
        target_names=list(FASHION_MNIST_CLASSES),
        data_dir=str(directory),
        DESCR=_DESCR,
    )
