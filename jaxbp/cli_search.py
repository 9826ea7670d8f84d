"""`jaxbp search`: a grid of `jaxbp train` settings, cross-validated on the training rows, every
(candidate, fold) fit trained as a member of a population (`jaxbp.fit_population`).

    jaxbp search --dataset digits --hidden 64 --grid 'alpha=1e-4,1e-2;lr=1e-3,3e-3' --cv 5

Each member is the fit `jaxbp train` would run with the candidate's flags on the fold's
training rows (standardised with the fold's own statistics, its validation fraction held out
for early stopping), scored on the fold's held-out rows: accuracy, or R² for a regression. The
test rows are never used for a choice. This module ranks and writes the results
(`write_results`, `plot_scores`); cli.py refits the best candidate as `jaxbp train` and saves
its checkpoint.
"""

import csv
import itertools
import json
import pathlib

import numpy as np

# The train flags a grid may vary. The first five vary from member to member of one
# population; a candidate differing in the others trains in a population of its own.
PER_MEMBER = ("lr", "alpha", "dropout", "schedule", "batch_size")
GRID_FLAGS = (*PER_MEMBER, "hidden", "activation", "optimizer", "momentum", "beta1", "beta2",
              "weight_decay", "epochs", "patience")


class GridError(ValueError):
    """--grid is wrong; the message says how."""


def parse_grid(text, parse_value):
    """{flag: [values]} of --grid 'name=v1,v2;name=v3': `parse_value(name, text)` parses one
    value as the flag's own parser does (hidden widths joined by 'x': 64x32)."""
    grid = {}
    for part in filter(str.strip, (text or "").split(";")):
        name, sep, values = part.partition("=")
        name = name.strip()
        if not sep or not values.strip():
            raise GridError(f"expected name=value,value,... separated by ';', got {part!r}")
        if name not in GRID_FLAGS:
            raise GridError(f"{name!r} is not a flag a grid may vary; one of "
                            f"{', '.join(GRID_FLAGS)}")
        if name in grid:
            raise GridError(f"{name!r} given twice")
        try:
            grid[name] = [parse_value(name, v.strip()) for v in values.split(",")]
        except ValueError as e:
            raise GridError(f"{name}: {e}") from None
        if len(set(map(repr, grid[name]))) < len(grid[name]):
            raise GridError(f"{name}: a value given twice, in {values.strip()!r}")
    if not grid:
        raise GridError("expected at least one name=value,... (e.g. 'alpha=1e-4,1e-2;"
                        "lr=1e-3,3e-3'), got nothing")
    return grid


def candidates(grid):
    """Every combination of the grid's values, the first flag varying slowest."""
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def folds(ds, k, seed):
    """The k (train, held-out) index splits of a dataset's rows: stratified by class for a
    classification, shuffled with `seed` (scikit-learn's StratifiedKFold / KFold)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if ds.task == "regression":
        return list(KFold(k, shuffle=True, random_state=seed).split(ds.X))
    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(ds.X, ds.y))


def fold_data(ds, splits):
    """The folds' data side by side: for each fold every row standardised with the fold's
    training statistics (a regression's target too), so X and y hold the rows k times.
    Returns (X, y, each fold's training rows, each fold's held-out rows) as indices into them."""
    from jaxbp import data

    Xs, ys, train, held_out = [], [], [], []
    for f, (tr, va) in enumerate(splits):
        Xs.append(data.Standardizer().fit(ds.X[tr]).transform(ds.X))
        y = ds.y
        if ds.task == "regression":
            y2 = y.reshape(len(y), -1)
            y = data.Standardizer().fit(y2[tr]).transform(y2).reshape(y.shape)
        ys.append(y)
        train.append(f * len(ds.X) + tr)
        held_out.append(f * len(ds.X) + va)
    return np.concatenate(Xs), np.concatenate(ys), train, held_out


def cross_validate(ds, splits, cands, build, seed, progress):
    """Every candidate on every fold, the candidates that differ only in PER_MEMBER flags as
    one population. `build(candidate)` -> (net, opt, {PER_MEMBER flag: value}, fit_population
    keywords). Returns (scores (candidates, folds): accuracy or R² on the held-out rows, NaN
    where the fit diverged; epochs run, same shape)."""
    import jaxbp

    X, y, train, held_out = fold_data(ds, splits)
    groups = {}
    for i, c in enumerate(cands):
        groups.setdefault(tuple((k, repr(v)) for k, v in c.items() if k not in PER_MEMBER),
                          []).append(i)
    scores = np.full((len(cands), len(splits)), np.nan)
    epochs = np.zeros_like(scores)
    for idx in groups.values():
        built = {i: build(cands[i]) for i in idx}  # once per candidate, not per fold
        net, opt, _, shared = built[idx[0]]
        members = [(i, f) for i in idx for f in range(len(splits))]
        each = [built[i][2] for i, _ in members]
        res = jaxbp.fit_population(net, X, y, keys=[seed] * len(members), opt=opt,
                                   rows=[train[f] for _, f in members], progress=progress,
                                   **{k: [e[k] for e in each] for k in PER_MEMBER}, **shared)
        for j, (i, f) in enumerate(members):
            epochs[i, f] = res.epochs_run[j]
            if not res.diverged[j]:
                rows = held_out[f]
                scores[i, f] = jaxbp.evaluate(net, res.params[j], X[rows], y[rows])["score"]
    return scores, epochs


def value_text(value):
    """A grid value as the command line writes it (hidden widths joined by 'x')."""
    if isinstance(value, (list, tuple)):
        return "x".join(map(str, value)) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def ranked(cands, scores, epochs):
    """The candidates' rows, best mean score first (a candidate with a diverged fold last):
    rank, the candidate's index, the grid's values, mean and standard deviation of the fold
    scores, each fold's score, mean epochs."""
    rows = []
    for c, s, e in zip(cands, scores, epochs, strict=True):
        s = np.asarray(s, float)
        rows.append({"candidate": len(rows), "params": {k: value_text(v) for k, v in c.items()},
                     # a fold that diverged (NaN) makes the candidate's mean NaN: ranked last,
                     # as scikit-learn's error_score=nan ranks a failed fit
                     "mean_score": float(np.mean(s)), "std_score": float(np.std(s)),
                     "fold_scores": [float(v) for v in s], "mean_epochs": float(np.mean(e))})
    order = sorted(range(len(rows)), key=lambda i: (-np.nan_to_num(rows[i]["mean_score"],
                                                                   nan=-np.inf), i))
    return [{"rank": rank, **rows[i]} for rank, i in enumerate(order, 1)]


def table(rows, what, limit=20):
    """The ranked table as text: at most `limit` rows (the best)."""
    names = list(rows[0]["params"])
    head = ["rank", *names, f"mean {what}", "std", "epochs"]
    body = [[str(r["rank"]), *r["params"].values(), f"{r['mean_score']:.4f}",
             f"{r['std_score']:.4f}", f"{r['mean_epochs']:.0f}"] for r in rows[:limit]]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(x.rjust(w) for x, w in zip(line, widths, strict=True))
             for line in (head, *body)]
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more in the CSV")
    return "\n".join(lines)


def write_results(rows, directory, meta):
    """search.csv (one row per candidate, its fold scores as columns) and search.json
    (`meta` and the rows). Returns their paths."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names, folds = list(rows[0]["params"]), len(rows[0]["fold_scores"])
    csv_path, json_path = directory / "search.csv", directory / "search.json"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rank", *names, "mean_score", "std_score", "mean_epochs",
                    *(f"fold{i}_score" for i in range(folds))])
        for r in rows:
            w.writerow([r["rank"], *r["params"].values(), r["mean_score"], r["std_score"],
                        r["mean_epochs"], *r["fold_scores"]])
    json_path.write_text(json.dumps({**meta, "results": rows}, indent=1, allow_nan=True))
    return csv_path, json_path


def plot_scores(rows, path, what, title):
    """One panel per grid flag: every candidate's mean fold score (± its standard deviation)
    against the flag's value, the best marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows[0]["params"])
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        levels = sorted({r["params"][name] for r in rows}, key=_sort_key)
        at = {v: i for i, v in enumerate(levels)}
        per_level = len(rows) // len(levels)
        seen = dict.fromkeys(levels, 0)
        for r in rows:  # the candidates of one value side by side, best first
            value = r["params"][name]
            x = at[value] + 0.5 * (seen[value] / max(per_level, 2) - 0.25)
            seen[value] += 1
            ax.errorbar(x, r["mean_score"], yerr=r["std_score"], fmt="o",
                        color="C3" if r["rank"] == 1 else "C0", alpha=0.8, capsize=3,
                        label="best" if r["rank"] == 1 else None)
        ax.set(xticks=range(len(levels)), xticklabels=levels, xlabel=name,
               ylabel=f"mean {what} over the folds")
        ax.legend(loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _sort_key(text):
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)
