"""A checkpoint as a deployable model: `load_model(path)` returns a `SavedModel` whose `predict(X)`
and `predict_proba(X)` take raw rows, as the user's file has them: the columns are matched to
the training columns (by name for a table such as a pandas DataFrame), the training run's
standardiser is applied, and the network's outputs become labels, values or probabilities.

The run record. Besides the network, its optimizer state and the history, a checkpoint written
by `jaxbp train` holds in its `extra` (JSON; `jaxbp.load_checkpoint(path).extra`):

- "task": "binary", "multiclass" or "regression".
- "classes": the class labels, in the order of the network's outputs (null for a regression).
- "feature_names": the training columns' names in the order of the network's inputs, when the
  data had them (a CSV's header, an .npz's feature_names, the built-in datasets), else null.
- "target": the name of the target column (a csv: dataset's --target), else null.
- "mean", "scale": the standardiser fitted on the training rows: the network takes
  z = (x − mean) / scale, column by column.
- "target_mean", "target_scale" (a regression): the standardiser of the training targets: the
  network learns (y − target_mean) / target_scale, and its outputs are mapped back,
  output · target_scale + target_mean. Absent (older files, classes): outputs are the values.
- "flags": the `jaxbp train` flags that define the run, e.g. {"dataset": "csv:houses.csv",
  "target": "price", "hidden": [64, 32], "lr": 0.001, ..., "epochs": 200}: what `--resume`
  restores (`jaxbp.cli`).
- "finished", "best_restored": whether the run completed, and whether it ended by restoring its
  best epoch's weights (early stopping).

Files written before "flags" and "feature_names" were recorded hold the others (with
"dataset", "seed" and "test_fraction" at the top level); they load as well, their columns taken
by position. A checkpoint saved by `jaxbp.save_checkpoint` without a run record loads too: no
standardising, and the task read off the network (mse loss: a regression, else the classes
0..k−1).
"""

import numpy as np

from jaxbp import checkpoint, data, validate
from jaxbp.api import predict as _outputs_of
from jaxbp.losses import TARGETS

__all__ = ["MismatchError", "SavedModel", "load_model"]


class MismatchError(data.ArgumentError):
    """Rows that do not fit the model (a missing, unknown or repeated column, the wrong number
    of columns), or `predict_proba` asked of a model without probabilities.

    `argument` names what did not fit ("X", "predict_proba") and `problem` says what was
    expected and what arrived, so that a caller with other names for them (the CLI's --input
    and --proba) can say the same in its own words."""


def load_model(path):
    """The model in the checkpoint at `path` (written by `jaxbp train`, or any checkpoint of
    `jaxbp.save_checkpoint`) as a `SavedModel`. Never unpickles. Raises as
    `jaxbp.load_checkpoint` does (a float64 checkpoint needs jax_enable_x64 on), and a
    ValueError naming the file and the key of a run record that does not fit the network."""
    return SavedModel.from_checkpoint(checkpoint.load_checkpoint(path), where=str(path))


def run_record(task, classes, feature_names, target, standardizer, target_standardizer=None):
    """The model's part of a checkpoint's run record (see the module docstring): the task, the
    class labels (a NumPy array or None), the feature names (or None), the target column's name
    (or None), the fitted `jaxbp.data.Standardizer` of the rows and, for a regression, of the
    targets."""
    record = {"task": task, "classes": None if classes is None else classes.tolist(),
              "feature_names": None if feature_names is None else list(feature_names),
              "target": target, "mean": standardizer.mean_.tolist(),
              "scale": standardizer.scale_.tolist()}
    if target_standardizer is not None:
        record.update(target_mean=target_standardizer.mean_.tolist(),
                      target_scale=target_standardizer.scale_.tolist())
    return record


class SavedModel:
    """A trained network and what its rows need. Build one with `load_model(path)`.

    Attributes:
        net, params: the `MLP` and its parameters.
        task: "binary", "multiclass" or "regression".
        classes_: the class labels (a NumPy array), in the order of `predict_proba`'s columns;
            None for a regression.
        feature_names_in_: the training columns' names (a tuple), or None when the data had
            none. n_features_in_: how many columns the network takes.
        target: the training target column's name, or None.
        standardizer: the training rows' `jaxbp.data.Standardizer`, or None (rows are taken
            as they are).
        target_standardizer: a regression's training targets' `Standardizer` (predictions are
            mapped back through it), or None (the outputs are the values).
    """

    def __init__(self, net, params, *, task, classes=None, feature_names=None, target=None,
                 standardizer=None, target_standardizer=None):
        self.net, self.params, self.task = net, params, task
        self.classes_ = None if classes is None else np.asarray(classes)
        self.feature_names_in_ = None if feature_names is None else tuple(feature_names)
        self.n_features_in_ = net.sizes[0]
        self.target, self.standardizer = target, standardizer
        self.target_standardizer = target_standardizer

    @classmethod
    def from_checkpoint(cls, ckpt, where="checkpoint"):
        """The model of a loaded `jaxbp.Checkpoint`, its run record checked against its network
        (errors name `where`, the file, and the record's key)."""
        net, extra = ckpt.net, ckpt.extra
        try:
            task = _task(net, extra.get("task"))
            return cls(net, ckpt.params, task=task, classes=_classes(net, task, extra),
                       feature_names=_names(net, extra.get("feature_names")),
                       target=_target(extra.get("target")), standardizer=_standardizer(net, extra),
                       target_standardizer=_target_standardizer(net, task, extra))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: run record {e}") from None

    def __repr__(self):
        what = "regression" if self.classes_ is None else f"classes {self.classes_.tolist()!r:.80}"
        return f"SavedModel({self.net!r}, {what})"

    def column_order(self, names):
        """The positions in `names` (a table's column names, e.g. a CSV header) of the training
        columns, in training order: the columns matched by name. A column named as the
        training target is passed over. Without training names, the columns are taken by
        position. Raises `MismatchError` naming a missing, unknown or repeated column."""
        names = [str(n) for n in names]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise MismatchError("X", f"expected distinct column names, got {repeated[0]!r} "
                                     f"more than once")
        if self.feature_names_in_ is None:
            self._check_width(len(names))
            return list(range(len(names)))
        missing = [n for n in self.feature_names_in_ if n not in names]
        unknown = [n for n in names if n not in self.feature_names_in_ and n != self.target]
        for what, columns in (("missing", missing), ("unknown", unknown)):
            if columns:
                more = f" (and {len(columns) - 1} more)" if len(columns) > 1 else ""
                raise MismatchError("X", f"{what} column {columns[0]!r}{more}: the model takes "
                                         f"the columns {self._names_text()}")
        return [names.index(n) for n in self.feature_names_in_]

    def _names_text(self):
        return validate.short(list(self.feature_names_in_), 12)

    def _check_width(self, width):
        if width != self.n_features_in_:
            known = "" if self.feature_names_in_ is None else f" ({self._names_text()})"
            raise MismatchError("X", f"expected {self.n_features_in_} columns, as in "
                                     f"training{known}, got {width}")

    def transform(self, X):
        """X's rows as the network takes them, (m, n_features_in_) float64: a table's columns
        (a pandas or polars DataFrame: anything with string `.columns`) matched to the training
        columns by name (`column_order`), an array's taken by position; then standardised."""
        names = getattr(X, "columns", None)
        if names is not None and all(isinstance(n, str) for n in names):
            names = list(names)
            X = X[[names[i] for i in self.column_order(names)]]
        X = data.check_features(X.to_numpy() if hasattr(X, "to_numpy") else X, "X")
        self._check_width(X.shape[1])
        return X if self.standardizer is None else self.standardizer.transform(X)

    def _outputs(self, X):
        return np.asarray(_outputs_of(self.net, self.params, self.transform(X)))

    def predict(self, X):
        """The class labels (m,) of raw rows X, or for a regression the values: (m,) for one
        target, (m, k) for k."""
        A = self._outputs(X)
        if self.target_standardizer is not None:
            A = self.target_standardizer.inverse_transform(A)
        return data.from_columns(A.T, self.task, self.classes_)

    def predict_proba(self, X):
        """Each class's probability, (m, n_classes), columns in the order of `classes_`: the
        softmax outputs; [1 − a, a] for a single sigmoid output; one sigmoid per class divided
        by the row's sum. Raises `MismatchError` for a regression or an identity output."""
        if self.task == "regression":
            raise MismatchError("predict_proba", "the model is a regression: it predicts "
                                                 "values, not class probabilities")
        if self.net.output == "identity":
            raise MismatchError("predict_proba", "the network's output activation is identity "
                                                 "(trained with --output identity): its outputs "
                                                 "are not probabilities")
        A = self._outputs(X)
        if A.shape[1] == 1:
            return np.hstack([1 - A, A])
        return A if self.net.output == "softmax" else A / A.sum(axis=1, keepdims=True)


    def to_onnx(self, path=None):
        """This model as an ONNX model (`onnx.ModelProto`, opset 17), written to `path` if
        given: float32 input "X" (N, n_features_in_), the raw columns in training order
        (`feature_names_in_`, also in the model's metadata), standardised in the graph; outputs
        "label" (and "probabilities" where the network has them) or, for a regression,
        "variable" (N, n_outputs) in the target's units (`jaxbp.export`)."""
        from jaxbp import export

        st, ts = self.standardizer, self.target_standardizer
        model = export.onnx_model(
            self.net, self.params, classes=None if self.task == "regression" else self.classes_,
            mean=None if st is None else st.mean_, scale=None if st is None else st.scale_,
            target_mean=None if ts is None else ts.mean_,
            target_scale=None if ts is None else ts.scale_,
            feature_names=self.feature_names_in_, doc=f"jaxbp {self.task} model")
        if path is not None:
            export.save(model, path)
        return model

# --- the run record, checked against the network -------------------------------------------------
def _task(net, task):
    """The recorded task, or the network's (real-valued targets: regression, else classes)."""
    if task is None:
        return "regression" if TARGETS[net.loss] == "finite" else (
            "binary" if net.sizes[-1] <= 2 else "multiclass")
    if task not in data.TASKS:
        raise ValueError(f"'task': expected one of {list(data.TASKS)}, got {task!r:.60}")
    return task


def _classes(net, task, extra):
    """The class labels, one per output (two for a single output); None for a regression."""
    if task == "regression":
        return None
    k = max(2, net.sizes[-1])
    classes = extra.get("classes")
    if classes is None:
        return np.arange(k)
    labels = np.asarray(classes) if isinstance(classes, list) else None
    if labels is None or labels.ndim != 1 or len(labels) != k or len(np.unique(labels)) != k:
        raise ValueError(f"'classes': expected {k} distinct labels for the network's "
                         f"{net.sizes[-1]} output(s), got {classes!r:.80}")
    return labels


def _names(net, names):
    if names is None:
        return None
    if not isinstance(names, list) or len(names) != net.sizes[0] or \
            not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise ValueError(f"'feature_names': expected {net.sizes[0]} distinct column names, one "
                         f"per input of the network, got {names!r:.80}")
    return names


def _target(target):
    if target is not None and not isinstance(target, str):
        raise ValueError(f"'target': expected a column name or null, got {target!r:.60}")
    return target


def _standardizer(net, extra):
    """The recorded `data.Standardizer`, or None where the record has none."""
    if "mean" not in extra and "scale" not in extra:
        return None
    mean = extra.get("mean")
    if not isinstance(mean, list) or len(mean) != net.sizes[0]:
        raise ValueError(f"'mean': expected {net.sizes[0]} numbers, one per input of the "
                         f"network, got {mean!r:.80}")
    return data.Standardizer(mean, extra.get("scale"))


def _target_standardizer(net, task, extra):
    """A regression's recorded target `data.Standardizer`, or None where the record has none."""
    if "target_mean" not in extra and "target_scale" not in extra:
        return None
    mean, n_L = extra.get("target_mean"), net.sizes[-1]
    if task != "regression" or not isinstance(mean, list) or len(mean) != n_L:
        raise ValueError(f"'target_mean': expected {n_L} numbers for a regression's {n_L} "
                         f"outputs, got {mean!r:.80} for a {task} task")
    return data.Standardizer(mean, extra.get("target_scale"))
