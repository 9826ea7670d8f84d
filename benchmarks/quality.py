"""Test accuracy with settings chosen on a validation split, against scikit-learn's MLP.

For each dataset: a stratified test split (20%) is set aside first and used once, at the end.
The rest is split again into training and validation (20% of it, stratified). Every setting
of a small grid is trained on the training part and scored on the validation part; the best
validation accuracy (ties: lower validation cost) picks the setting. That setting is then
trained on the training part and evaluated on the test split, next to scikit-learn's
MLPClassifier with the same architecture, epochs and batch size, on the same rows. Wall
times of the two fits are measured in the same run (jaxbp's includes its compilation).

    python benchmarks/quality.py [--datasets breast_cancer,digits] [--out DIR]
"""

import itertools
import json
import pathlib
import sys
import time
import warnings

from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jaxbp  # noqa: E402
from benchmarks import harness  # noqa: E402
from jaxbp import data as datasets  # noqa: E402

_DATASETS = flags.DEFINE_list("datasets", ["breast_cancer", "digits"], "Datasets to run.")
_OUT = flags.DEFINE_string("out", str(ROOT / "benchmarks" / "results"), "Results directory.")

GRID = {
    "hidden": [(100,), (256,), (128, 64)],
    "lr": [1e-3, 3e-3],
    "alpha": [1e-4, 1e-2],
}
EPOCHS, BATCH = 200, 64


def _net(hidden, ds):
    n_classes = len(ds.classes)
    output, n_L = ("sigmoid", 1) if n_classes == 2 else ("softmax", n_classes)
    return jaxbp.MLP((ds.X.shape[1], *hidden, n_L), hidden="relu", output=output)


def _fit(ds_train, y_train, setting, validation=None, seed=0):
    net = _net(setting["hidden"], ds_train)
    t0 = time.perf_counter()
    result = jaxbp.fit(net, ds_train.X, y_train, opt=jaxbp.optim.adam(setting["lr"]),
                       epochs=EPOCHS, batch_size=BATCH, alpha=setting["alpha"], key=seed,
                       validation_data=validation, early_stopping=validation is not None,
                       patience=20, progress=False)
    return net, result, time.perf_counter() - t0


def run_dataset(name, seed=0):
    ds = datasets.load(name)
    rest, test = datasets.train_test_split(ds, 0.2, seed=seed)
    train, val = datasets.train_test_split(rest, 0.2, seed=seed + 1)
    scaler = datasets.Standardizer().fit(train.X)  # training rows only
    train, val, test = (d._replace(X=scaler.transform(d.X)) for d in (train, val, test))
    enc = lambda d: d.y  # noqa: E731  (class ids 0..k-1 already)

    trials = []
    for hidden, lr, alpha in itertools.product(*GRID.values()):
        setting = {"hidden": hidden, "lr": lr, "alpha": alpha}
        net, res, _ = _fit(train, enc(train), setting, validation=(val.X, enc(val)), seed=seed)
        ev = jaxbp.evaluate(net, res.params, val.X, enc(val))
        trials.append({**setting, "val_accuracy": ev["score"], "val_cost": ev["cost"],
                       "epochs": res.epochs_run})
    best = max(trials, key=lambda t: (t["val_accuracy"], -t["val_cost"]))
    setting = {k: best[k] for k in GRID}
    epochs = best["epochs"]  # the early-stopped length found on validation

    # Final: jaxbp and scikit-learn, same rows, architecture, epochs, batch size, optimizer.
    net = _net(setting["hidden"], train)
    t0 = time.perf_counter()
    res = jaxbp.fit(net, train.X, enc(train), opt=jaxbp.optim.adam(setting["lr"]),
                    epochs=epochs, batch_size=BATCH, alpha=setting["alpha"], key=seed,
                    progress=False)
    jaxbp_s = time.perf_counter() - t0
    test_acc = jaxbp.evaluate(net, res.params, test.X, enc(test))["score"]

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=setting["hidden"], alpha=setting["alpha"],
                        learning_rate_init=setting["lr"], batch_size=BATCH, max_iter=epochs,
                        tol=0.0, n_iter_no_change=10**9, random_state=seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(train.X, train.y)
    sklearn_s = time.perf_counter() - t0
    return {"dataset": name, "rows": {"train": len(train.y), "val": len(val.y),
                                      "test": len(test.y)},
            "grid": {k: [list(v) if isinstance(v, tuple) else v for v in vs]
                     for k, vs in GRID.items()},
            "trials": [{**t, "hidden": list(t["hidden"])} for t in trials],
            "chosen": {**setting, "hidden": list(setting["hidden"]), "epochs": epochs},
            "jaxbp_test_accuracy": test_acc, "sklearn_test_accuracy": clf.score(test.X, test.y),
            "jaxbp_fit_s": jaxbp_s, "sklearn_fit_s": sklearn_s,
            "sklearn_epochs": int(clf.n_iter_)}


def main(argv):
    del argv
    env = harness.environment()
    results = []
    for name in _DATASETS.value:
        r = run_dataset(name)
        results.append(r)
        print(f"{name}: chosen {r['chosen']} -> test accuracy jaxbp "
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
