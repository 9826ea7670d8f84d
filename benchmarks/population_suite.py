"""Suite "population": many models at once (`jaxbp.fit_population`), against one at a time.

Two measurements, each in one run with interleaved rounds:
- throughput against population size k: a 64-64-10 net on digits (1 797 rows, Adam, batches
  of 200), members·epochs per second for k = 1 ... 1024, and the matmul FLOP rate reached as
  a fraction of the machine's rate on a 2048³ float32 matmul;
- a 30-fit search (alpha ∈ {1e-4, 1e-2, 1e-1} × learning rate ∈ {1e-3, 3e-3}, 5 stratified
  folds, 64 hidden units, at most 100 epochs, stopping when the training loss stalls):
  scikit-learn's GridSearchCV over its MLPClassifier (n_jobs=2), the same GridSearchCV over
  jaxbp's MLPClassifier (fits one after another), `jaxbp.sklearn.GridSearchCV`, and the 30
  fits as one `fit_population` on one device and spread over all of them; each way's time
  over `jaxbp.sklearn.GridSearchCV`'s, per round (the issue's ratios), and the time the fits'
  matmuls alone would take at the 2048³ matmul's rate (a floor no search can beat).

On a CPU the suite runs in a child process that first calls `jaxbp.use_cpu_cores()` (a device
per core: how a population uses every core; JAX fixes its devices when it starts), so every
contender of the search runs there, in interleaved rounds; scikit-learn's n_jobs=2 workers are
processes of their own either way.
"""

import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxbp
from benchmarks import models as M
from benchmarks.harness import fmt_rate, fmt_time, markdown_table

GRID = {"alpha": [1e-4, 1e-2, 1e-1], "learning_rate_init": [1e-3, 3e-3]}
POPULATION = "jaxbp.fit_population, the 30 fits, every device"
SEARCH = "jaxbp.sklearn.GridSearchCV, jaxbp's MLPClassifier, populations"


def _digits():
    from jaxbp import data, datasets

    ds = datasets.load("digits")
    return data.Standardizer().fit(ds.X).transform(ds.X).astype(np.float32), ds.y


def matmul_rate(n=2048, calls=5):
    """FLOP/s of an n³ float32 matmul on this device (the best of `calls`)."""
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    best = min(_timed(lambda: f(a).block_until_ready()) for _ in range(calls))
    return 2 * n**3 / best


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def throughput(ks, epochs, rounds, devices):
    """{k: seconds per epoch (median of rounds)} for populations of k 64-64-10 members on
    `devices`: a whole `fit_population` call (initialisation, placement, per-epoch reads
    included) divided by its epochs, as a user's call costs."""
    X, y = _digits()
    net = jaxbp.MLP((64, 64, 10), hidden="relu", output="softmax")
    runs = {k: (lambda k=k: jaxbp.fit_population(net, X, y, keys=range(k), epochs=epochs,
                                                 progress=False, devices=devices))
            for k in ks}
    compile_s = {k: _timed(run) for k, run in runs.items()}  # first call: compiles
    samples = {k: [] for k in ks}
    for _ in range(rounds):
        for k, run in runs.items():
            samples[k].append(_timed(lambda run=run: jax.block_until_ready(run().params)))
    per_epoch = {k: float(np.median(v)) / epochs for k, v in samples.items()}
    return net, len(y), per_epoch, compile_s


def population(quick):
    """The suite, measured in a child process with a device per CPU core (on a GPU: here)."""
    if jax.default_backend() != "cpu":
        result = measure(quick)
    else:
        child = subprocess.run([sys.executable, "-m", "benchmarks.population_suite",
                                "quick" if quick else "full"], capture_output=True, text=True,
                               env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=3000,
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if child.returncode != 0:
            raise RuntimeError(f"population suite's child process failed:\n"
                               f"{child.stderr[-3000:]}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
    per_epoch = {name: {int(k): t for k, t in v.items()}
                 for name, v in result.pop("per_epoch").items()}
    return result | {"figures": {"population": _plot(per_epoch, result.pop("ceiling"))}}


def measure(quick):
    """The suite's records, Markdown, per-epoch times and FLOP ceiling, in this process."""
    ks = [1, 8, 64] if quick else [1, 4, 16, 64, 256, 1024]
    placements = {"one device": jax.local_devices()[:1]}
    if jax.local_device_count() > 1:
        placements[f"{jax.local_device_count()} devices"] = jax.local_devices()
    peak, records, rows, curves = matmul_rate(), [], [], {}
    for where, devices in placements.items():
        net, m, per_epoch, compile_s = throughput(ks, epochs=2 if quick else 5,
                                                  rounds=2 if quick else 5, devices=devices)
        flops = M.step_flops(net, m)  # one epoch of one member: every row once
        curves[where] = per_epoch
        for k, t in per_epoch.items():
            rate = k * flops / t
            records.append({"k": k, "devices": len(devices), "seconds_per_epoch": t,
                            "member_epochs_per_s": k / t, "matmul_flops_per_s": rate,
                            "fraction_of_2048_matmul": rate / peak,
                            "first_call_s": compile_s[k]})
            rows.append([k, where, fmt_time(t), fmt_rate(k / t), f"{rate / 1e9:.1f}",
                         f"{rate / peak:.1%}", fmt_time(compile_s[k])])
    md = markdown_table(["members k", "on", "per epoch (whole calls ÷ epochs: setup included)",
                         "member-epochs/s", "matmul GFLOP/s", "of a 2048³ matmul",
                         "first call"], rows)
    search = search_three_ways(quick, peak)
    records.append(search["record"])
    md += "\n\n" + search["markdown"]
    return {"records": records, "markdown": md, "per_epoch": curves, "ceiling": peak / flops}


def _plot(curves, ceiling):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for where, per_epoch in curves.items():
        ks = list(per_epoch)
        ax.loglog(ks, [k / per_epoch[k] for k in ks], "o-", label=f"fit_population, {where}")
    ax.axhline(ceiling, linestyle="--", color="gray", label="a 2048³ matmul's FLOP rate")
    ax.set(xlabel="population size k", ylabel="member-epochs / s",
           title="64-64-10 on digits (1 797 rows)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _searches(max_iter):
    """{name: a function running the 30-fit search, returning the mean CV accuracy of each of
    the 6 candidates}."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.neural_network import MLPClassifier as SkMLP
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from jaxbp import datasets
    from jaxbp.sklearn import GridSearchCV as JaxbpGridSearchCV
    from jaxbp.sklearn import MLPClassifier

    ds = datasets.load("digits")
    X, y = ds.X, ds.y
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    grid = {f"mlpclassifier__{k}": v for k, v in GRID.items()}

    def grid_search(estimator, n_jobs, search=GridSearchCV):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            found = search(make_pipeline(StandardScaler(), estimator), grid, cv=cv,
                           n_jobs=n_jobs).fit(X, y)
        return found.cv_results_["mean_test_score"]

    def one_population(devices):
        net, res, Xs, folds, n_cands = _population_fits(X, y, cv, max_iter, devices)
        acc = [np.mean(np.argmax(jaxbp.predict(net, res.params[i], Xs[te]), axis=1) == y[te])
               for i, (_, te) in enumerate(folds * n_cands)]
        return np.asarray(acc).reshape(n_cands, len(folds)).mean(axis=1)

    return {"scikit-learn GridSearchCV, its MLPClassifier, n_jobs=2":
            lambda: grid_search(SkMLP(hidden_layer_sizes=(64,), max_iter=max_iter,
                                      random_state=0), 2),
            "scikit-learn GridSearchCV, jaxbp's MLPClassifier, one fit at a time":
            lambda: grid_search(MLPClassifier(hidden_layer_sizes=(64,), max_iter=max_iter,
                                              random_state=0), 1),
            SEARCH: lambda: grid_search(MLPClassifier(hidden_layer_sizes=(64,), max_iter=max_iter,
                                              random_state=0), None, JaxbpGridSearchCV),
            "jaxbp.fit_population, the 30 fits, one device":
            lambda: one_population(jax.local_devices()[:1]),
            POPULATION: lambda: one_population(None)}


def _population_fits(X, y, cv, max_iter, devices=None):
    """The search's 30 fits as one `fit_population` (the scaler fitted once, on every row):
    (net, result, scaled X, folds, number of candidates); member i is candidate i // 5 on
    fold i % 5."""
    from sklearn.preprocessing import StandardScaler

    Xs = StandardScaler().fit_transform(X).astype(np.float32)
    folds = list(cv.split(X, y))
    cands = [(a, lr) for a in GRID["alpha"] for lr in GRID["learning_rate_init"]]
    net = jaxbp.MLP((64, 64, 10), hidden="relu", output="softmax")
    res = jaxbp.fit_population(
        net, Xs, y, keys=[0] * 30, lr=[lr for _, lr in cands for _ in folds],
        alpha=[a for a, _ in cands for _ in folds], rows=[tr for _ in cands for tr, _ in folds],
        epochs=max_iter, early_stopping=True, patience=10, min_delta=1e-4, progress=False,
        devices=devices)
    return net, res, Xs, folds, len(cands)


def fits_flops(max_iter):
    """The matmul FLOPs of the search's 30 fits as they train: each fit's epochs × its
    training rows, once each (no padding of the last batch), at `step_flops` per row."""
    from sklearn.model_selection import StratifiedKFold

    from jaxbp import datasets

    ds = datasets.load("digits")
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    net, res, _, folds, n_cands = _population_fits(ds.X, ds.y, cv, max_iter)
    return sum(res.member(i).epochs_run * M.step_flops(net, len(train))
               for i, (train, _) in enumerate(folds * n_cands))


def search_three_ways(quick, peak):
    """The 30-fit search timed each way: a first call (the jaxbp ones compile), then
    interleaved rounds; per round, each way's time over `jaxbp.sklearn.GridSearchCV`'s (the
    issue's ratios); and the fits' matmul FLOPs at the `peak` FLOP rate (a floor)."""
    max_iter = 10 if quick else 100
    searches = _searches(max_iter)
    first = {name: _timed(run) for name, run in searches.items()}
    samples, scores = {name: [] for name in searches}, {}
    for _ in range(1 if quick else 3):
        for name, run in searches.items():
            t0 = time.perf_counter()
            scores[name] = run()
            samples[name].append(time.perf_counter() - t0)
    rows, record = [], {"search": {}, "devices": jax.local_device_count()}
    for name, s in samples.items():
        ratio = np.asarray(s) / np.asarray(samples[SEARCH])
        q1, med, q3 = np.percentile(ratio, [25, 50, 75])
        record["search"][name] = {"samples_s": s, "first_call_s": first[name],
                                  "ratio_to_search": [q1, med, q3],
                                  "mean_cv_accuracy": [float(v) for v in scores[name]]}
        rows.append([name, fmt_time(float(np.median(s))), fmt_time(first[name]),
                     f"{med:.2f}× ({q1:.2f}–{q3:.2f})", f"{np.max(scores[name]):.3f}"])
    flops = fits_flops(max_iter)
    record["fits_matmul_flops"], record["matmul_peak_flops_per_s"] = flops, peak
    floor = (f"The 30 fits' matmuls as trained ({flops / 1e9:.1f} GFLOP: each fit's epochs × "
             f"its rows) take {fmt_time(flops / peak)} at this device's 2048³ float32 matmul "
             f"rate ({peak / 1e9:.0f} GFLOP/s); the population over every device ran at "
             f"{flops / np.median(samples[POPULATION]) / peak:.0%} of that rate.")
    return {"record": record,
            "markdown": markdown_table(["search (30 fits)", "time", "first call",
                                        "÷ jaxbp.sklearn.GridSearchCV's", "best mean CV accuracy"],
                                       rows) + "\n\n" + floor}


if __name__ == "__main__":  # the child process of `population`: a device per CPU core
    jaxbp.use_cpu_cores()
    print(json.dumps(measure(sys.argv[1] == "quick")))
