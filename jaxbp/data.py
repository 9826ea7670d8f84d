"""The data model: a `Dataset` of row-major arrays with encoded labels, splits, standardising,
labels <-> class ids, and the one conversion from the user's row-major arrays to the engine's
column-major ones. Loading datasets by name or from files is `jaxbp.datasets` (its loaders
are still reachable here, as `jaxbp.data.load` etc., with a DeprecationWarning).

Users hold data row-major, as NumPy and scikit-learn do: X of shape (m, n_features), one example
per row, and labels y of shape (m,). The engine wants columns: X of shape (n_0, m) and Y of
shape (n_L, m). `to_columns` transposes once, at the boundary; `from_columns` turns the
engine's outputs back into row-major predictions.

A `Dataset` holds the rows with the labels already encoded as class ids 0..k−1 (`classes[y]`
gives back the original labels, ints or strings). Everything here is NumPy:

* `make_dataset` (checked), `subset`, `describe`;
* `train_test_split` / `train_val_split` (stratified for classification, deterministic for a
  seed), `Standardizer` (statistics of the training rows only), `LabelEncoder`.

Bad input is a `ValueError` (or `TypeError` for a wrong kind of object) that names the argument,
what was expected and what arrived.
"""

import warnings
from typing import Any, NamedTuple

import numpy as np

from jaxbp import validate

TASKS = ("binary", "multiclass", "regression")


# --- the dataset ---------------------------------------------------------------------------------
class Dataset(NamedTuple):
    """Row-major data as users hold it.

    X: (m, n_features) float64. y: (m,) int64 class ids 0..k−1 for "binary"/"multiclass", or
    float64 targets (m,) or (m, k) for "regression". classes: the original labels, sorted, as
    a NumPy array (`classes[y]` are the labels as given), None for regression.
    feature_names: a tuple of n_features names, or None. name: where the data came from.
    """

    X: np.ndarray
    y: np.ndarray
    task: str
    classes: np.ndarray | None
    feature_names: tuple[str, ...] | None
    name: str

    @property
    def n_classes(self) -> int:
        """k for classification, 0 for regression."""
        return 0 if self.classes is None else len(self.classes)

    @property
    def n_outputs(self) -> int:
        """n_L of a matching network: 1 (binary, sigmoid), k (multiclass, softmax) or the
        number of regression targets (identity)."""
        if self.task == "binary":
            return 1
        if self.task == "multiclass":
            return self.n_classes
        return 1 if self.y.ndim == 1 else self.y.shape[1]

    def __repr__(self):
        classes = None if self.classes is None else validate.short(self.classes.tolist())
        return (f"Dataset(name={self.name!r}, task={self.task!r}, X={self.X.shape} "
                f"{self.X.dtype}, y={self.y.shape} {self.y.dtype}, classes={classes})")


class ArgumentError(ValueError):
    """A bad argument, with its name (`argument`) and what was expected and what arrived
    (`problem`) kept apart, so that a caller with other names for the argument (the CLI's
    flags) can say the same in its own words. str(): "argument: problem"."""

    def __init__(self, argument, problem):
        super().__init__(argument, problem)
        self.argument, self.problem = argument, problem

    def __str__(self):
        return f"{self.argument}: {self.problem}"


def _py(v):
    """A NumPy scalar as the Python value it holds (for error messages)."""
    return v.item() if isinstance(v, np.generic) else v


def check_features(X, name="X"):
    """X as a float64 (m, n_features) array with m, n ≥ 1 and only finite values."""
    arr = np.asarray(validate.numeric_array(name, X))
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        hint = "; a single feature needs X.reshape(-1, 1)" if arr.ndim == 1 and arr.size else ""
        raise ValueError(f"{name}: expected a non-empty 2-D array (m, n_features), one example "
                         f"per row, got shape {arr.shape}{hint}")
    arr = arr.astype(np.float64, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise ValueError(f"{name}: expected finite values, got {arr[row, col]} at row {row}, "
                         f"column {col} ({int((~finite).sum())} non-finite in all)")
    return arr


def _labels_1d(y, name):
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name}: expected class labels of shape (m,), got shape {y.shape}")
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise ValueError(f"{name}: expected labels, got NaN at row {int(np.isnan(y).argmax())}")
    if y.dtype.kind not in "biufUSO":
        raise TypeError(f"{name}: expected int, float, bool or string labels, got dtype "
                        f"{y.dtype}")
    return y


def infer_task(y):
    """"regression" for float targets that are not all whole numbers or for (m, k) targets;
    otherwise "binary" (2 distinct labels) or "multiclass" (more). Pass `task=` to overrule."""
    y = np.asarray(y)
    if y.ndim == 2 or (y.dtype.kind == "f" and np.any(y != np.round(y))):
        return "regression"
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        return "regression"
    return "binary" if len(_unique(y, "y")) == 2 else "multiclass"


def _unique(y, name):
    try:
        return np.unique(y)
    except TypeError as e:  # an object array mixing e.g. ints and strings
        raise ValueError(f"{name}: expected labels of one type, got a mix ({e})") from None


def make_dataset(X, y, *, task=None, classes=None, feature_names=None, name="data"):
    """A checked `Dataset` from row-major arrays.

    task: "binary", "multiclass", "regression" or None (inferred by `infer_task`).
    classes: for classification, the full sorted label set to encode against (so a test file
    that lacks a class still gets the training file's ids); default: the labels in y.
    Raises ValueError for empty data, NaN/inf features, a length mismatch, a single class, a
    2-class label set called "multiclass" or vice versa, or labels outside `classes`.
    """
    X = check_features(X, f"{name}: X")
    y_arr = np.asarray(y)
    if y_arr.ndim == 0 or len(y_arr) != len(X):
        got = "a scalar" if y_arr.ndim == 0 else f"{len(y_arr)} labels"
        raise ValueError(f"{name}: expected one label per row of X ({len(X)} rows), got {got}")
    if task is None and classes is not None:
        task = "binary" if len(np.asarray(classes)) == 2 else "multiclass"
    elif task is None:
        task = infer_task(y_arr)
    if task not in TASKS:
        raise ValueError(f"task: expected one of {list(TASKS)} or None, got {task!r}")
    if feature_names is not None:
        feature_names = tuple(str(f) for f in feature_names)
        if len(feature_names) != X.shape[1]:
            raise ValueError(f"feature_names: expected {X.shape[1]} names, one per column of "
                             f"X, got {len(feature_names)}")
    if task == "regression":
        if y_arr.dtype.kind not in "biuf" or y_arr.ndim not in (1, 2) or y_arr.size == 0:
            raise ValueError(f"{name}: expected numeric regression targets of shape (m,) or "
                             f"(m, k), got dtype {y_arr.dtype} and shape {y_arr.shape}")
        y_arr = y_arr.astype(np.float64)
        if not np.all(np.isfinite(y_arr)):
            raise ValueError(f"{name}: expected finite regression targets, got NaN or inf")
        return Dataset(X, y_arr, task, None, feature_names, name)
    enc = LabelEncoder(classes) if classes is not None else LabelEncoder().fit(
        y_arr, name=f"{name}: y")
    k = len(enc.classes_)
    if k < 2:
        raise ValueError(f"{name}: expected at least 2 classes for classification, got 1 "
                         f"({_py(enc.classes_[0])!r})")
    if (task == "binary") != (k == 2):
        raise ValueError(f"task: expected {'binary' if k == 2 else 'multiclass'} for {k} "
                         f"classes, got {task!r}")
    ids = enc.transform(y_arr, name=f"{name}: y")
    return Dataset(X, ids, task, enc.classes_, feature_names, name)


def subset(ds, idx):
    """The rows `idx` of `ds` (classes, task and names kept)."""
    return ds._replace(X=ds.X[idx], y=ds.y[idx])


# --- labels --------------------------------------------------------------------------------------
class LabelEncoder:
    """Arbitrary labels (ints, strings, bools) <-> class ids 0..k−1, in sorted label order."""

    def __init__(self, classes=None):
        self.classes_ = None
        if classes is not None:
            classes = _labels_1d(classes, "classes")
            uniq = _unique(classes, "classes")
            if len(uniq) != len(classes) or len(uniq) == 0:
                raise ValueError(f"classes: expected distinct labels, got "
                                 f"{validate.short(classes.tolist())}")
            self.classes_ = uniq

    def fit(self, y, name="y"):
        """Learn the sorted distinct labels of y."""
        y = _labels_1d(y, name)
        if len(y) == 0:
            raise ValueError(f"{name}: expected at least one label, got none")
        self.classes_ = _unique(y, name)
        return self

    def _fitted(self):
        if self.classes_ is None:
            raise ValueError("LabelEncoder: not fitted; call fit(y) or pass classes first")
        return self.classes_

    def transform(self, y, name="y"):
        """Labels -> int64 ids; a label not in `classes_` is an error naming it."""
        classes = self._fitted()
        y = _labels_1d(y, name)
        index = {c: i for i, c in enumerate(classes.tolist())}
        values = y.tolist()
        ids = np.fromiter((index.get(v, -1) for v in values), np.int64, len(values))
        if np.any(ids < 0):
            bad = sorted({repr(v) for v, i in zip(values, ids, strict=True) if i < 0})
            raise ValueError(f"{name}: expected labels among "
                             f"{validate.short(classes.tolist())}, got {', '.join(bad[:5])} "
                             f"(first at row {int(np.argmax(ids < 0))})")
        return ids

    def fit_transform(self, y, name="y"):
        return self.fit(y, name).transform(y, name)

    def inverse_transform(self, ids, name="ids"):
        """Class ids 0..k−1 -> the original labels."""
        return self._fitted()[_class_ids(ids, len(self.classes_), name)]


def _class_ids(ids, k, name):
    ids = np.asarray(ids)
    if ids.dtype.kind not in "biuf" or (ids.size and (np.any(ids != np.round(ids))
                                                      or ids.min() < 0 or ids.max() >= k)):
        lo_hi = (f"values from {ids.min()} to {ids.max()}" if ids.dtype.kind in "biuf"
                 and ids.size else f"dtype {ids.dtype}")
        raise ValueError(f"{name}: expected class ids in 0..{k - 1}, got {lo_hi}")
    return ids.astype(np.int64)


# --- splits --------------------------------------------------------------------------------------
def split_indices(y, fraction, *, seed=0, stratify=True, name="fraction"):
    """(kept, held_out): sorted row indices, round(fraction·m) of them held out (at least one
    on each side), deterministic for `seed`.

    With stratify and 1-D labels, every class is held out in proportion: class c gives
    ⌊n_c·fraction'⌋ or one more (largest remainders first, so the total is exact), where
    fraction' = held_out / m. Each class then needs at least 2 rows."""
    y = np.asarray(y)
    m = len(y) if y.ndim else 0
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) or \
            not 0.0 < fraction < 1.0:
        raise ValueError(f"{name}: expected a number in (0, 1), got {fraction!r}")
    if m < 2:
        raise ValueError(f"{name}: expected at least 2 rows to split, got {m}")
    n_held = min(max(1, round(fraction * m)), m - 1)
    rng = np.random.default_rng(validate.seed(seed))
    if not stratify or y.ndim != 1:
        held = rng.permutation(m)[:n_held]
    else:
        classes, ids, counts = np.unique(y, return_inverse=True, return_counts=True)
        if counts.min() < 2:
            c = int(counts.argmin())
            raise ValueError(f"y: a stratified split needs at least 2 rows of each class, got "
                             f"{counts[c]} of class {_py(classes[c])!r}")
        quota = counts * (n_held / m)
        take = np.floor(quota).astype(np.int64)
        extra = np.argsort(-(quota - take), kind="stable")[: n_held - int(take.sum())]
        take[extra] += 1
        held = np.concatenate([rng.permutation(np.flatnonzero(ids == c))[: take[c]]
                               for c in range(len(classes))])
    mask = np.zeros(m, bool)
    mask[held] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _split(ds, fraction, seed, name):
    if not isinstance(ds, Dataset):
        raise TypeError(f"ds: expected a jaxbp.data.Dataset, got {type(ds).__name__}")
    keep, held = split_indices(ds.y, fraction, seed=seed,
                               stratify=ds.task != "regression", name=name)
    return subset(ds, keep), subset(ds, held)


def train_test_split(ds, test_fraction=0.2, seed=0):
    """(train, test) `Dataset`s: stratified for classification, deterministic for `seed`."""
    return _split(ds, test_fraction, seed, "test_fraction")


def train_val_split(ds, val_fraction=0.1, seed=0):
    """(train, validation) from the training rows, like `train_test_split`."""
    return _split(ds, val_fraction, seed, "val_fraction")


# --- standardising -------------------------------------------------------------------------------
class Standardizer:
    """z = (x − mean_) / scale_ per feature; fit it on the training rows only.

    scale_ is the population std (ddof 0); a constant feature (std below 10·eps·max(1, |mean|))
    gets scale 1, so it maps to 0 instead of NaN. `Standardizer(mean, scale)` rebuilds a fitted
    one from saved statistics."""

    def __init__(self, mean=None, scale=None):
        self.mean_ = self.scale_ = None
        if (mean is None) != (scale is None):
            raise ValueError("Standardizer: expected mean and scale together, or neither")
        if mean is not None:
            mean = check_features(np.reshape(mean, (1, -1)), "mean")[0]
            scale = check_features(np.reshape(scale, (1, -1)), "scale")[0]
            if scale.shape != mean.shape or np.any(scale <= 0):
                raise ValueError(f"scale: expected {mean.size} values > 0, like mean, got "
                                 f"{scale.size} with min {scale.min():g}")
            self.mean_, self.scale_ = mean, scale

    def fit(self, X):
        """Learn mean_ and scale_ from X (m, n_features)."""
        X = check_features(X)
        mean, std = X.mean(axis=0), X.std(axis=0)
        tiny = 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mean))
        self.mean_, self.scale_ = mean, np.where(std > tiny, std, 1.0)
        return self

    def _check(self, X, name):
        if self.mean_ is None:
            raise ValueError("Standardizer: not fitted; call fit(X_train) first")
        X = check_features(X, name)
        if X.shape[1] != self.mean_.size:
            raise ValueError(f"{name}: expected {self.mean_.size} features, as in the fitted "
                             f"data, got {X.shape[1]}")
        return X

    def transform(self, X):
        """(X − mean_) / scale_, float64."""
        return (self._check(X, "X") - self.mean_) / self.scale_

    def fit_transform(self, X):
        return self.fit(X).transform(X)

    def inverse_transform(self, Z):
        """Z · scale_ + mean_: back to the original units."""
        return self._check(Z, "Z") * self.scale_ + self.mean_


# --- row-major <-> column-major ------------------------------------------------------------------
def to_columns(X, y, task, n_classes=None, *, dtype=np.float64):
    """Row-major (X, y) -> the engine's column-major (X (n_0, m), Y (n_L, m)), transposed once.

    y: class ids (m,) for classification (`Dataset.y`, or `LabelEncoder.transform` of raw
    labels), targets (m,) or (m, k) for regression, or None (then Y is None). Y is one-hot
    (n_classes, m) for "multiclass" (n_classes required, ≥ 2), (1, m) of {0, 1} for "binary",
    (1, m) or (k, m) for "regression". Both come back C-contiguous in `dtype`."""
    if task not in TASKS:
        raise ValueError(f"task: expected one of {list(TASKS)}, got {task!r}")
    X = check_features(X)
    Xc = np.ascontiguousarray(X.T, dtype=dtype)  # the one transpose
    if y is None:
        return Xc, None
    y = np.asarray(y)
    if y.ndim == 0 or len(y) != X.shape[0]:
        got = "a scalar" if y.ndim == 0 else f"{len(y)}"
        raise ValueError(f"y: expected {X.shape[0]} labels, one per row of X, got {got}")
    if task == "regression":
        if y.ndim not in (1, 2) or y.dtype.kind not in "biuf":
            raise ValueError(f"y: expected numeric targets of shape (m,) or (m, k) for "
                             f"regression, got dtype {y.dtype} and shape {y.shape}")
        if not np.all(np.isfinite(y)):
            raise ValueError("y: expected finite regression targets, got NaN or inf")
        return Xc, np.ascontiguousarray(y.T if y.ndim == 2 else y[None, :], dtype=dtype)
    if y.ndim != 1:
        raise ValueError(f"y: expected class ids of shape (m,) for {task}, got shape {y.shape}")
    if task == "binary":
        if n_classes not in (None, 2):
            raise ValueError(f"n_classes: expected 2 (or None) for task 'binary', got "
                             f"{n_classes!r}")
        return Xc, np.ascontiguousarray(_class_ids(y, 2, "y")[None, :], dtype=dtype)
    if n_classes is None:
        raise ValueError("n_classes: expected the number of classes (len(ds.classes)) for task "
                         "'multiclass', got None")
    k = validate.positive_int("n_classes", n_classes, 2)
    ids = _class_ids(y, k, "y")
    Y = np.zeros((k, len(ids)), dtype=dtype)
    Y[ids, np.arange(len(ids))] = 1
    return Xc, Y


def from_columns(A, task, classes=None, *, threshold=0.5):
    """The engine's column-major outputs A^L (n_L, m) -> row-major predictions.

    Classification: the predicted class per column (argmax over a softmax's k rows; for a
    single sigmoid row, 1 where A > threshold), as labels `classes[id]` if classes is given,
    else as int ids. Regression: A.T, of shape (m,) for one output or (m, k)."""
    if task not in TASKS:
        raise ValueError(f"task: expected one of {list(TASKS)}, got {task!r}")
    A = np.asarray(A)
    if A.ndim != 2 or A.shape[1] == 0 or A.dtype.kind not in "biuf":
        raise ValueError(f"A: expected a numeric column-major array (n_L, m) with m >= 1, got "
                         f"dtype {A.dtype} and shape {A.shape}")
    if task == "regression":
        return A[0].copy() if A.shape[0] == 1 else A.T.copy()
    if A.shape[0] == 1:
        ids = (A[0] > threshold).astype(np.int64)
    else:
        ids = np.argmax(A, axis=0).astype(np.int64)
    if classes is None:
        return ids
    classes = np.asarray(classes)
    k = max(2, A.shape[0])
    if classes.ndim != 1 or len(classes) != k:
        raise ValueError(f"classes: expected {k} labels for {A.shape[0]} output row(s), got "
                         f"shape {classes.shape}")
    return classes[ids]


def describe(ds) -> dict[str, Any]:
    """A short JSON-able summary: name, task, rows, features, classes and their counts."""
    out = {"name": ds.name, "task": ds.task, "rows": int(ds.X.shape[0]),
           "features": int(ds.X.shape[1])}
    if ds.classes is not None:
        out["classes"] = [_py(c) for c in ds.classes]
        out["counts"] = np.bincount(ds.y, minlength=len(ds.classes)).tolist()
    return out


# --- moved to jaxbp.datasets ---------------------------------------------------------------------
# Still reachable here, with a DeprecationWarning. jaxbp.datasets builds on this module, so this
# module does not import it (that would be a cycle): datasets puts its loaders in `_moved` when
# it is imported, and `import jaxbp` imports it, so they are there whenever this module is.
MOVED = ("BUILTIN", "load", "make_xor", "make_spirals", "make_moons", "make_mnist1d",
         "read_idx", "load_idx", "load_csv", "load_npz")
_moved: dict[str, Any] = {}


def __getattr__(name):
    if name not in _moved:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"jaxbp.data.{name} has moved to jaxbp.datasets.{name}; import it from "
                  f"jaxbp.datasets (jaxbp.data.{name} will be removed)", DeprecationWarning,
                  stacklevel=2)
    return _moved[name]
