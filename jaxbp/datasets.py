"""Datasets for the trainer, row-major as users hold them: X (m, n_features), y (m,).

Built in, offline: `breast_cancer` (binary, the seeds' setting) and `digits` (10 classes) from
scikit-learn's shipped copies; `xor`, `moons` and `spirals` generators; `mnist1d` through the
optional `mnist1d` package. Files: MNIST/Fashion-MNIST IDX files (`load_idx`), CSV with a named
target column (`load_csv`) and NPZ (`load_npz`, never unpickled).
"""

import gzip
import pathlib
from typing import Any, NamedTuple

import numpy as np

BUILTIN = ("breast_cancer", "digits", "mnist1d", "xor", "moons", "spirals")


class Dataset(NamedTuple):
    X: np.ndarray  # (m, n_features), float64
    y: np.ndarray  # (m,) labels (any values) or regression targets (m,) / (m, k)
    task: str  # "binary", "multiclass" or "regression"
    classes: Any  # sorted distinct labels for classification, else None
    name: str


def _classification(name, X, y):
    X = np.asarray(X, np.float64)
    y = np.asarray(y)
    check(X, y, name)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"{name}: expected at least 2 classes, got 1 ({classes[0]!r})")
    return Dataset(X, y, "binary" if len(classes) == 2 else "multiclass", classes, name)


def check(X, y, name="data"):
    """Clear errors for empty data, non-finite features and mismatched lengths."""
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty 2-D X (m, n_features), got {X.shape}")
    if not np.all(np.isfinite(X)):
        rows = np.flatnonzero(~np.all(np.isfinite(X), axis=1))
        raise ValueError(f"{name}: expected finite features, got NaN or inf in row(s) "
                         f"{rows[:5].tolist()}")
    if len(y) != len(X):
        raise ValueError(f"{name}: expected one label per row, got {len(y)} labels for "
                         f"{len(X)} rows")


def _spirals(n, noise, rng):
    t = np.sqrt(rng.random(n)) * 3 * np.pi  # angle along the arm
    arm = rng.integers(0, 2, n)
    r = t / (3 * np.pi)
    x = np.stack([r * np.cos(t + np.pi * arm), r * np.sin(t + np.pi * arm)], axis=1)
    return x + noise * rng.normal(size=x.shape), arm


def load(name="breast_cancer", *, seed=0, n_samples=1000, noise=0.1):
    """A built-in dataset by name; generators use `seed`, `n_samples` and `noise`."""
    if name == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        d = load_breast_cancer()
        return _classification(name, d.data, d.target)
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return _classification(name, d.data, d.target)
    rng = np.random.default_rng(seed)
    if name == "xor":
        X = rng.uniform(-1, 1, (n_samples, 2))
        return _classification(name, X + noise * rng.normal(size=X.shape),
                               (X[:, 0] * X[:, 1] > 0).astype(int))
    if name == "moons":
        from sklearn.datasets import make_moons

        X, y = make_moons(n_samples, noise=noise, random_state=seed)
        return _classification(name, X, y)
    if name == "spirals":
        return _classification(name, *_spirals(n_samples, noise, rng))
    if name == "mnist1d":
        try:
            from mnist1d.data import get_dataset_args, make_dataset
        except ImportError as e:
            raise ImportError("mnist1d: the optional package is not installed; "
                              "pip install mnist1d") from e
        args = get_dataset_args()
        args.seed = seed
        d = make_dataset(args)  # generated offline, nothing downloaded or unpickled
        X = np.concatenate([d["x"], d["x_test"]])
        y = np.concatenate([d["y"], d["y_test"]])
        return _classification(name, X, y)
    raise ValueError(f"dataset: expected one of {list(BUILTIN)} or a file (idx:, csv:, npz:), "
                     f"got {name!r}")


def train_test_split(ds, test_fraction=0.2, seed=0):
    """(train, test): stratified for classification, deterministic for a seed."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
    from sklearn.model_selection import train_test_split as split

    stratify = ds.y if ds.task != "regression" else None
    idx_train, idx_test = split(np.arange(len(ds.y)), test_size=test_fraction,
                                random_state=seed, stratify=stratify)
    take = lambda idx: ds._replace(X=ds.X[idx], y=ds.y[idx])  # noqa: E731
    return take(idx_train), take(idx_test)


class Standardizer:
    """z = (x − mean) / scale per feature, fitted on training rows only (scale 0 → 1)."""

    def fit(self, X):
        X = np.asarray(X, np.float64)
        self.mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        return self

    def transform(self, X):
        return (np.asarray(X, np.float64) - self.mean_) / self.scale_

    def inverse_transform(self, Z):
        return np.asarray(Z) * self.scale_ + self.mean_


def encode_labels(y, classes):
    """Labels -> indices into `classes` (0..k−1); an unseen label is a clear error."""
    classes = np.asarray(classes)
    y = np.asarray(y)
    idx = np.searchsorted(classes, y)
    idx = np.clip(idx, 0, len(classes) - 1)
    bad = classes[idx] != y
    if np.any(bad):
        raise ValueError(f"y: expected labels among {classes.tolist()}, got "
                         f"{np.unique(y[bad])[:5].tolist()}")
    return idx


# --- files ---------------------------------------------------------------------------------------
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """One IDX array (.gz or not): magic 0 0 type ndim, big-endian dims, then the data."""
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: cannot read it ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    body = raw[4 + 4 * ndim :]
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(body) != expected:
        raise ValueError(f"{path}: truncated or padded IDX data: header says {dims} "
                         f"({expected} bytes), file holds {len(body)} bytes")
    return np.frombuffer(body, dtype).reshape(dims)


def _find(directory, stem):
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory}: expected {stem} or {stem}.gz (MNIST IDX files)")


def load_idx(directory, kind="train"):
    """MNIST / Fashion-MNIST from a directory of IDX files: pixels scaled to [0, 1]."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such directory")
    if kind not in ("train", "test"):
        raise ValueError(f"kind: expected 'train' or 't10k'-style 'test', got {kind!r}")
    prefix = "train" if kind == "train" else "t10k"
    images = read_idx(_find(directory, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(directory, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{directory}: {len(images)} images but {len(labels)} labels")
    X = images.reshape(len(images), -1).astype(np.float64) / 255.0
    return _classification(f"idx:{directory}", X, labels.astype(int))


def load_csv(path, target):
    """A CSV with a header row; `target` names the label column, the rest are features."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    lines = path.read_text().splitlines()
    if not lines:
        raise ValueError(f"{path}: empty file")
    header = [h.strip() for h in lines[0].split(",")]
    if target not in header:
        raise ValueError(f"{path}: no column {target!r}; columns are {header}")
    t = header.index(target)
    X, y = [], []
    for row_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(header):
            raise ValueError(f"{path}: line {row_no} has {len(cells)} cells, the header "
                             f"{len(header)}")
        feats = []
        for j, cell in enumerate(cells):
            if j == t:
                continue
            try:
                feats.append(float(cell))
            except ValueError:
                raise ValueError(f"{path}: line {row_no}, column {header[j]!r}: expected a "
                                 f"number, got {cell!r}") from None
        X.append(feats)
        y.append(cells[t])
    if not X:
        raise ValueError(f"{path}: no data rows")
    y = np.array(y)
    try:
        y = y.astype(np.int64) if all(v.lstrip("-").isdigit() for v in y) else y
    except ValueError:
        pass
    return _classification(f"csv:{path}", np.array(X), y)


def load_npz(path, x_key="X", y_key="y"):
    """Arrays X and y from an .npz, with pickled (object) content refused."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in (x_key, y_key) if k not in f.files]
            if missing:
                raise ValueError(f"{path}: no array {missing[0]!r}; it holds {f.files}")
            X, y = f[x_key], f[y_key]
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise ValueError(f"{path}: holds pickled objects, which jaxbp never loads") from None
        if str(e).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable .npz ({e})") from None
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npz ({e})") from None
    return _classification(f"npz:{path}", X, y)
