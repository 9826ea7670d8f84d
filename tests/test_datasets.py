"""jaxbp.datasets: the built-in datasets, the IDX / CSV / NPZ readers on files the tests write
themselves, and `load(name)`, the one entry point over both."""

import gzip
import pickle
import random
import sys

import numpy as np
import pytest

from jaxbp import data as D
from jaxbp import datasets as DS


# --- built-in datasets ---------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "shape", "task", "classes"), [
    ("breast_cancer", (569, 30), "binary", [0, 1]),
    ("digits", (1797, 64), "multiclass", list(range(10))),
    ("xor", (1000, 2), "binary", [0, 1]),
    ("moons", (1000, 2), "binary", [0, 1]),
    ("spirals", (1000, 2), "binary", [0, 1]),
])
def test_builtin_shapes_task_classes(name, shape, task, classes):
    ds = DS.load(name)
    assert isinstance(ds, D.Dataset) and ds.name == name
    assert ds.X.shape == shape and ds.X.dtype == np.float64
    assert ds.y.shape == shape[:1] and ds.y.dtype == np.int64
    assert ds.task == task and ds.classes.tolist() == classes
    assert ds.n_outputs == (1 if task == "binary" else len(classes))
    assert set(np.unique(ds.y).tolist()) == set(range(len(classes)))
    assert np.isfinite(ds.X).all()


def test_default_and_shipped_metadata():
    ds = DS.load()
    assert ds.name == "breast_cancer" and ds.feature_names[0] == "mean radius"
    assert len(ds.feature_names) == 30 and "breast_cancer" in repr(ds)
    digits = DS.load("digits")
    assert digits.X.min() == 0 and digits.X.max() == 16
    assert D.describe(digits)["counts"][0] == 178
    assert np.array_equal(DS.load("digits", seed=5).X, digits.X)  # shipped: seed is irrelevant


@pytest.mark.parametrize("name", ["xor", "moons", "spirals"])
def test_generators_are_seeded(name):
    a, b, c = DS.load(name, seed=1), DS.load(name, seed=1), DS.load(name, seed=2)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)
    small = DS.load(name, seed=1, n_samples=60, noise=0.0)
    assert small.X.shape == (60, 2) and len(small.y) == 60


def test_generator_geometry():
    xor = DS.load("xor", noise=0.0, n_samples=400)
    assert np.array_equal(xor.y, (xor.X[:, 0] * xor.X[:, 1] > 0).astype(int))
    sp = DS.load("spirals", n_samples=301, n_classes=3, noise=0.0, seed=4)
    assert sp.task == "multiclass" and np.bincount(sp.y).tolist() == [101, 100, 100]
    assert np.all(np.linalg.norm(sp.X, axis=1) <= 1.0 + 1e-12)
    # noise-free: the radius t and the arm fix the angle, so the arm is recoverable
    r = np.linalg.norm(sp.X, axis=1)
    arm = np.round((np.arctan2(sp.X[:, 1], sp.X[:, 0]) - 2 * np.pi * 1.5 * r) / (2 * np.pi / 3))
    assert np.array_equal(arm % 3, sp.y)


def test_load_bad_names_and_options():
    with pytest.raises(ValueError, match=r"name: expected one of \[.*'spirals'.*\], got 'nope'"):
        DS.load("nope")
    with pytest.raises(TypeError, match=r"load\('digits'\): takes no options, got \['noise'\]"):
        DS.load("digits", noise=0.1)
    with pytest.raises(TypeError, match=r"unknown options \['n_class'\]"):
        DS.load("spirals", n_class=3)
    with pytest.raises(ValueError, match="n_samples: expected an int >= 2, got 1"):
        DS.load("xor", n_samples=1)
    with pytest.raises(ValueError, match=r"noise: expected a finite number >= 0, got -0\.5"):
        DS.load("moons", noise=-0.5)
    with pytest.raises(ValueError, match="seed: expected an int >= 0"):
        DS.load("spirals", seed=-1)


def test_mnist1d_missing_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d", None)  # makes `import mnist1d...` fail
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(ImportError, match="pip install mnist1d"):
        DS.load("mnist1d")


def test_mnist1d_generated_offline_and_seeded():
    pytest.importorskip("mnist1d")
    before = np.random.get_state(), random.getstate()  # noqa: NPY002
    a = DS.load("mnist1d", n_samples=100, seed=3)  # the package seeds the global generators...
    after = np.random.get_state(), random.getstate()  # noqa: NPY002
    assert np.array_equal(after[0][1], before[0][1]) and after[0][2] == before[0][2]
    assert after[1] == before[1]  # ...and load puts them back
    b = DS.load("mnist1d", n_samples=100, seed=3)
    assert a.X.shape == (100, 40) and a.task == "multiclass" and a.classes.tolist() == list(
        range(10))
    assert np.bincount(a.y).tolist() == [10] * 10
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, DS.load("mnist1d", n_samples=100, seed=4).X)
    with pytest.raises(ValueError, match="multiple of 10"):
        DS.load("mnist1d", n_samples=105)


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
    ds = DS.load_idx(tmp_path)
    assert ds.X.shape == (12, 784) and ds.X.dtype == np.float64
    assert 0.0 <= ds.X.min() and ds.X.max() <= 1.0
    np.testing.assert_allclose(ds.X[3], images[3].ravel() / 255.0)
    assert ds.classes[ds.y].tolist() == labels.tolist() and ds.task == "multiclass"
    test = DS.load_idx(tmp_path, kind="test", classes=ds.classes)
    assert test.X.shape == (4, 784) and test.y.tolist() == [9] * 4  # ids of the training set
    np.testing.assert_array_equal(DS.read_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}"), labels)


def test_idx_other_dtypes_and_names(tmp_path):
    values = np.arange(-3, 3).reshape(2, 3)
    out = DS.read_idx(write(tmp_path / "a", idx_bytes(values, 0x0C)))
    assert out.dtype == np.int32 and out.dtype.isnative and out.tolist() == values.tolist()
    assert DS.read_idx(write(tmp_path / "b", idx_bytes(values / 4, 0x0D))).tolist() == (
        values / 4).tolist()
    # Kaggle-style dotted names, and a gzipped file without the .gz suffix
    write(tmp_path / "train-images.idx3-ubyte", idx_bytes(np.zeros((2, 2, 2))), gz=True)
    write(tmp_path / "train-labels.idx1-ubyte", idx_bytes(np.array([0, 1])))
    assert DS.load_idx(tmp_path).X.shape == (2, 4)


def test_idx_errors(tmp_path, images_labels):
    images, labels = images_labels
    good = idx_bytes(images)
    with pytest.raises(ValueError, match=r"bad magic number 0x12340801"):
        DS.read_idx(write(tmp_path / "magic", b"\x12\x34\x08\x01" + b"\x00" * 8))
    with pytest.raises(ValueError, match=r"bad magic number 0x00000701"):  # unknown type code
        DS.read_idx(write(tmp_path / "code", b"\x00\x00\x07\x01" + b"\x00" * 8))
    with pytest.raises(ValueError, match=r"truncated IDX header: 3 dimensions need 16 bytes"):
        DS.read_idx(write(tmp_path / "head", good[:10]))
    with pytest.raises(ValueError, match=r"short: truncated IDX data: .* \(9408 bytes\), the "
                                         r"file holds 9405 bytes"):
        DS.read_idx(write(tmp_path / "short", good[:-3]))
    with pytest.raises(ValueError, match="trailing bytes"):
        DS.read_idx(write(tmp_path / "long", good + b"\x00"))
    with pytest.raises(ValueError, match=r"gz: corrupt or truncated gzip data"):
        DS.read_idx(write(tmp_path / "cut.gz", gzip.compress(good)[:-20]))
    with pytest.raises(FileNotFoundError, match=r"missing-file: no such file"):
        DS.read_idx(tmp_path / "missing-file")
    d = tmp_path / "mnist"
    d.mkdir()
    write(d / "train-images-idx3-ubyte", good)
    with pytest.raises(FileNotFoundError, match=r"expected an IDX file train-labels-idx1-ubyte "
                                                r"or train-labels-idx1-ubyte.gz"):
        DS.load_idx(d)
    write(d / "train-labels-idx1-ubyte", idx_bytes(labels[:11]))
    with pytest.raises(ValueError, match=r"count mismatch: train-images-idx3-ubyte holds 12 "
                                         r"images but train-labels-idx1-ubyte holds 11 labels"):
        DS.load_idx(d)
    write(d / "train-labels-idx1-ubyte", idx_bytes(images))  # the images file as labels
    with pytest.raises(ValueError, match=r"labels-idx1-ubyte: expected integer labels \(m,\)"):
        DS.load_idx(d)
    with pytest.raises(ValueError, match="kind: expected 'train' or 'test'"):
        DS.load_idx(d, kind="t10k")
    with pytest.raises(FileNotFoundError, match="nowhere: no such directory"):
        DS.load_idx(tmp_path / "nowhere")


# --- files: CSV ----------------------------------------------------------------------------------
def test_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('a,"b, quoted",label\n1,2,x\n3, 4.5 ,"y\nz"\n\n5,6e-1,x\n')
    ds = DS.load_csv(path, target="label")
    assert ds.X.tolist() == [[1, 2], [3, 4.5], [5, 0.6]]
    assert ds.classes.tolist() == ["x", "y\nz"] and ds.y.tolist() == [0, 1, 0]
    assert ds.feature_names == ("a", "b, quoted")
    assert ds.task == "binary" and ds.name == f"csv:{path}"
    (tmp_path / "i.csv").write_text("\ufeffk,f\n3,0.5\n1,0.25\n2,1\n")  # BOM, target first
    ds = DS.load_csv(tmp_path / "i.csv", target="k")
    assert ds.task == "multiclass" and ds.classes.tolist() == [1, 2, 3] and ds.X.shape == (3, 1)
    (tmp_path / "r.csv").write_text("f;price\n1;1.5\n2;2.25\n")
    reg = DS.load_csv(tmp_path / "r.csv", target="price", delimiter=";")
    assert reg.task == "regression" and reg.y.tolist() == [1.5, 2.25]
    assert DS.load_csv(tmp_path / "i.csv", target="k", task="regression").y.dtype == np.float64


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
        DS.load_csv(path, target="label")


def test_csv_not_text(tmp_path):
    (tmp_path / "bin.csv").write_bytes(b"a,label\n\xff\xfe,1\n")
    with pytest.raises(ValueError, match=r"bin\.csv: expected a UTF-8 text CSV file"):
        DS.load_csv(tmp_path / "bin.csv", target="label")


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
    ds = DS.load_npz(tmp_path / "d.npz")
    assert np.array_equal(ds.X, X) and ds.classes[ds.y].tolist() == y.tolist()
    assert ds.feature_names == ("p", "q", "r") and ds.name == f"npz:{tmp_path / 'd.npz'}"
    np.savez_compressed(tmp_path / "c.npz", inputs=X.astype(np.float32), t=np.ones((4, 2)) / 3)
    ds = DS.load_npz(tmp_path / "c.npz", x_key="inputs", y_key="t")
    assert ds.task == "regression" and ds.y.shape == (4, 2) and ds.X.dtype == np.float64


def test_npz_refuses_pickles(tmp_path):
    np.savez(tmp_path / "obj.npz", X=np.array([Trap(), Trap()], dtype=object), y=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"obj\.npz: refusing pickled content"):
        DS.load_npz(tmp_path / "obj.npz")
    np.savez(tmp_path / "objy.npz", X=np.ones((2, 2)), y=np.array([Trap(), 1], dtype=object))
    with pytest.raises(ValueError, match="refusing pickled content"):
        DS.load_npz(tmp_path / "objy.npz")
    (tmp_path / "p.npz").write_bytes(pickle.dumps({"X": Trap()}))
    with pytest.raises(ValueError, match=r"p\.npz: refusing a pickle file"):
        DS.load_npz(tmp_path / "p.npz")
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
        DS.load_npz(path)


# --- one entry point: load(name) -----------------------------------------------------------------
def test_load_reads_every_file_kind(tmp_path, images_labels):
    images, labels = images_labels
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(images))
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(labels))
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(images[:4]))
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(labels[:4]))
    train = DS.load(f"idx:{tmp_path}")
    assert train.name == f"idx:{tmp_path}:train" and train.X.shape == (12, 784)
    assert np.array_equal(train.X, DS.load_idx(tmp_path).X)
    (tmp_path / "d.csv").write_text("f,k\n0.5,3\n0.25,1\n1,2\n")
    ds = DS.load(f"csv:{tmp_path / 'd.csv'}", target="k")
    assert ds.name == f"csv:{tmp_path / 'd.csv'}" and ds.classes.tolist() == [1, 2, 3]
    reg = DS.load(f"csv:{tmp_path / 'd.csv'}", target="k", task="regression")  # options pass on
    assert reg.task == "regression" and reg.y.tolist() == [3.0, 1.0, 2.0]
    np.savez(tmp_path / "d.npz", X=np.ones((4, 2)), y=np.array([0, 1, 0, 1]))
    ds = DS.load(f"npz:{tmp_path / 'd.npz'}")
    assert ds.name == f"npz:{tmp_path / 'd.npz'}" and ds.y.tolist() == [0, 1, 0, 1]
    xor = DS.load("xor", seed=1, target="ignored", n_samples=60)  # target: for csv: only
    assert np.array_equal(xor.X, DS.load("xor", seed=1, n_samples=60).X)


def test_load_with_test_gives_the_shipped_test_set(tmp_path, images_labels):
    images, labels = images_labels
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(images))
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(labels))
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(images[:4]))
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(labels[:4] * 0 + 9))
    train, test = DS.load_with_test(f"idx:{tmp_path}")
    assert train.name.endswith(":train") and test.name.endswith(":test")
    assert test.X.shape == (4, 784) and test.y.tolist() == [9] * 4  # ids of the training set
    assert test.classes.tolist() == train.classes.tolist()
    ds, none = DS.load_with_test("spirals", seed=2)
    assert none is None and np.array_equal(ds.X, DS.load("spirals", seed=2).X)


def test_load_bad_file_specs():
    with pytest.raises(DS.SpecError, match=r"^target: expected the name of the target column "
                                           r"for a csv: dataset$") as e:
        DS.load("csv:nowhere.csv")
    assert isinstance(e.value, ValueError) and e.value.argument == "target"
    with pytest.raises(ValueError, match=r"^name: expected idx:DIR, csv:PATH or npz:PATH for a "
                                         r"file, got 'foo:bar'$") as e:
        DS.load("foo:bar")
    assert e.value.argument == "name" and e.value.problem.startswith("expected idx:DIR")
    with pytest.raises(FileNotFoundError, match=r"nowhere\.npz: no such file"):
        DS.load("npz:nowhere.npz")
    with pytest.raises(ValueError, match=r"name: expected one of \[.*\], got None"):
        DS.load(None)


# --- the old home: jaxbp.data --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["BUILTIN", "load", "make_xor", "make_spirals", "make_moons",
                                  "make_mnist1d", "read_idx", "load_idx", "load_csv",
                                  "load_npz"])
def test_moved_names_still_reachable_from_data_with_a_warning(name):
    with pytest.warns(DeprecationWarning, match=rf"jaxbp\.data\.{name} has moved to "
                                                rf"jaxbp\.datasets\.{name}"):
        old = getattr(D, name)
    assert old is getattr(DS, name)


def test_old_data_load_still_loads():
    with pytest.warns(DeprecationWarning, match="jaxbp.datasets"):
        from jaxbp.data import load
    with pytest.warns(DeprecationWarning, match="jaxbp.datasets"):
        ds = D.load("digits")
    assert load is DS.load and np.array_equal(ds.X, DS.load("digits").X)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        D.nope  # noqa: B018
