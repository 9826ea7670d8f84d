"""Built-in datasets, the split and standardiser, and the IDX/CSV/NPZ loaders."""

import gzip

import numpy as np
import pytest

from jaxbp import datasets as D


@pytest.mark.parametrize(("name", "shape", "task", "k"), [
    ("breast_cancer", (569, 30), "binary", 2), ("digits", (1797, 64), "multiclass", 10),
    ("xor", (1000, 2), "binary", 2), ("moons", (1000, 2), "binary", 2),
    ("spirals", (1000, 2), "binary", 2)])
def test_builtin(name, shape, task, k):
    ds = D.load(name)
    assert ds.X.shape == shape and ds.task == task and len(ds.classes) == k
    again = D.load(name)
    assert np.array_equal(ds.X, again.X) and np.array_equal(ds.y, again.y)  # deterministic


def test_unknown_and_optional():
    with pytest.raises(ValueError, match=r"dataset: expected one of .* got 'nope'"):
        D.load("nope")
    try:
        import mnist1d  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install mnist1d"):
            D.load("mnist1d")


def test_split_is_stratified_and_standardiser_uses_train_only():
    ds = D.load("digits")
    train, test = D.train_test_split(ds, 0.25, seed=3)
    assert len(train.y) + len(test.y) == 1797
    p_all = np.bincount(ds.y) / len(ds.y)
    assert np.abs(np.bincount(test.y, minlength=10) / len(test.y) - p_all).max() < 0.01
    again = D.train_test_split(ds, 0.25, seed=3)[1]
    assert np.array_equal(test.X, again.X)
    s = D.Standardizer().fit(train.X)
    Z = s.transform(train.X)
    assert np.allclose(Z.mean(axis=0), 0) and np.all(s.scale_ > 0)  # constant pixels: scale 1
    np.testing.assert_allclose(s.mean_, train.X.mean(axis=0))
    assert not np.allclose(s.mean_, test.X.mean(axis=0))
    np.testing.assert_allclose(s.inverse_transform(Z), train.X, atol=1e-12)


def test_labels_and_bad_data():
    classes = np.array(["cat", "dog", "emu"])
    assert D.encode_labels(["emu", "cat"], classes).tolist() == [2, 0]
    with pytest.raises(ValueError, match="labels among"):
        D.encode_labels(["yak"], classes)
    with pytest.raises(ValueError, match="finite features"):
        D._classification("t", np.array([[1.0, np.nan], [0, 1]]), [0, 1])
    with pytest.raises(ValueError, match="2 labels for 3 rows"):
        D._classification("t", np.ones((3, 2)), [0, 1])
    with pytest.raises(ValueError, match="non-empty"):
        D._classification("t", np.ones((0, 2)), [])
    with pytest.raises(ValueError, match="at least 2 classes"):
        D._classification("t", np.ones((3, 2)), [1, 1, 1])


def write_idx(path, array, code=0x08, gz=False):
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(">u1" if code == 0x08 else ">f4").tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("gz", [False, True])
def test_idx(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28)).astype(np.uint8)
    labels = np.arange(12) % 3
    sfx = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", images, gz=gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", labels, gz=gz)
    ds = D.load_idx(tmp_path)
    assert ds.X.shape == (12, 784) and ds.X.max() <= 1.0
    np.testing.assert_allclose(ds.X[3], images[3].ravel() / 255.0)
    assert ds.y.tolist() == labels.tolist()
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        D.load_idx(tmp_path, kind="test")


def test_idx_errors(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 2, 2)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4))
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        D.load_idx(tmp_path)
    (tmp_path / "bad").write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="bad magic number"):
        D.read_idx(tmp_path / "bad")
    raw = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "short").write_bytes(raw[:-3])
    with pytest.raises(ValueError, match="truncated or padded"):
        D.read_idx(tmp_path / "short")


def test_csv_and_npz(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,x\n3,4,y\n5,6,x\n")
    ds = D.load_csv(tmp_path / "d.csv", target="label")
    assert ds.X.tolist() == [[1, 2], [3, 4], [5, 6]] and ds.classes.tolist() == ["x", "y"]
    with pytest.raises(ValueError, match="no column 'target'"):
        D.load_csv(tmp_path / "d.csv", target="target")
    (tmp_path / "e.csv").write_text("a,label\n1,0\nfoo,1\n")
    with pytest.raises(ValueError, match="line 3, column 'a': expected a number, got 'foo'"):
        D.load_csv(tmp_path / "e.csv", target="label")
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        D.load_csv(tmp_path / "nope.csv", target="label")
    np.savez(tmp_path / "d.npz", X=np.ones((4, 3)), y=np.array([0, 1, 0, 1]))
    assert D.load_npz(tmp_path / "d.npz").X.shape == (4, 3)
    np.savez(tmp_path / "p.npz", X=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    with pytest.raises(ValueError, match="pickled"):
        D.load_npz(tmp_path / "p.npz")
    with pytest.raises(ValueError, match="no array 'y'"):
        np.savez(tmp_path / "q.npz", X=np.ones((2, 2)))
        D.load_npz(tmp_path / "q.npz")
