"""jaxbp.data: the data model (make_dataset), splits, the standardiser, the row/column
conversion and labels."""

import numpy as np
import pytest

from jaxbp import data as D
from jaxbp import datasets as DS


# --- make_dataset: bad input ---------------------------------------------------------------------
@pytest.mark.parametrize(("X", "y", "error", "pattern"), [
    ([[1.0, np.nan], [0, 1]], [0, 1], ValueError, r"t: X: expected finite values, got nan at "
                                                  r"row 0, column 1"),
    ([[1.0, 2], [0, np.inf]], [0, 1], ValueError, "got inf at row 1, column 1"),
    (np.ones((3, 2)), [0, 1], ValueError, r"one label per row of X \(3 rows\), got 2 labels"),
    (np.ones((0, 2)), [], ValueError, r"non-empty 2-D array .* got shape \(0, 2\)"),
    (np.ones(3), [0, 1, 0], ValueError, r"reshape\(-1, 1\)"),
    (np.ones((3, 2)), [1, 1, 1], ValueError, r"at least 2 classes .* got 1 \(1\)"),
    (np.ones((3, 2)), ["a", "a", "a"], ValueError, r"at least 2 classes .* \('a'\)"),
    ([["a", "b"]], [0], TypeError, "expected a real numeric array, got dtype <U1"),
])
def test_make_dataset_rejects(X, y, error, pattern):
    with pytest.raises(error, match=pattern):
        D.make_dataset(X, y, name="t")


def test_make_dataset_tasks_and_labels():
    X = np.arange(12.0).reshape(6, 2)
    ds = D.make_dataset(X, ["b", "a", "c", "a", "b", "c"])
    assert ds.task == "multiclass" and ds.classes.tolist() == ["a", "b", "c"]
    assert ds.y.tolist() == [1, 0, 2, 0, 1, 2] and ds.classes[ds.y].tolist()[:2] == ["b", "a"]
    assert D.make_dataset(X, [-1, 1] * 3).task == "binary"
    reg = D.make_dataset(X, np.linspace(0, 1, 6))
    assert reg.task == "regression" and reg.classes is None and reg.n_outputs == 1
    multi = D.make_dataset(X, np.ones((6, 3)) * 0.5)
    assert multi.task == "regression" and multi.n_outputs == 3
    assert D.make_dataset(X, [1, 2, 3, 4, 5, 6], task="regression").y.dtype == np.float64
    fixed = D.make_dataset(X[:2], [3, 3], classes=[1, 2, 3])  # a file lacking classes 1 and 2
    assert fixed.task == "multiclass" and fixed.y.tolist() == [2, 2]
    with pytest.raises(ValueError, match=r"expected labels among \[1, 2\], got 3"):
        D.make_dataset(X[:2], [3, 1], classes=[1, 2])
    with pytest.raises(ValueError, match="task: expected binary for 2 classes, got 'multiclass'"):
        D.make_dataset(X, [0, 1] * 3, task="multiclass")
    with pytest.raises(ValueError, match=r"task: expected one of \['binary'"):
        D.make_dataset(X, [0, 1] * 3, task="classify")
    with pytest.raises(ValueError, match="feature_names: expected 2 names"):
        D.make_dataset(X, [0, 1] * 3, feature_names=["a"])
    with pytest.raises(ValueError, match="finite regression targets"):
        D.make_dataset(X, [0.5, np.nan, 1, 2, 3, 4])


# --- splits --------------------------------------------------------------------------------------
def test_stratified_split_keeps_proportions_and_is_deterministic():
    ds = DS.load("digits")
    train, test = D.train_test_split(ds, 0.25, seed=3)
    assert len(test.y) == round(0.25 * 1797) and len(train.y) + len(test.y) == 1797
    counts, test_counts = np.bincount(ds.y), np.bincount(test.y, minlength=10)
    assert np.all(np.abs(test_counts - counts * len(test.y) / 1797) < 1)  # within one row
    assert test.classes is ds.classes and train.task == "multiclass"
    again_train, again_test = D.train_test_split(ds, 0.25, seed=3)
    assert np.array_equal(test.X, again_test.X) and np.array_equal(train.y, again_train.y)
    other = D.train_test_split(ds, 0.25, seed=4)[1]
    assert not np.array_equal(test.X, other.X)
    keep, held = D.split_indices(ds.y, 0.25, seed=3)
    assert np.intersect1d(keep, held).size == 0 and np.union1d(keep, held).size == 1797
    assert np.array_equal(ds.X[held], test.X)


def test_binary_imbalanced_and_validation_split():
    ds = DS.load("breast_cancer")  # 212 malignant, 357 benign
    train, val = D.train_val_split(ds, 0.1, seed=0)
    assert np.bincount(val.y).tolist() == [21, 36] and len(train.y) == 512
    assert np.array_equal(D.train_val_split(ds, 0.1, seed=0)[1].X, val.X)


def test_regression_split_and_bad_fractions():
    X = np.arange(20.0).reshape(10, 2)
    ds = D.make_dataset(X, np.linspace(0, 1, 10))
    train, test = D.train_test_split(ds, 0.3, seed=1)
    assert len(test.y) == 3 and sorted(np.r_[train.y, test.y].tolist()) == ds.y.tolist()
    for bad in (0, 1, 1.5, -0.1, True, "0.2"):
        with pytest.raises(ValueError, match=r"test_fraction: expected a number in \(0, 1\)"):
            D.train_test_split(ds, bad)
    with pytest.raises(ValueError, match=r"val_fraction: expected a number in \(0, 1\)"):
        D.train_val_split(ds, 1.0)
    lonely = D.make_dataset(X, [0] * 9 + [1])
    with pytest.raises(ValueError, match="at least 2 rows of each class, got 1 of class 1"):
        D.train_test_split(lonely, 0.5)
    with pytest.raises(TypeError, match=r"ds: expected a jaxbp\.data\.Dataset, got tuple"):
        D.train_test_split((X, X), 0.5)


# --- standardising -------------------------------------------------------------------------------
def test_standardizer_uses_training_rows_only_and_round_trips():
    rng = np.random.default_rng(0)
    train = rng.normal(5.0, 3.0, (50, 3))
    train[:, 2] = 7.0  # a constant feature: scale 1, mapped to 0
    test = rng.normal(-4.0, 0.5, (20, 3))  # very different statistics
    s = D.Standardizer().fit(train)
    np.testing.assert_allclose(s.mean_, train.mean(axis=0))
    np.testing.assert_allclose(s.scale_[:2], train[:, :2].std(axis=0))
    assert s.scale_[2] == 1.0
    Z = s.transform(test)
    np.testing.assert_allclose(Z, (test - train.mean(axis=0)) / s.scale_)  # train stats, not test
    assert abs(Z[:, 0].mean()) > 1  # the test rows are not centred by their own mean
    Zt = s.transform(train)
    np.testing.assert_allclose(Zt.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Zt[:, :2].std(axis=0), 1)
    np.testing.assert_allclose(s.inverse_transform(Z), test, atol=1e-12)
    rebuilt = D.Standardizer(s.mean_.tolist(), s.scale_.tolist())
    np.testing.assert_array_equal(rebuilt.transform(test), Z)


def test_standardizer_errors():
    with pytest.raises(ValueError, match="Standardizer: not fitted"):
        D.Standardizer().transform(np.ones((2, 2)))
    s = D.Standardizer().fit(np.ones((4, 3)))
    with pytest.raises(ValueError, match="X: expected 3 features, as in the fitted data, got 2"):
        s.transform(np.ones((4, 2)))
    with pytest.raises(ValueError, match="X: expected finite values, got nan"):
        D.Standardizer().fit([[1.0, np.nan]])
    with pytest.raises(ValueError, match="mean and scale together"):
        D.Standardizer(mean=[0.0])
    with pytest.raises(ValueError, match="scale: expected 2 values > 0"):
        D.Standardizer([0.0, 0.0], [1.0, 0.0])


# --- row-major <-> column-major, labels ----------------------------------------------------------
def test_to_columns_shapes_and_values():
    X = np.arange(12.0).reshape(4, 3)
    Xc, Y = D.to_columns(X, [2, 0, 1, 2], "multiclass", 3)
    assert Xc.shape == (3, 4) and Xc.flags.c_contiguous and np.array_equal(Xc, X.T)
    assert Y.shape == (3, 4) and np.array_equal(Y, np.eye(3)[[2, 0, 1, 2]].T)
    assert np.all(Y.sum(axis=0) == 1)
    Xc, Y = D.to_columns(X, [1, 0, 0, 1], "binary", dtype=np.float32)
    assert Xc.dtype == Y.dtype == np.float32 and Y.tolist() == [[1, 0, 0, 1]]
    _, Y = D.to_columns(X, [0.5, 1.5, 2.5, 3.5], "regression")
    assert Y.shape == (1, 4)
    targets = np.arange(8.0).reshape(4, 2)
    _, Y = D.to_columns(X, targets, "regression")
    assert Y.shape == (2, 4) and Y.flags.c_contiguous and np.array_equal(Y, targets.T)
    Xc, Y = D.to_columns(X, None, "binary")
    assert Y is None and Xc.shape == (3, 4)


def test_round_trip_with_string_labels():
    labels = np.array(["setosa", "virginica", "versicolor", "setosa", "virginica"])
    enc = D.LabelEncoder().fit(labels)
    assert enc.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    ids = enc.transform(labels)
    assert ids.tolist() == [0, 2, 1, 0, 2]
    assert enc.inverse_transform(ids).tolist() == labels.tolist()
    X = np.ones((5, 2))
    Xc, Y = D.to_columns(X, ids, "multiclass", len(enc.classes_))
    assert D.from_columns(Y, "multiclass", enc.classes_).tolist() == labels.tolist()
    assert D.from_columns(Y, "multiclass").tolist() == ids.tolist()
    assert np.array_equal(Xc.T, X)
    # binary: a sigmoid row thresholded at 0.5, or the {0, 1} targets themselves
    yes_no = np.array(["no", "yes", "yes", "no"])
    ds = D.make_dataset(np.ones((4, 1)), yes_no)
    _, Yb = D.to_columns(ds.X, ds.y, ds.task)
    assert D.from_columns(Yb, "binary", ds.classes).tolist() == yes_no.tolist()
    assert D.from_columns(np.array([[0.2, 0.7, 0.51, 0.5]]), "binary", ds.classes).tolist() == [
        "no", "yes", "yes", "no"]
    targets = np.arange(8.0).reshape(4, 2)
    _, Yr = D.to_columns(np.ones((4, 1)), targets, "regression")
    assert np.array_equal(D.from_columns(Yr, "regression"), targets)
    assert D.from_columns(Yr[:1], "regression").shape == (4,)


def test_conversion_and_label_errors():
    X = np.ones((3, 2))
    with pytest.raises(ValueError, match=r"y: expected class ids in 0..2, got values from 0 to 3"):
        D.to_columns(X, [0, 3, 1], "multiclass", 3)
    with pytest.raises(ValueError, match=r"y: expected class ids in 0..1"):
        D.to_columns(X, [0, 2, 1], "binary")
    with pytest.raises(ValueError, match="n_classes: expected the number of classes"):
        D.to_columns(X, [0, 1, 1], "multiclass")
    with pytest.raises(ValueError, match="y: expected 3 labels, one per row of X, got 2"):
        D.to_columns(X, [0, 1], "binary")
    with pytest.raises(ValueError, match=r"y: expected class ids in 0..1, got dtype <U1"):
        D.to_columns(X, ["a", "b", "a"], "binary")
    with pytest.raises(ValueError, match="X: expected finite values"):
        D.to_columns([[0.0, np.inf]], [0], "binary")
    with pytest.raises(ValueError, match=r"task: expected one of"):
        D.to_columns(X, [0, 1, 1], "classes")
    with pytest.raises(ValueError, match="classes: expected 3 labels for 3 output"):
        D.from_columns(np.eye(3), "multiclass", ["a", "b"])
    enc = D.LabelEncoder(["cat", "dog"])
    with pytest.raises(ValueError, match=r"y: expected labels among \['cat', 'dog'\], got 'yak'"):
        enc.transform(["dog", "yak"])
    with pytest.raises(ValueError, match="LabelEncoder: not fitted"):
        D.LabelEncoder().transform([1])
    with pytest.raises(ValueError, match=r"ids: expected class ids in 0..1, got values from"):
        enc.inverse_transform([0, 2])
    with pytest.raises(ValueError, match="classes: expected distinct labels"):
        D.LabelEncoder([1, 1, 2])
    with pytest.raises(ValueError, match="labels of one type"):
        D.LabelEncoder().fit(np.array([1, "a"], dtype=object))
