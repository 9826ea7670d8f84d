"""`jaxbp train --task auto|classification|regression` on CSV files a user might bring, run as a
user runs it (`python -m jaxbp` in a subprocess): whole-number targets that are a regression's
values (prices), whole numbers that are class ids, classes too small to split, string labels."""

import json

import numpy as np
from test_cli import jaxbp_cli

FAST = ("--hidden", "4", "--quiet", "--plot", "")


def _csv(path, y, name="y", X=None):
    """Write a CSV of the feature columns a, b, ... holding X (default: two random features)
    and the target column `name` holding `y` as text; returns its --dataset."""
    X = np.random.default_rng(0).normal(size=(len(y), 2)) if X is None else np.asarray(X)
    columns = [chr(ord("a") + j) for j in range(X.shape[1])]
    path.write_text(",".join([*columns, name]) + "\n" + "".join(
        ",".join([*(f"{v:.4f}" for v in x), str(t)]) + "\n" for x, t in zip(X, y, strict=True)))
    return f"csv:{path}"


def _train(dataset, target, *args):
    return jaxbp_cli("train", "--dataset", dataset, "--target", target, *FAST, *args)


def test_many_whole_numbers_are_a_regression_and_evaluate_agrees(tmp_path):
    # 41 prices, 5 rows each, written as a float column of whole numbers ("150.0", as the
    # diabetes targets are): as classes, 41 of them; as a regression, one output.
    prices = [f"{100 + 10 * (i % 41)}.0" for i in range(205)]
    data = _csv(tmp_path / "prices.csv", prices, name="price")
    out = _train(data, "price", "--epochs", "2", "--checkpoint_dir", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == ("note: --task auto: the target holds whole numbers with 41 distinct "
                        "values in 205 rows (more than max(20, rows/100) = 20): training a "
                        "regression (--task classification trains 41 classes)")
    assert "task regression" in lines[1] and "network (2, 4, 1)" in lines[2]
    assert lines[-1].startswith("test R²: ")
    # evaluate re-reads the CSV and takes it as the checkpoint says: a regression
    ev = jaxbp_cli("evaluate", "--checkpoint", str(tmp_path / "run" / "checkpoint.npz"))
    assert ev.returncode == 0, ev.stderr
    assert f"{json.loads(ev.stdout)['R²']:.4f}" == lines[-1].split()[-1]


def test_few_whole_numbers_are_classes(tmp_path):
    data = _csv(tmp_path / "grades.csv", [1 + i % 3 for i in range(60)], name="grade")
    out = _train(data, "grade", "--epochs", "1")
    assert out.returncode == 0, out.stderr
    assert "note:" not in out.stdout
    assert "task multiclass" in out.stdout and "network (2, 4, 3)" in out.stdout
    assert out.stdout.splitlines()[-1].startswith("test accuracy: ")


def test_a_number_held_by_one_row_is_no_class(tmp_path):
    data = _csv(tmp_path / "counts.csv", [i % 5 for i in range(50)] + [7], name="count")
    auto = _train(data, "count", "--epochs", "1")
    assert auto.returncode == 0, auto.stderr
    assert auto.stdout.startswith("note: --task auto: the target holds whole numbers with a "
                                  "value held by a single row: training a regression")
    assert auto.stdout.splitlines()[-1].startswith("test R²: ")
    classes = _train(data, "count", "--task", "classification")
    assert classes.returncode == 2 and "Traceback" not in classes.stderr
    assert classes.stderr == (
        "jaxbp train: error: --task classification: class 7 has 1 row; a stratified test "
        "split needs at least 2 rows of each class (--task regression trains on the values)\n")


def test_string_labels_are_never_a_regression(tmp_path):
    data = _csv(tmp_path / "pets.csv", ["cat", "dog"] * 20 + ["eel"], name="pet")
    auto = _train(data, "pet")
    assert auto.returncode == 2 and "Traceback" not in auto.stderr
    assert auto.stderr == (
        "jaxbp train: error: --task auto: class 'eel' has 1 row; a stratified test split needs "
        "at least 2 rows of each class (drop that row or merge its class with another)\n")
    values = _train(data, "pet", "--task", "regression")
    assert values.returncode == 2 and "Traceback" not in values.stderr
    assert values.stderr == (
        f"jaxbp train: error: --task regression: expected a numeric target, got labels "
        f"['cat', 'dog', 'eel'] ({data}); labels train as classes (--task auto)\n")
