"""`jaxbp search`: its grid syntax, and a search run as a user runs it, each fold's score
checked against `jaxbp.fit` alone on that fold (the oracle), its best candidate refitted as
`jaxbp train` would and saved as a checkpoint `jaxbp evaluate` reads."""

import csv
import json
import re

import numpy as np
import pytest
from test_cli import jaxbp_cli

import jaxbp
from jaxbp import cli_search, data


def parse(text):
    from jaxbp import cli

    return cli_search.parse_grid(text, cli._grid_value)


def test_the_grid_is_parsed_by_each_flags_own_parser():
    grid = parse(" alpha=1e-4, 1e-2 ; hidden=64,128x32 ;activation=tanh;batch_size=32")
    assert grid == {"alpha": [1e-4, 1e-2], "hidden": [[64], [128, 32]],
                    "activation": ["tanh"], "batch_size": [32]}
    assert cli_search.candidates({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]


@pytest.mark.parametrize(("text", "match"), [
    ("", r"^expected at least one name=value"),
    ("alpha", r"^expected name=value,value,... separated by ';', got 'alpha'"),
    ("seed=1,2", r"^'seed' is not a flag a grid may vary; one of lr, alpha"),
    ("lr=1e-3;lr=1e-2", r"^'lr' given twice"),
    ("lr=fast", r"^lr: "),
    ("alpha=-1", r"^alpha: "),  # the flag's lower bound
    ("activation=sine", r"^activation: "),
    ("hidden=64x0", r"^hidden: expected layer widths"),
    ("lr=1e-3,0.001", r"^lr: a value given twice"),
])
def test_a_bad_grid_is_named(text, match):
    with pytest.raises(cli_search.GridError, match=match):
        parse(text)


def test_a_bad_search_command_line_is_a_usage_error(tmp_path):
    for args, message in [
        ((), "jaxbp search: error: --grid: expected at least one name=value"),
        (("--grid", "momentum=0.5", "--cv", "1"), "flag --cv=1: 1 is not integer >= 2"),
        (("--grid", "lr=1e-3", "--resume"), "--resume: a flag of jaxbp train, not of jaxbp "
                                            "search"),
        (("--grid", "lr=1e-3", "--dataset", "xor", "--cv", "500"), "--cv: "),
    ]:
        out = jaxbp_cli("search", *args, cwd=tmp_path)
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)


def fold_scores_alone(candidate, cv, seed, epochs, hidden):
    """Each fold's held-out accuracy of `fit` alone, set up as `jaxbp train` sets up its run
    (the same test split, the fold's own standardiser, validation fraction, early stopping)."""
    from sklearn.model_selection import StratifiedKFold

    ds = jaxbp.datasets.load("breast_cancer")
    train, _ = data.train_test_split(ds, 0.2, seed=seed)
    scores = []
    for tr, va in StratifiedKFold(cv, shuffle=True, random_state=seed).split(train.X, train.y):
        scaler = data.Standardizer().fit(train.X[tr])
        net = jaxbp.MLP((30, *hidden, 1), hidden="relu", output="sigmoid")
        res = jaxbp.fit(net, scaler.transform(train.X[tr]), train.y[tr], key=seed,
                        opt=jaxbp.optim.adam(candidate["lr"]), alpha=candidate["alpha"],
                        epochs=epochs, validation_fraction=0.1, early_stopping=True,
                        patience=10, progress=False)
        ev = jaxbp.evaluate(net, res.params, scaler.transform(train.X[va]), train.y[va])
        scores.append(ev["score"])
    return scores


def test_a_search_scores_each_fold_as_fit_alone_and_refits_the_best(tmp_path):
    """4 candidates (two networks: two populations) x 3 folds on breast_cancer in float64:
    the CSV's fold scores equal `fit` alone's on each fold (float64: a population's member
    equals `fit` to rtol 1e-12, so the same predictions and accuracy), ranked by their mean;
    the refitted best model is a checkpoint whose test accuracy `jaxbp evaluate` reports as
    the search did."""
    out = jaxbp_cli("search", "--dataset", "breast_cancer", "--epochs", "15", "--cv", "3",
                    "--grid", "alpha=1e-4,1e-1;hidden=8,4x3;lr=3e-3", "--dtype", "float64",
                    "--quiet", "--search_dir", "s", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "4 candidates x 3 folds = 12 fits" in out.stdout
    with open(tmp_path / "s" / "search.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4]
    means = [float(r["mean_score"]) for r in rows]
    assert means == sorted(means, reverse=True)
    for r in rows:
        want = fold_scores_alone({"alpha": float(r["alpha"]), "lr": float(r["lr"])}, 3, 0,
                                 15, tuple(map(int, r["hidden"].split("x"))))
        got = [float(r[f"fold{i}_score"]) for i in range(3)]
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=str(r))
        np.testing.assert_allclose(float(r["mean_score"]), np.mean(want), rtol=1e-12)
    meta = json.loads((tmp_path / "s" / "search.json").read_text())
    assert meta["cv"] == 3 and meta["grid"].startswith("alpha") and len(meta["results"]) == 4
    assert (tmp_path / "s" / "search.png").stat().st_size > 10_000
    best = rows[0]
    hidden = best["hidden"].replace("x", ",")
    assert f"with --alpha {best['alpha']} --hidden {hidden} --lr 0.003\n" in out.stdout
    printed = re.search(r"test accuracy: ([\d.]+)%", out.stdout).group(1)
    ev = jaxbp_cli("evaluate", "--checkpoint", str(tmp_path / "s" / "checkpoint.npz"))
    assert ev.returncode == 0, ev.stderr
    assert f"{100 * json.loads(ev.stdout)['accuracy']:.2f}" == printed


def test_a_candidate_with_a_diverged_fold_ranks_last():
    rows = cli_search.ranked([{"lr": 1.0}, {"lr": 0.1}, {"lr": 0.01}],
                             [[0.9, np.nan, 0.95], [0.8, 0.8, 0.8], [0.85, 0.9, 0.8]],
                             [[5, 5, 5]] * 3)
    assert [r["params"]["lr"] for r in rows] == ["0.01", "0.1", "1"]
    assert [r["rank"] for r in rows] == [1, 2, 3] and np.isnan(rows[2]["mean_score"])
    np.testing.assert_allclose([r["mean_score"] for r in rows[:2]], [0.85, 0.8])
