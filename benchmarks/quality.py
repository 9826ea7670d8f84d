"""Test accuracy with settings chosen on a validation split, against scikit-learn's MLP.

For each dataset: a stratified test split (20%) is set aside first and used once, at the end.
On the rest, every setting of a small grid is scored by stratified 5-fold cross-validation
(each fold trains with early stopping on its held-out fold); the best mean validation accuracy
(ties: lower mean validation cost) picks the setting, and the median best epoch of its folds
the number of epochs. That setting is then trained on all the rest and evaluated on the test
split, next to scikit-learn's MLPClassifier with the same architecture, activation, alpha,
learning rate, epochs and batch size on the same rows (scikit-learn has no dropout: where the
setting drops out, it trains without). Both train from 5 seeds and report the mean test
accuracy: on test splits of 114 and 360 rows a single seed moves the figure by a row or two
either way. Wall times are the median of those final fits, in the same run (jaxbp's compiled
shapes are warm from the search; the benchmark suite `fit` times fits more carefully).

The grids: breast_cancer's and digits' were fixed beforehand (digits' gained dropout 0/0.2
after a first run); mnist1d's was narrowed from a wider exploration scored on validation
folds of the training rows only (two layers of 100 without dropout: ~62% validation;
three layers of 512 with dropout 0.5 and alpha 0.1: ~75%).

    python benchmarks/quality.py [--datasets breast_cancer,digits] [--out DIR]
"""

import itertools
import json
import pathlib
import sys
import time
import warnings

import numpy as np
from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jaxbp  # noqa: E402
from benchmarks import harness  # noqa: E402
from jaxbp import data, datasets  # noqa: E402

_DATASETS = flags.DEFINE_list("datasets", ["breast_cancer", "digits", "mnist1d"],
                              "Datasets to run (mnist1d needs the mnist1d extra).")
_OUT = flags.DEFINE_string("out", str(ROOT / "benchmarks" / "results"), "Results directory.")

# Per dataset: the grid searched, the most epochs a fit may run (early stopping on the held-out
# fold picks fewer), the batch size. Dropout is jaxbp's (scikit-learn has none: its MLP trains
# the same architecture without it). mnist1d's grid is wider, deeper and dropped out: with two
# layers of 100 and no dropout an MLP overfits its 3 200 training rows within a few epochs.
BASE_GRID = {
    "hidden": [(100,), (256,), (128, 64)],
    "activation": ["relu", "tanh"],
    "lr": [1e-3, 3e-3],
    "alpha": [1e-4, 1e-2, 1e-1],
    "dropout": [0.0],
}
SEARCH = {
    "breast_cancer": (BASE_GRID, 200, 64),
    "digits": ({**BASE_GRID, "dropout": [0.0, 0.2]}, 200, 64),
    "mnist1d": ({"hidden": [(256, 256, 256), (512, 512, 512)], "activation": ["relu"],
                 "lr": [1e-3], "alpha": [1e-1], "dropout": [0.3, 0.5]}, 400, 100),
}
FOLDS = 5
SEEDS = 5  # final fits: the mean test accuracy of this many training seeds, for both


def _net(setting, ds):
    n_classes = len(ds.classes)
    output, n_L = ("sigmoid", 1) if n_classes == 2 else ("softmax", n_classes)
    return jaxbp.MLP((ds.X.shape[1], *setting["hidden"], n_L), hidden=setting["activation"],
                     output=output)


def _folds(y, k, seed):
    """Stratified k-fold: the rows of each class dealt round-robin after a seeded shuffle."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), int)
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        fold[rows] = (np.arange(len(rows)) + rng.integers(k)) % k
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


def _fit(ds_train, y_train, setting, epochs, batch, validation=None, seed=0):
    net = _net(setting, ds_train)
    t0 = time.perf_counter()
    result = jaxbp.fit(net, ds_train.X, y_train, opt=jaxbp.optim.adam(setting["lr"]),
                       epochs=epochs, batch_size=batch, alpha=setting["alpha"],
                       dropout=setting["dropout"], key=seed, validation_data=validation,
                       early_stopping=validation is not None, patience=20, progress=False)
    return net, result, time.perf_counter() - t0


def run_dataset(name, seed=0):
    ds = datasets.load(name)
    rest, test = data.train_test_split(ds, 0.2, seed=seed)
    grid, max_epochs, batch = SEARCH[name]

    trials = []
    for values in itertools.product(*grid.values()):
        setting = dict(zip(grid, values, strict=True))
        accs, costs, epochs = [], [], []
        for train_idx, val_idx in _folds(rest.y, FOLDS, seed):
            train, val = data.subset(rest, train_idx), data.subset(rest, val_idx)
            scaler = data.Standardizer().fit(train.X)  # the fold's training rows only
            Xt, Xv = scaler.transform(train.X), scaler.transform(val.X)
            net, res, _ = _fit(train._replace(X=Xt), train.y, setting, max_epochs, batch,
                               validation=(Xv, val.y), seed=seed)
            ev = jaxbp.evaluate(net, res.params, Xv, val.y)
            accs.append(ev["score"])
            costs.append(ev["cost"])
            epochs.append((res.best_epoch or 0) + 1)
        trials.append({**setting, "cv_accuracy": float(np.mean(accs)),
                       "cv_cost": float(np.mean(costs)), "epochs": int(np.median(epochs))})
    best = max(trials, key=lambda t: (t["cv_accuracy"], -t["cv_cost"]))
    setting = {k: best[k] for k in grid}
    epochs = best["epochs"]

    # Final: jaxbp and scikit-learn, same rows, architecture, epochs, batch size, optimizer.
    scaler = data.Standardizer().fit(rest.X)
    train, test = rest._replace(X=scaler.transform(rest.X)), test._replace(
        X=scaler.transform(test.X))
    net = _net(setting, train)
    kw = dict(opt=jaxbp.optim.adam(setting["lr"]), batch_size=batch, alpha=setting["alpha"],
              dropout=setting["dropout"], progress=False)
    jaxbp.fit(net, train.X, train.y, epochs=1, key=seed, **kw)  # compile

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    jaxbp_acc, sklearn_acc, jaxbp_s, sklearn_s, sklearn_epochs = [], [], [], [], []
    for s in range(seed, seed + SEEDS):  # the same seeds for both; each its own init and order
        t0 = time.perf_counter()
        res = jaxbp.fit(net, train.X, train.y, epochs=epochs, key=s, **kw)
        jaxbp_s.append(time.perf_counter() - t0)
        jaxbp_acc.append(jaxbp.evaluate(net, res.params, test.X, test.y)["score"])
        clf = MLPClassifier(hidden_layer_sizes=setting["hidden"], alpha=setting["alpha"],
                            activation=setting["activation"], learning_rate_init=setting["lr"],
                            batch_size=batch, max_iter=epochs, tol=0.0,
                            n_iter_no_change=10**9, random_state=s)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(train.X, train.y)
        sklearn_s.append(time.perf_counter() - t0)
        sklearn_acc.append(clf.score(test.X, test.y))
        sklearn_epochs.append(int(clf.n_iter_))
    return {"dataset": name, "rows": {"train": len(train.y), "test": len(test.y)},
            "protocol": f"{FOLDS}-fold stratified CV on the training rows; test used once per "
                        f"seed, mean of {SEEDS} seeds",
            "grid": {k: [list(v) if isinstance(v, tuple) else v for v in vs]
                     for k, vs in grid.items()},
            "trials": [{**t, "hidden": list(t["hidden"])} for t in trials],
            "chosen": {**setting, "hidden": list(setting["hidden"]), "epochs": epochs},
            "jaxbp_test_accuracy": float(np.mean(jaxbp_acc)),
            "sklearn_test_accuracy": float(np.mean(sklearn_acc)),
            "jaxbp_test_accuracies": [float(a) for a in jaxbp_acc],
            "sklearn_test_accuracies": [float(a) for a in sklearn_acc],
            "jaxbp_fit_s": float(np.median(jaxbp_s)), "sklearn_fit_s": float(np.median(sklearn_s)),
            "sklearn_epochs": sklearn_epochs}


def main(argv):
    del argv
    env = harness.environment()
    results = []
    for name in _DATASETS.value:
        r = run_dataset(name)
        results.append(r)
        print(f"{name}: chosen {r['chosen']} -> mean test accuracy jaxbp "
              f"{100 * r['jaxbp_test_accuracy']:.2f}% vs scikit-learn "
              f"{100 * r['sklearn_test_accuracy']:.2f}%; fit {r['jaxbp_fit_s']:.2f} s vs "
              f"{r['sklearn_fit_s']:.2f} s ({r['sklearn_fit_s'] / r['jaxbp_fit_s']:.1f}× faster)",
              flush=True)
    out = pathlib.Path(_OUT.value) / harness.device_slug(env)
    stamp = env["date"].replace(":", "").replace("-", "")
    harness.write_json(out / f"quality-{stamp}.json", {"env": env, "results": results})
    print(json.dumps({"wrote": str(out / f"quality-{stamp}.json")}))


if __name__ == "__main__":
    app.run(main)
