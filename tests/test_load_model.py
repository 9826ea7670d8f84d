"""A checkpoint of `jaxbp train` is a deployable model: `jaxbp.load_model(path)` predicts raw rows
(standardised inside; a DataFrame's columns matched by name), and `jaxbp predict` does the same
for a CSV file with a header (by name) or without one (by position). The CLI runs in
subprocesses on a small CSV the tests write; its columns differ in scale by 100×, so that rows
left unstandardised would score otherwise."""

import json
import re
import types

import jax
import numpy as np
import pytest
from test_cli import jaxbp_cli
from test_cli_task import _csv
from test_resume import _run_together, _start

import jaxbp
from jaxbp import data, datasets
from jaxbp.model_file import MismatchError

CLASSES = ["ant", "bee", "cat"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`jaxbp train` on a 3-class CSV (columns a, b, c, target kind) with --checkpoint_dir and
    no --plot, then `jaxbp evaluate` of its checkpoint."""
    tmp = tmp_path_factory.mktemp("trained")
    Z = np.random.default_rng(2).normal(size=(150, 3))
    X = Z * [1, 10, 100] + [0, 5, -50]
    kinds = np.array(CLASSES)[np.argmax(Z @ [[1, -1, 0], [0, 1, -1], [1, 0, 1]], axis=1)]
    dataset = _csv(tmp / "kinds.csv", kinds, name="kind", X=X)
    checkpoint = tmp / "run" / "checkpoint.npz"
    train = jaxbp_cli("train", "--dataset", dataset, "--target", "kind", "--hidden", "8",
                      "--epochs", "30", "--lr", "0.02", "--quiet", "--checkpoint_dir",
                      str(checkpoint.parent), cwd=tmp)
    assert train.returncode == 0, train.stderr
    ev = jaxbp_cli("evaluate", "--checkpoint", str(checkpoint))
    assert ev.returncode == 0, ev.stderr
    _, test = data.train_test_split(datasets.load(dataset, target="kind"), 0.2, seed=0)
    return types.SimpleNamespace(tmp=tmp, X=X, test=test, checkpoint=checkpoint,
                                 train=train.stdout, evaluate=json.loads(ev.stdout))


def test_the_plot_goes_into_the_checkpoint_dir(trained):
    plot = trained.checkpoint.parent / "learning_curves.png"
    assert plot.stat().st_size > 10_000 and not (trained.tmp / "learning_curves.png").exists()
    lines = trained.train.splitlines()
    assert f"learning curves: {plot}" in lines
    epochs = next(line for line in lines if line.startswith("epochs run: "))
    assert re.fullmatch(r"epochs run: (\d+) \(epochs 1 to \1\)(; stopped early, best epoch "
                        r"\d+ restored)?", epochs), epochs


def test_the_plot_marks_the_best_epoch(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from jaxbp import cli

    marks = []
    monkeypatch.setattr(Axes, "axvline", lambda ax, x, **kw: marks.append((x, kw["label"])))
    history = {"epoch": [0, 1, 2], "train_cost": [3.0, 2.0, 2.5], "val_cost": [3.0, 2.0, 2.2],
               "val_score": [0.5, 0.6, 0.55]}
    cli.plot_history(history, tmp_path / "p.png", "title", best_epoch=1, restored=True)
    assert marks == [(2, "best epoch 2 (restored)")] * 2  # both panels, counted from 1
    assert (tmp_path / "p.png").is_file()


def test_load_model_on_raw_rows_equals_evaluate(trained):
    model = jaxbp.load_model(trained.checkpoint)
    assert model.task == "multiclass" and model.classes_.tolist() == CLASSES
    assert model.feature_names_in_ == ("a", "b", "c") and model.target == "kind"
    assert model.net.sizes == (3, 8, 3)
    X, labels = trained.test.X, trained.test.classes[trained.test.y]  # raw rows, as in the file
    correct = int(np.sum(model.predict(X) == labels))
    assert correct == round(trained.evaluate["accuracy"] * len(X))
    # what the standardiser inside is for: the raw rows straight into the network score less
    raw = np.argmax(np.asarray(jaxbp.predict(model.net, model.params, X)), axis=1)
    assert int(np.sum(model.classes_[raw] == labels)) < correct
    P = model.predict_proba(X)
    assert P.shape == (len(X), 3) and np.allclose(P.sum(axis=1), 1, atol=1e-6)
    assert (model.classes_[P.argmax(axis=1)] == model.predict(X)).all()


def test_a_dataframe_is_matched_by_column_name(trained):
    pd = pytest.importorskip("pandas")
    model = jaxbp.load_model(trained.checkpoint)
    X = trained.test.X
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    shuffled = df[["c", "a", "b"]].assign(kind="?")  # the target column is passed over
    assert (model.predict(shuffled) == model.predict(X)).all()
    assert np.array_equal(model.predict_proba(shuffled), model.predict_proba(X))
    assert (model.predict(pd.DataFrame(X)) == model.predict(X)).all()  # no names: by position
    with pytest.raises(MismatchError, match=r"^X: missing column 'b': the model takes the "
                                            r"columns \['a', 'b', 'c'\]$"):
        model.predict(df[["c", "a"]])
    with pytest.raises(MismatchError, match=r"^X: unknown column 'd'"):
        model.predict(df.assign(d=1.0))


def test_rows_that_do_not_fit_are_refused(trained):
    model = jaxbp.load_model(trained.checkpoint)
    with pytest.raises(MismatchError, match=r"^X: expected 3 columns, as in training \(\['a', "
                                            r"'b', 'c'\]\), got 2$"):
        model.predict(trained.X[:, :2])
    with pytest.raises(MismatchError, match=r"^X: expected distinct column names, got 'a'"):
        model.column_order(["a", "b", "a"])
    with pytest.raises(ValueError, match=r"^X: expected finite values, got nan at row 0"):
        model.predict([[np.nan, 0.0, 0.0]])


def _write(path, header, rows):
    path.write_text("".join(",".join(map(str, r)) + "\n" for r in ([header] if header else [])
                            + rows))
    return path


def test_predict_command(trained):
    model = jaxbp.load_model(trained.checkpoint)
    X = trained.X[:5]
    tmp = trained.tmp
    plain = _write(tmp / "plain.csv", None, [[f"{v:.4f}" for v in x] for x in X])
    X = np.loadtxt(plain, delimiter=",")  # as written
    reordered = _write(tmp / "reordered.csv", ["kind", "c", "a", "b"],
                       [["?", *(f"{x[j]:.4f}" for j in (2, 0, 1))] for x in X])
    missing = _write(tmp / "missing.csv", ["c", "a"], [[1, 2]])
    ck = ("predict", "--checkpoint", trained.checkpoint)
    by_position, by_name, proba, refused = _run_together(
        (*ck, "--input", plain),
        (*ck, "--input", reordered, "--output", tmp / "labels.csv"),
        (*ck, "--input", plain, "--proba", "--output", tmp / "proba.csv"),
        (*ck, "--input", missing))
    for rc, _, err in (by_position, by_name, proba):
        assert rc == 0 and not err, err
    labels = model.predict(X).tolist()
    assert by_position[1].splitlines() == labels  # one prediction a row: no header taken
    assert by_name[1] == "" and (tmp / "labels.csv").read_text().splitlines() == [
        "prediction", *labels]
    header, *rows = (tmp / "proba.csv").read_text().splitlines()
    assert header == ",".join(CLASSES)
    assert np.allclose([[float(v) for v in r.split(",")] for r in rows], model.predict_proba(X),
                       rtol=1e-6, atol=0)
    assert refused[0] == 2 and refused[2] == (
        f"jaxbp predict: error: --input {missing}: missing column 'b': the model takes the "
        f"columns ['a', 'b', 'c']\n")


def test_export_command_writes_a_graph_of_raw_rows(trained):
    """`jaxbp export`: the ONNX file takes raw rows in training order (standardised inside) and
    gives load_model's labels and probabilities (float32 in the graph: rtol 1e-5, atol 1e-6,
    see tests/test_export.py); no --onnx is a usage error (exit 2), an unwritable one a failure
    (exit 1), each one line."""
    import onnxruntime

    out, nowhere = trained.tmp / "model.onnx", trained.tmp / "no_such_dir" / "m.onnx"
    ck = ("export", "--checkpoint", trained.checkpoint)
    done, no_flag, unwritable = _run_together((*ck, "--onnx", out), ck, (*ck, "--onnx", nowhere))
    assert done[0] == 0 and not done[2], done[2]
    assert json.loads(done[1]) == {"checkpoint": str(trained.checkpoint), "onnx": str(out),
                                   "task": "multiclass", "inputs": 3,
                                   "outputs": ["label", "probabilities"]}
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    X = trained.test.X.astype(np.float32)  # raw rows, as in the file
    label, proba = session.run(["label", "probabilities"], {"X": X})
    model = jaxbp.load_model(trained.checkpoint)
    np.testing.assert_array_equal(label, model.predict(X))
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=1e-5, atol=1e-6)
    assert no_flag[0] == 2 and no_flag[2] == (
        "jaxbp export: error: --onnx: expected the path of the .onnx file to write\n")
    assert unwritable[0] == 1 and unwritable[2].startswith(
        f"jaxbp export: error: --onnx: cannot write {nowhere}: ") and not nowhere.exists()

def test_predict_into_a_pipe_closed_early_ends_quietly(trained):
    """`jaxbp predict ... | head -1`: the reader leaves after one line; predict stops as `cat`
    does, exit status 141 (128 + SIGPIPE), nothing on stderr. 30 000 rows: more output than a
    pipe holds, so a write meets the closed pipe."""
    rows = np.tile(trained.X, (200, 1))
    many = _write(trained.tmp / "many.npy.csv", None, [[f"{v:.3f}" for v in x] for x in rows])
    proc = _start("predict", "--checkpoint", str(trained.checkpoint), "--input", str(many))
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader is gone
    with proc.stderr:
        err = proc.stderr.read()
    assert proc.wait(timeout=300) == 141 and err == "", err
    assert first.strip() in CLASSES

def test_csv_rows_with_and_without_a_header(tmp_path):
    path = _write(tmp_path / "rows.csv", ["x", "t", "y"], [[1, "no", 2], [3, "", 4]])
    X, names = datasets.load_csv_rows(path, target="t")  # the target passed over, empty or not
    assert names == ["x", "y"] and X.tolist() == [[1, 2], [3, 4]]
    X, names = datasets.load_csv_rows(_write(tmp_path / "plain.csv", None, [[1, 2], [3, 4]]))
    assert names is None and X.tolist() == [[1, 2], [3, 4]]
    bad = _write(tmp_path / "bad.csv", None, [[1, 2], [3, "x"]])
    with pytest.raises(ValueError, match=r"bad.csv: line 2, column '2': expected a number, got "
                                         r"'x'"):
        datasets.load_csv_rows(bad)


def _saved(path, net, extra=None):
    params = jaxbp.init(net, jax.random.key(0))
    jaxbp.save_checkpoint(path, net=net, params=params, extra=extra)
    return params


def test_older_and_bare_checkpoints_load(tmp_path):
    net = jaxbp.MLP((2, 4, 2), hidden="tanh", output="softmax")
    # as jaxbp train wrote them before feature names: columns by position
    older = {"task": "binary", "classes": ["no", "yes"], "mean": [1.0, -1.0],
             "scale": [2.0, 0.5], "dataset": "csv:x.csv", "target": "t", "seed": 0,
             "test_fraction": 0.2}
    params = _saved(tmp_path / "older.npz", net, older)
    model = jaxbp.load_model(tmp_path / "older.npz")
    X = np.array([[1.0, 2.0], [-3.0, 0.5], [0.0, 0.0]])
    A = np.asarray(jaxbp.predict(net, params, (X - [1.0, -1.0]) / [2.0, 0.5]))
    assert model.feature_names_in_ is None
    assert model.predict(X).tolist() == np.array(["no", "yes"])[A.argmax(axis=1)].tolist()
    np.testing.assert_array_equal(model.predict_proba(X), A)
    # saved by jaxbp.save_checkpoint without a run record: rows as they are, classes 0..k-1
    params = _saved(tmp_path / "bare.npz", net)
    model = jaxbp.load_model(tmp_path / "bare.npz")
    assert model.task == "binary" and model.standardizer is None
    A = np.asarray(jaxbp.predict(net, params, X))
    assert model.predict(X).tolist() == A.argmax(axis=1).tolist()


def test_a_regression_predicts_values(tmp_path):
    net = jaxbp.MLP((2, 3, 1), output="identity")
    params = _saved(tmp_path / "r.npz", net, {"task": "regression", "classes": None,
                                              "mean": [0.0, 0.0], "scale": [1.0, 1.0]})
    model = jaxbp.load_model(tmp_path / "r.npz")
    X = np.ones((4, 2))
    np.testing.assert_array_equal(model.predict(X), np.asarray(jaxbp.predict(net, params, X))[:, 0])
    assert model.classes_ is None
    with pytest.raises(MismatchError, match=r"^predict_proba: the model is a regression"):
        model.predict_proba(X)


def test_a_regression_maps_its_outputs_back_to_the_targets_units(tmp_path):
    """With the training targets' standardiser recorded, predict = output · scale + mean."""
    net = jaxbp.MLP((2, 3, 1), output="identity")
    params = _saved(tmp_path / "r.npz", net, {"task": "regression", "classes": None,
                                              "target_mean": [2.5e5], "target_scale": [4.0e4]})
    X = np.arange(8.0).reshape(4, 2)
    outputs = np.asarray(jaxbp.predict(net, params, X), np.float64)[:, 0]
    np.testing.assert_array_equal(jaxbp.load_model(tmp_path / "r.npz").predict(X),
                                  outputs * 4.0e4 + 2.5e5)


def test_a_regression_on_a_target_in_the_hundreds_of_thousands_trains(tmp_path):
    """The CLI learns a regression's target standardised: prices ~ 2·10^5 ± 5·10^4, linear in
    the features, reach R² > 0.9 in 60 epochs (unstandardised, the same run ends below 0), and
    the model's predictions come back in the target's units."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 2))
    price = np.round(2e5 + 5e4 * (X @ [0.8, -0.6]) + 2e3 * rng.normal(size=200))
    dataset = _csv(tmp_path / "houses.csv", [f"{p:.0f}" for p in price], name="price", X=X)
    run = jaxbp_cli("train", "--dataset", dataset, "--target", "price", "--hidden", "8",
                    "--epochs", "60", "--lr", "0.01", "--noearly_stopping", "--quiet",
                    "--plot", "", "--checkpoint_dir", str(tmp_path / "run"))
    assert run.returncode == 0, run.stderr
    r2 = float(re.search(r"test R²: (\S+)", run.stdout).group(1))
    assert r2 > 0.9, run.stdout
    predicted = jaxbp.load_model(tmp_path / "run" / "checkpoint.npz").predict(X)
    assert np.median(np.abs(predicted - price)) < 0.2 * price.std()


@pytest.mark.parametrize(("extra", "message"), [
    ({"classes": ["a", "b", "c"]}, "'classes': expected 2 distinct labels"),
    ({"feature_names": ["x"]}, "'feature_names': expected 2 distinct column names"),
    ({"mean": [0.0], "scale": [1.0]}, "'mean': expected 2 numbers"),
    ({"task": "ranking"}, "'task': expected one of"),
    ({"task": "regression", "target_mean": [0.0, 1.0], "target_scale": [1.0, 1.0]},
     "'target_mean': expected 1 numbers for a regression's 1 outputs"),
    ({"target_mean": [0.0], "target_scale": [1.0]}, "'target_mean': expected 1 numbers"),
])
def test_a_run_record_that_does_not_fit_the_network_is_named(tmp_path, extra, message):
    _saved(tmp_path / "x.npz", jaxbp.MLP((2, 3, 1)), extra)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'x.npz'}: run record {message}")):
        jaxbp.load_model(tmp_path / "x.npz")
