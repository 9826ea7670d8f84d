"""jaxbp.data: built-in datasets, splits, the standardiser, the row/column conversion, labels,
and the IDX / CSV / NPZ loaders on files the tests write themselves."""

import gzip
import pickle
import random
import sys

import numpy as np
import pytest

from jaxbp import data as D


# --- built-in datasets ---------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "shape", "task", "classes"), [
    ("breast_cancer", (569, 30), "binary", [0, 1]),
    ("digits", (1797, 64), "multiclass", list(range(10))),
    ("xor", (1000, 2), "binary", [0, 1]),
    ("moons", (1000, 2), "binary", [0, 1]),
    ("spirals", (1000, 2), "binary", [0, 1]),
])
def test_builtin_shapes_task_classes(name, shape, task, classes):
    ds = D.load(name)
    assert isinstance(ds, D.Dataset) and ds.name == name
    assert ds.X.shape == shape and ds.X.dtype == np.float64
    assert ds.y.shape == shape[:1] and ds.y.dtype == np.int64
    assert ds.task == task and ds.classes.tolist() == classes
    assert ds.n_outputs == (1 if task == "binary" else len(classes))
    assert set(np.unique(ds.y).tolist()) == set(range(len(classes)))
    assert np.isfinite(ds.X).all()


def test_default_and_shipped_metadata():
    ds = D.load()
    assert ds.name == "breast_cancer" and ds.feature_names[0] == "mean radius"
    assert len(ds.feature_names) == 30 and "breast_cancer" in repr(ds)
    digits = D.load("digits")
    assert digits.X.min() == 0 and digits.X.max() == 16
    assert D.describe(digits)["counts"][0] == 178
    assert np.array_equal(D.load("digits", seed=5).X, digits.X)  # shipped: seed is irrelevant


@pytest.mark.parametrize("name", ["xor", "moons", "spirals"])
def test_generators_are_seeded(name):
    a, b, c = D.load(name, seed=1), D.load(name, seed=1), D.load(name, seed=2)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)
    small = D.load(name, seed=1, n_samples=60, noise=0.0)
    assert small.X.shape == (60, 2) and len(small.y) == 60


def test_generator_geometry():
    xor = D.load("xor", noise=0.0, n_samples=400)
    assert np.array_equal(xor.y, (xor.X[:, 0] * xor.X[:, 1] > 0).astype(int))
    sp = D.load("spirals", n_samples=301, n_classes=3, noise=0.0, seed=4)
    assert sp.task == "multiclass" and np.bincount(sp.y).tolist() == [101, 100, 100]
    assert np.all(np.linalg.norm(sp.X, axis=1) <= 1.0 + 1e-12)
    # noise-free: the radius t and the arm fix the angle, so the arm is recoverable
    r = np.linalg.norm(sp.X, axis=1)
    arm = np.round((np.arctan2(sp.X[:, 1], sp.X[:, 0]) - 2 * np.pi * 1.5 * r) / (2 * np.pi / 3))
    assert np.array_equal(arm % 3, sp.y)


def test_load_bad_names_and_options():
    with pytest.raises(ValueError, match=r"name: expected one of \[.*'spirals'.*\], got 'nope'"):
        D.load("nope")
    with pytest.raises(TypeError, match=r"load\('digits'\): takes no options, got \['noise'\]"):
        D.load("digits", noise=0.1)
    with pytest.raises(TypeError, match=r"unknown options \['n_class'\]"):
        D.load("spirals", n_class=3)
    with pytest.raises(ValueError, match="n_samples: expected an int >= 2, got 1"):
        D.load("xor", n_samples=1)
    with pytest.raises(ValueError, match=r"noise: expected a finite number >= 0, got -0\.5"):
        D.load("moons", noise=-0.5)
    with pytest.raises(ValueError, match="seed: expected an int >= 0"):
        D.load("spirals", seed=-1)


def test_mnist1d_missing_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d", None)  # makes `import mnist1d...` fail
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(ImportError, match="pip install mnist1d"):
        D.load("mnist1d")


def test_mnist1d_generated_offline_and_seeded():
    pytest.importorskip("mnist1d")
    before = np.random.get_state(), random.getstate()  # noqa: NPY002
    a = D.load("mnist1d", n_samples=100, seed=3)  # the package seeds the global generators...
    after = np.random.get_state(), random.getstate()  # noqa: NPY002
    assert np.array_equal(after[0][1], before[0][1]) and after[0][2] == before[0][2]
    assert after[1] == before[1]  # ...and load puts them back
    b = D.load("mnist1d", n_samples=100, seed=3)
    assert a.X.shape == (100, 40) and a.task == "multiclass" and a.classes.tolist() == list(
        range(10))
    assert np.bincount(a.y).tolist() == [10] * 10
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, D.load("mnist1d", n_samples=100, seed=4).X)
    with pytest.raises(ValueError, match="multiple of 10"):
        D.load("mnist1d", n_samples=105)


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
    ds = D.load("digits")
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
    ds = D.load("breast_cancer")  # 212 malignant, 357 benign
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


# --- files: IDX ----------------------------------------------------------------------------------
def idx_bytes(array, code=0x08):
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[code]
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.asarray(array).astype(dtype).tobytes()


def write(path, raw, gz=False):
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.fixture
def images_labels():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 28, 28)).astype(np.uint8), np.arange(12) % 10


@pytest.mark.parametrize("gz", [False, True])
def test_idx_raw_and_gz(tmp_path, images_labels, gz):
    images, labels = images_labels
    sfx = ".gz" if gz else ""
    write(tmp_path / f"train-images-idx3-ubyte{sfx}", idx_bytes(images), gz)
    write(tmp_path / f"train-labels-idx1-ubyte{sfx}", idx_bytes(labels), gz)
    write(tmp_path / f"t10k-images-idx3-ubyte{sfx}", idx_bytes(images[:4]), gz)
    write(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", idx_bytes(labels[:4] * 0 + 9), gz)
    ds = D.load_idx(tmp_path)
    assert ds.X.shape == (12, 784) and ds.X.dtype == np.float64
    assert 0.0 <= ds.X.min() and ds.X.max() <= 1.0
    np.testing.assert_allclose(ds.X[3], images[3].ravel() / 255.0)
    assert ds.classes[ds.y].tolist() == labels.tolist() and ds.task == "multiclass"
    test = D.load_idx(tmp_path, kind="test", classes=ds.classes)
    assert test.X.shape == (4, 784) and test.y.tolist() == [9] * 4  # ids of the training set
    np.testing.assert_array_equal(D.read_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}"), labels)


def test_idx_other_dtypes_and_names(tmp_path):
    values = np.arange(-3, 3).reshape(2, 3)
    out = D.read_idx(write(tmp_path / "a", idx_bytes(values, 0x0C)))
    assert out.dtype == np.int32 and out.dtype.isnative and out.tolist() == values.tolist()
    assert D.read_idx(write(tmp_path / "b", idx_bytes(values / 4, 0x0D))).tolist() == (
        values / 4).tolist()
    # Kaggle-style dotted names, and a gzipped file without the .gz suffix
    write(tmp_path / "train-images.idx3-ubyte", idx_bytes(np.zeros((2, 2, 2))), gz=True)
    write(tmp_path / "train-labels.idx1-ubyte", idx_bytes(np.array([0, 1])))
    assert D.load_idx(tmp_path).X.shape == (2, 4)


def test_idx_errors(tmp_path, images_labels):
    images, labels = images_labels
    good = idx_bytes(images)
    with pytest.raises(ValueError, match=r"bad magic number 0x12340801"):
        D.read_idx(write(tmp_path / "magic", b"\x12\x34\x08\x01" + b"\x00" * 8))
    with pytest.raises(ValueError, match=r"bad magic number 0x00000701"):  # unknown type code
        D.read_idx(write(tmp_path / "code", b"\x00\x00\x07\x01" + b"\x00" * 8))
    with pytest.raises(ValueError, match=r"truncated IDX header: 3 dimensions need 16 bytes"):
        D.read_idx(write(tmp_path / "head", good[:10]))
    with pytest.raises(ValueError, match=r"short: truncated IDX data: .* \(9408 bytes\), the "
                                         r"file holds 9405 bytes"):
        D.read_idx(write(tmp_path / "short", good[:-3]))
    with pytest.raises(ValueError, match="trailing bytes"):
        D.read_idx(write(tmp_path / "long", good + b"\x00"))
    with pytest.raises(ValueError, match=r"gz: corrupt or truncated gzip data"):
        D.read_idx(write(tmp_path / "cut.gz", gzip.compress(good)[:-20]))
    with pytest.raises(FileNotFoundError, match=r"missing-file: no such file"):
        D.read_idx(tmp_path / "missing-file")
    d = tmp_path / "mnist"
    d.mkdir()
    write(d / "train-images-idx3-ubyte", good)
    with pytest.raises(FileNotFoundError, match=r"expected an IDX file train-labels-idx1-ubyte "
                                                r"or train-labels-idx1-ubyte.gz"):
        D.load_idx(d)
    write(d / "train-labels-idx1-ubyte", idx_bytes(labels[:11]))
    with pytest.raises(ValueError, match=r"count mismatch: train-images-idx3-ubyte holds 12 "
                                         r"images but train-labels-idx1-ubyte holds 11 labels"):
        D.load_idx(d)
    write(d / "train-labels-idx1-ubyte", idx_bytes(images))  # the images file as labels
    with pytest.raises(ValueError, match=r"labels-idx1-ubyte: expected integer labels \(m,\)"):
        D.load_idx(d)
    with pytest.raises(ValueError, match="kind: expected 'train' or 'test'"):
        D.load_idx(d, kind="t10k")
    with pytest.raises(FileNotFoundError, match="nowhere: no such directory"):
        D.load_idx(tmp_path / "nowhere")


# --- files: CSV ----------------------------------------------------------------------------------
def test_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('a,"b, quoted",label\n1,2,x\n3, 4.5 ,"y\nz"\n\n5,6e-1,x\n')
    ds = D.load_csv(path, target="label")
    assert ds.X.tolist() == [[1, 2], [3, 4.5], [5, 0.6]]
    assert ds.classes.tolist() == ["x", "y\nz"] and ds.y.tolist() == [0, 1, 0]
    assert ds.feature_names == ("a", "b, quoted")
    assert ds.task == "binary" and ds.name == f"csv:{path}"
    (tmp_path / "i.csv").write_text("\ufeffk,f\n3,0.5\n1,0.25\n2,1\n")  # BOM, target first
    ds = D.load_csv(tmp_path / "i.csv", target="k")
    assert ds.task == "multiclass" and ds.classes.tolist() == [1, 2, 3] and ds.X.shape == (3, 1)
    (tmp_path / "r.csv").write_text("f;price\n1;1.5\n2;2.25\n")
    reg = D.load_csv(tmp_path / "r.csv", target="price", delimiter=";")
    assert reg.task == "regression" and reg.y.tolist() == [1.5, 2.25]
    assert D.load_csv(tmp_path / "i.csv", target="k", task="regression").y.dtype == np.float64


@pytest.mark.parametrize(("text", "error", "pattern"), [
    (None, FileNotFoundError, r"nope\.csv: no such file"),
    ("", ValueError, "expected a header row of column names, got an empty file"),
    ("1,2,3\n4,5,6\n", ValueError, "expected a header row .* got only numbers"),
    ("a,b\n1,2\n", ValueError, r"missing target column 'label'; the columns are \['a', 'b'\]"),
    ("a,label,a\n1,0,2\n", ValueError, r"expected distinct column names, got \['a'\]"),
    ("label\n1\n", ValueError, "expected feature columns besides the target"),
    ("a,label\n", ValueError, "expected data rows after the header, got none"),
    ("a,label\n1,0\nfoo,1\n", ValueError, r"line 3, column 'a': expected a number, got 'foo'"),
    ("a,label\n1,0\n,1\n", ValueError, r"line 3, column 'a': expected a number, got ''"),
    ("a,label\n1,0\nnan,1\n", ValueError, r"line 3, column 'a': expected a finite number, "
                                          r"got 'nan'"),
    ("a,label\n1,0\n2,1,3\n", ValueError, "line 3: expected 2 cells as in the header, got 3"),
    ('a,label\n"1\n2",0\n3,x\n', ValueError, r"line 2, column 'a': expected a number, got '1\\n2'"),
    ("a,label\n1,0\n2, \n", ValueError, r"line 3, column 'label': expected a label, got an "
                                        r"empty cell"),
    ("a,label\n1,0\n2,0\n", ValueError, r"at least 2 classes for classification, got 1"),
])
def test_csv_errors(tmp_path, text, error, pattern):
    path = tmp_path / ("nope.csv" if text is None else "bad.csv")
    if text is not None:
        path.write_text(text)
    with pytest.raises(error, match=pattern):
        D.load_csv(path, target="label")


def test_csv_not_text(tmp_path):
    (tmp_path / "bin.csv").write_bytes(b"a,label\n\xff\xfe,1\n")
    with pytest.raises(ValueError, match=r"bin\.csv: expected a UTF-8 text CSV file"):
        D.load_csv(tmp_path / "bin.csv", target="label")


# --- files: NPZ ----------------------------------------------------------------------------------
UNPICKLED = []


def _record_unpickling():
    UNPICKLED.append(True)
    return "boom"


class Trap:
    """Unpickling a Trap would call _record_unpickling: the test fails if that ever happens."""

    def __reduce__(self):
        return _record_unpickling, ()


def test_npz(tmp_path):
    X, y = np.arange(12.0).reshape(4, 3), np.array(["a", "b", "a", "b"])
    np.savez(tmp_path / "d.npz", X=X, y=y, feature_names=np.array(["p", "q", "r"]))
    ds = D.load_npz(tmp_path / "d.npz")
    assert np.array_equal(ds.X, X) and ds.classes[ds.y].tolist() == y.tolist()
    assert ds.feature_names == ("p", "q", "r") and ds.name == f"npz:{tmp_path / 'd.npz'}"
    np.savez_compressed(tmp_path / "c.npz", inputs=X.astype(np.float32), t=np.ones((4, 2)) / 3)
    ds = D.load_npz(tmp_path / "c.npz", x_key="inputs", y_key="t")
    assert ds.task == "regression" and ds.y.shape == (4, 2) and ds.X.dtype == np.float64


def test_npz_refuses_pickles(tmp_path):
    np.savez(tmp_path / "obj.npz", X=np.array([Trap(), Trap()], dtype=object), y=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"obj\.npz: refusing pickled content"):
        D.load_npz(tmp_path / "obj.npz")
    np.savez(tmp_path / "objy.npz", X=np.ones((2, 2)), y=np.array([Trap(), 1], dtype=object))
    with pytest.raises(ValueError, match="refusing pickled content"):
        D.load_npz(tmp_path / "objy.npz")
    (tmp_path / "p.npz").write_bytes(pickle.dumps({"X": Trap()}))
    with pytest.raises(ValueError, match=r"p\.npz: refusing a pickle file"):
        D.load_npz(tmp_path / "p.npz")
    assert UNPICKLED == []


@pytest.mark.parametrize(("make", "error", "pattern"), [
    (None, FileNotFoundError, r"nope\.npz: no such file"),
    (lambda p: np.savez(p, X=np.ones((2, 2))), ValueError,
     r"missing array 'y'; the archive holds \['X'\]"),
    (lambda p: p.write_text("X,y\n1,2\n"), ValueError, r"expected an \.npz \(zip\) archive"),
    (lambda p: np.save(p.with_suffix(".npy"), np.ones(2)) or p.with_suffix(".npy").rename(p),
     ValueError, "got a single .npy array"),
    (lambda p: p.write_bytes(b"PK\x03\x04" + b"\x00" * 40), ValueError,
     r"not a readable \.npz archive"),
    (lambda p: np.savez(p, X=np.ones((3, 2)), y=np.array([0, 1])), ValueError,
     r"one label per row of X \(3 rows\), got 2 labels"),
    (lambda p: np.savez(p, X=np.array([[np.inf, 0], [0, 0]]), y=np.array([0, 1])), ValueError,
     "expected finite values, got inf at row 0, column 0"),
    (lambda p: np.savez(p, X=np.ones((2, 2)), y=np.array([0, 1]), feature_names=np.ones(2)),
     ValueError, "'feature_names' to be a 1-D array of strings"),
])
def test_npz_errors(tmp_path, make, error, pattern):
    path = tmp_path / ("nope.npz" if make is None else "bad.npz")
    if make is not None:
        make(path)
    with pytest.raises(error, match=pattern):
        D.load_npz(path)
