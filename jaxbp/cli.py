"""The command line: `jaxbp train | search | evaluate | predict | export | explain`
(also `python -m jaxbp ...`).

Usage: jaxbp COMMAND [--flags]      jaxbp --help: the commands; jaxbp COMMAND --help: its flags

    jaxbp train                                   # breast_cancer, progress bar, test accuracy
    jaxbp train --dataset digits --hidden 128,64 --epochs 100 --checkpoint_dir runs/digits
    jaxbp train --epochs 300 --resume --checkpoint_dir runs/digits   # the same run, continued
    jaxbp train --dataset csv:houses.csv --target price          # --task auto: see below
    jaxbp search --dataset digits --hidden 64 --grid 'alpha=1e-4,1e-2;lr=1e-3,3e-3' --cv 5
    jaxbp evaluate --checkpoint runs/digits/checkpoint.npz
    jaxbp predict --checkpoint runs/digits/checkpoint.npz --input new_rows.csv
    jaxbp predict --checkpoint runs/digits/checkpoint.npz --input new_rows.csv --proba \
        --output probabilities.csv
    jaxbp explain                                 # seed 001's worked example, every quantity

`jaxbp train` splits off a test set (stratified, --test_fraction), fits a standardiser on the
training rows only, trains with a validation split (--validation_fraction), then reports the
test accuracy (R² for regression) on its last lines and writes the learning-curve plot.

--task auto decides classification or regression from the target, as scikit-learn's
`type_of_target` does (`jaxbp.data.infer_task`): labels that are not numbers (strings,
booleans) are classes; numbers with a fractional part, or several target columns, are a
regression; whole numbers are classes, except that more than 2 of them make a regression, with
a one-line note saying so, when there are more than max(20, rows/100) distinct values (prices,
counts, ages) or one value is held by a single row (too small a class to split). Each class
needs at least 2 rows for the stratified test split; a smaller class is an error naming --task.
--task classification or regression overrules the inference (a regression needs numbers).

Checkpoints (--checkpoint_dir): after the first epoch, then after the first epoch that ends
--checkpoint_every seconds (default 2) after the previous write, and after the last epoch, so
a crash or `kill -9` loses at most that long plus one epoch. SIGINT (Ctrl-C) and SIGTERM stop
the run at the end of the epoch in progress, write its checkpoint and exit with one line on
stderr and status 130 / 143; a second signal stops at once.

--resume continues the run of the checkpoint in --checkpoint_dir: the checkpoint records the
flags that define the run (_RUN_FLAGS: the data, the task, the network, the optimizer, the
split, the dtype, ...; the run record is `jaxbp.model_file`'s docstring); those not given take
its values, and one given again must agree with it. --epochs is the total (default: the
run's). Epochs are counted from 1 in what the command prints (epoch 1 is the first) and in the
plot; a checkpoint's "epoch" is the number of epochs done, its history's "epoch" fit's index
from 0.

The checkpoint is the model: `jaxbp predict`, and `jaxbp.load_model(path)` in Python, take raw
rows, match a header's columns to the training columns by name and standardise them as the
training rows were.

Exit status: 0 done; 1 the run failed (a file that cannot be read or parsed, unusable data, a
diverging run); 2 the command line is wrong (an unknown command or flag, a flag of another
command, a value the flag does not take, a dataset or file that is not there, flags that do not
fit together, the checkpoint or the data); 128 + the signal's number when stopped by SIGINT
(130) or SIGTERM (143), or when the reader of the output left (141, SIGPIPE: `jaxbp predict
... | head`, silently). An error is one line on stderr, naming the flag (a usage error adds
where to look; JAXBP_DEBUG=1 shows a failed run's traceback). JAX's and absl's informational
log lines are hidden unless --verbosity asks for them (0: info, 1: debug).
"""

import contextlib
import importlib.metadata
import json
import math
import os
import pathlib
import signal
import sys
import time

import numpy as np
from absl import app, flags
from absl import logging as absl_logging

from jaxbp import backends, optim
from jaxbp.activations import HIDDEN, OUTPUTS

ACTIVATION_NAMES = list(HIDDEN)  # the activation table's built-in hidden g
OUTPUT_NAMES = ["auto", *OUTPUTS]
# --task auto: more distinct whole numbers than max(_AUTO_MIN_VALUES, rows / _AUTO_ROWS_PER_VALUE)
# are a regression's values, not class labels
_AUTO_MIN_VALUES, _AUTO_ROWS_PER_VALUE = 20, 100


class _WidthsParser(flags.ListParser):
    """--hidden: comma-separated layer widths, whole numbers >= 1 (empty: no hidden layer)."""

    def parse(self, argument):
        widths = []
        for piece in super().parse(argument):
            text = str(piece).strip()
            if not text:
                continue
            try:
                width = int(text)
            except ValueError:
                width = 0
            if width < 1:
                raise ValueError(f"expected layer widths, whole numbers >= 1 separated by "
                                 f"commas (e.g. 64,32; '' for no hidden layer), got {text!r}")
            widths.append(width)
        return widths


FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "breast_cancer",
                    "A built-in dataset (breast_cancer, digits, mnist1d, xor, moons, spirals), "
                    "or a file: idx:DIR (MNIST/Fashion-MNIST IDX files), csv:PATH, npz:PATH.")
flags.DEFINE_string("target", None, "Target column of a csv: dataset (required for csv).")
flags.DEFINE_enum("task", "auto", ["auto", "classification", "regression"],
                  "What to learn. auto: labels that are not numbers are classes; numbers with "
                  "a fractional part (or several target columns) are a regression; whole "
                  "numbers are classes, except that more than 2 of them are a regression (with "
                  "a note) when they take more than max(20, rows/100) distinct values or one "
                  "of them is held by a single row. Each class needs at least 2 rows (the "
                  "stratified test split).")
flags.DEFINE(_WidthsParser(), "hidden", "100",
             "Hidden layer widths, e.g. 64,32 (empty: no hidden layer).",
             serializer=flags.CsvListSerializer(","))
flags.DEFINE_enum("activation", "relu", ACTIVATION_NAMES, "Hidden activation g.")
flags.DEFINE_string("output", None, "train: the output activation, one of "
                    f"{', '.join(OUTPUT_NAMES)}; auto (the default) picks sigmoid (2 classes), "
                    "softmax (more) or identity (regression). predict: write the predictions "
                    "to this CSV file, with a header row, instead of printing them.")
flags.DEFINE_enum("optimizer", "adam", list(optim.OPTIMIZERS), "Optimizer (the registry "
                  "jaxbp.optim.OPTIMIZERS); --lr, --momentum, --nesterov, --beta1, --beta2 and "
                  "--weight_decay go to those of its arguments it has.")
flags.DEFINE_float("lr", 1e-3, "Learning rate.", lower_bound=0.0)
flags.DEFINE_float("momentum", 0.9, "SGD momentum.", lower_bound=0.0)
flags.DEFINE_boolean("nesterov", False, "Nesterov momentum (sgd).")
flags.DEFINE_float("beta1", 0.9, "Adam β1.", lower_bound=0.0, upper_bound=0.999999)
flags.DEFINE_float("beta2", 0.999, "Adam β2.", lower_bound=0.0, upper_bound=0.999999)
flags.DEFINE_float("weight_decay", 0.0, "Weight decay (L2 in the gradient; decoupled for adamw).",
                   lower_bound=0.0)
flags.DEFINE_float("alpha", 1e-4, "L2 penalty, as scikit-learn's MLP alpha.", lower_bound=0.0)
flags.DEFINE_float("dropout", 0.0, "Dropout probability on hidden layers.", lower_bound=0.0,
                   upper_bound=0.95)
flags.DEFINE_enum("schedule", "constant", ["constant", "step", "cosine", "invscaling"],
                  "Learning-rate schedule.")
flags.DEFINE_integer("epochs", 200, "Epochs.", lower_bound=1)
flags.DEFINE_integer("batch_size", 0, "Batch size; 0 means min(200, training rows).",
                     lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seed for the split, the initial weights and the shuffling.")
flags.DEFINE_float("test_fraction", 0.2, "Held-out test fraction (never used for choices).",
                   lower_bound=0.05, upper_bound=0.9)
flags.DEFINE_float("validation_fraction", 0.1, "Validation fraction of the training rows.",
                   lower_bound=0.0, upper_bound=0.9)
flags.DEFINE_boolean("early_stopping", True, "Stop when the validation cost stops improving "
                     "and restore the best weights.")
flags.DEFINE_integer("patience", 10, "Early-stopping patience, in epochs.", lower_bound=1)
flags.DEFINE_string("checkpoint_dir", None, "Write checkpoint.npz here (when: see "
                    "--checkpoint_every); SIGINT (Ctrl-C) and SIGTERM write one of the last "
                    "completed epoch and stop (status 130 / 143).")
flags.DEFINE_float("checkpoint_every", 2.0, "Seconds between checkpoints: one is written after "
                   "the first epoch, then after the first epoch that ends at least this long "
                   "after the previous write, and after the last epoch, so a crash (kill -9) "
                   "loses at most this long plus one epoch. 0: after every epoch (a write "
                   "takes ~10-40 ms).", lower_bound=0.0)
flags.DEFINE_boolean("resume", False, "Continue the run of <checkpoint_dir>/checkpoint.npz "
                     "up to --epochs in all (default: the run's own --epochs). The checkpoint "
                     "holds the run's flags: those not given take its values, those given "
                     "must agree with it. Without early stopping it ends exactly as an "
                     "uninterrupted run.")
flags.DEFINE_string("plot", "learning_curves.png", "PNG of the learning curves, the best epoch "
                    "marked ('' for none). Not given: learning_curves.png in --checkpoint_dir "
                    "when one is given, else in the current directory.")
flags.DEFINE_enum("dtype", "float32", ["float32", "float64"], "Parameter and compute dtype.")
flags.DEFINE_enum("precision", "float32", ["float32", "tf32"], "Float32 matmul precision: "
                  "true float32, or TF32 on NVIDIA GPUs from Ampere on (faster, ~1e-3 relative "
                  "error per product; float32 on a CPU).")
flags.DEFINE_boolean("quiet", False, "No progress bar.")
flags.DEFINE_integer("devices", 1, "Data-parallel over this many devices (0: all of them); "
                     "each batch's columns are split across them.", lower_bound=0)
flags.DEFINE_string("coordinator_address", None, "Multi-host training: 'host:port' of process "
                    "0, the same on every process (jax.distributed.initialize).")
flags.DEFINE_integer("num_processes", 1, "Multi-host training: how many processes (one per "
                     "host); with more than 1 the run is data parallel over every device of "
                     "every process.", lower_bound=1)
flags.DEFINE_integer("process_id", 0, "Multi-host training: this process's index, 0 .. "
                     "--num_processes − 1. Process 0 alone prints, plots and writes "
                     "checkpoints.", lower_bound=0)
flags.DEFINE_string("checkpoint", None, "The checkpoint.npz (written by jaxbp train) to load.")
flags.DEFINE_string("input", None, "Rows to predict: a .csv or a .npy file. A .csv whose "
                    "first row holds a name in some cell has a header: its columns are matched "
                    "to the training columns by name (a column named as the training target "
                    "is passed over); one whose first row is all numbers has none, and its "
                    "columns, as a .npy's, are taken in the training order.")
flags.DEFINE_boolean("proba", False, "Print each class's probability, in the order of the "
                     "checkpoint's classes, instead of the predicted label.")
flags.DEFINE_string("onnx", None, "Write the checkpoint's model here as an ONNX file (its "
                    "standardiser and class labels in the graph): it runs without JAX, e.g. in "
                    "ONNX Runtime. Needs pip install 'jaxbp[export]'.")
flags.DEFINE_string("compilation_cache", None, "Directory of JAX's persistent compilation "
                    "cache (compiled programs kept for the next run), or 'off'. Default: "
                    "$JAXBP_COMPILATION_CACHE, else ~/.cache/jaxbp/compilation.")
flags.DEFINE_float("explain_lr", 0.01, "Learning rate of the SGD step shown.",
                   lower_bound=0.0)
flags.DEFINE_string("grid", None, "search: the train flags to vary and their values, e.g. "
                    "'alpha=1e-4,1e-2;lr=1e-3,3e-3' (hidden widths joined by x: "
                    "'hidden=64,128x64'); every combination is a candidate.")
flags.DEFINE_integer("cv", 5, "search: cross-validation folds of the training rows.",
                     lower_bound=2)
flags.DEFINE_string("search_dir", "search", "search: where search.csv, search.json, "
                    "search.png and the refitted best model (checkpoint.npz, learning curves) "
                    "go.")

_TRAIN_FLAGS = ("dataset", "target", "task", "hidden", "activation", "output", "optimizer", "lr",
                "momentum", "nesterov", "beta1", "beta2", "weight_decay", "alpha", "dropout",
                "schedule", "epochs", "batch_size", "seed", "test_fraction",
                "validation_fraction", "early_stopping", "patience", "checkpoint_dir",
                "checkpoint_every", "resume", "plot", "dtype", "precision", "quiet", "devices",
                "coordinator_address", "num_processes", "process_id", "compilation_cache")
# The train flags that define a run: its checkpoint records them (extra["flags"], with
# "epochs"), and --resume restores them. The others say how to run it (where to checkpoint and
# how often, the plot, the progress bar, the devices).
_RUN_FLAGS = ("dataset", "target", "task", "hidden", "activation", "output", "optimizer", "lr",
              "momentum", "nesterov", "beta1", "beta2", "weight_decay", "alpha", "dropout",
              "schedule", "batch_size", "seed", "test_fraction", "validation_fraction",
              "early_stopping", "patience", "dtype", "precision")
# The flags a run record held, at its top level, before it held them all (extra["flags"])
_LEGACY_FLAGS = ("dataset", "target", "seed", "test_fraction")
# The train flags search does not take: the refit's checkpoint and plot go to --search_dir
_NOT_SEARCH = ("checkpoint_dir", "checkpoint_every", "resume", "plot", "devices",
               "coordinator_address", "num_processes", "process_id")
# name: (what it does, in one line; the flags it takes). Every flag above is some command's.
COMMANDS = {
    "train": ("train an MLP on a dataset; prints the test accuracy, writes learning curves",
              _TRAIN_FLAGS),
    "search": ("cross-validate a grid of train flags as populations; refit the best",
               (*(f for f in _TRAIN_FLAGS if f not in _NOT_SEARCH), "grid", "cv",
                "search_dir")),
    "evaluate": ("evaluate a checkpoint on its dataset's test split",
                 ("checkpoint", "compilation_cache")),
    "predict": ("predict the rows of a .csv/.npy file with a checkpoint",
                ("checkpoint", "input", "proba", "output", "compilation_cache")),
    "export": ("write a checkpoint as an ONNX model that runs without JAX",
               ("checkpoint", "onnx")),
    "explain": ("print every Z, A, Δ, dW, db of seed 001's worked example", ("explain_lr",)),
}
_HELP_FLAGS = ("--help", "-help", "-h", "--helpshort", "-?")


class UsageError(Exception):
    """The command line is wrong (exit status 2); the message names the flag or command."""


def _fail(message):
    raise UsageError(message)


# load's arguments as the command line names them
_FLAG_OF = {"name": "--dataset", "target": "--target"}


def _load_dataset():
    """(data, test | None) of --dataset: test is the test set the source ships (idx:DIR)."""
    from jaxbp import datasets

    if ":" not in FLAGS.dataset and FLAGS.dataset not in datasets.BUILTIN:
        _fail(f"--dataset: expected one of {', '.join(datasets.BUILTIN)}, or a file "
              f"(idx:DIR, csv:PATH, npz:PATH), got {FLAGS.dataset!r}")
    try:
        return datasets.load_with_test(FLAGS.dataset, seed=FLAGS.seed, target=FLAGS.target)
    except datasets.SpecError as e:
        _fail(f"{_FLAG_OF[e.argument]}: {e.problem}")
    except FileNotFoundError as e:  # a path to nothing is a usage error; a bad file is not
        _fail(f"--dataset: {e}")


def _train_test(test_fraction, seed, task, say):
    """(train, test) of --dataset as `task` (--task's values) asks: the test set its source
    ships, else `test_fraction` of the rows (stratified for classification) drawn from
    `seed`."""
    from jaxbp import data

    train_ds, test_ds = _load_dataset()
    train_ds = _auto_task(train_ds, say) if task == "auto" else _as_task(train_ds, task)
    if test_ds is not None:
        return train_ds, _as_task(test_ds, _task_flag(train_ds.task))
    if train_ds.task != "regression":
        _check_class_sizes(train_ds, task)
    return data.train_test_split(train_ds, test_fraction, seed=seed)


def _task_flag(task):
    """--task's value for a Dataset's task: "classification" or "regression"."""
    return "regression" if task == "regression" else "classification"


def _numeric_labels(ds):
    return ds.classes.dtype.kind in "iuf"


def _as_task(ds, task):
    """`ds` as a classification or a regression (--task's explicit values), re-made from its
    labels or values by `data.make_dataset` when it was inferred the other way."""
    from jaxbp import data

    if _task_flag(ds.task) == task:
        return ds
    if task == "regression":
        if not _numeric_labels(ds):
            _fail(f"--task regression: expected a numeric target, got labels "
                  f"{ds.classes[:3].tolist()}{'...' if ds.n_classes > 3 else ''} ({ds.name}); "
                  f"labels train as classes (--task auto)")
        return data.make_dataset(ds.X, ds.classes[ds.y], task="regression",
                                 feature_names=ds.feature_names, name=ds.name)
    if ds.y.ndim != 1:
        _fail(f"--task classification: expected one target column, got {ds.y.shape[1]} "
              f"({ds.name})")
    return data.make_dataset(ds.X, ds.y, classes=np.unique(ds.y),
                             feature_names=ds.feature_names, name=ds.name)


def _auto_task(ds, say):
    """`ds` as --task auto takes it: as `data.infer_task` inferred it (scikit-learn's
    type_of_target), except that more than 2 whole-number classes are a regression's values
    when there are more than max(20, rows/100) of them or one is held by a single row."""
    if ds.task == "regression" or ds.n_classes == 2 or not _numeric_labels(ds):
        return ds
    m, k = len(ds.y), ds.n_classes
    limit = max(_AUTO_MIN_VALUES, m // _AUTO_ROWS_PER_VALUE)
    smallest = int(np.bincount(ds.y).min())
    if k <= limit and smallest >= 2:
        return ds
    why = (f"{k} distinct values in {m} rows (more than max({_AUTO_MIN_VALUES}, "
           f"rows/{_AUTO_ROWS_PER_VALUE}) = {limit})" if k > limit
           else "a value held by a single row")
    say(f"note: --task auto: the target holds whole numbers with {why}: training a "
        f"regression (--task classification trains {k} classes)")
    return _as_task(ds, "regression")


def _check_class_sizes(ds, task):
    """A usage error naming --task unless every class of `ds` has the 2 rows a stratified
    test split needs."""
    counts = np.bincount(ds.y, minlength=ds.n_classes)
    c = int(counts.argmin())
    if counts[c] < 2:
        fix = ("--task regression trains on the values" if _numeric_labels(ds) else
               "drop that row or merge its class with another")
        _fail(f"--task {task}: class {ds.classes[c].item()!r} has {counts[c]} row; a "
              f"stratified test split needs at least 2 rows of each class ({fix})")


def _net_for(ds, n_features):
    import jaxbp

    hidden = tuple(FLAGS.hidden)  # whole numbers >= 1: _WidthsParser
    output = {"binary": "sigmoid", "multiclass": "softmax", "regression": "identity"}[ds.task]
    n_L = ds.n_outputs  # 1 (sigmoid), k (softmax) or the number of regression targets
    if FLAGS.output != "auto":  # checked by _output_flag
        output = FLAGS.output
        if output == "softmax" and ds.task == "binary":
            n_L = 2
    return jaxbp.MLP((n_features, *hidden, n_L), hidden=FLAGS.activation, output=output,
                     precision=FLAGS.precision)


def _optimizer():
    """The --optimizer from the registry, given the flags that name its factory's arguments."""
    import inspect

    factory = optim.OPTIMIZERS[FLAGS.optimizer].factory
    given = {"lr": FLAGS.lr, "momentum": FLAGS.momentum, "nesterov": FLAGS.nesterov,
             "b1": FLAGS.beta1, "b2": FLAGS.beta2, "weight_decay": FLAGS.weight_decay}
    takes = inspect.signature(factory).parameters
    return factory(**{k: v for k, v in given.items() if k in takes})


def plot_history(history, path, title, best_epoch=None, restored=False):
    """Learning curves: costs on the left, the validation score on the right, against the
    epoch counted from 1; `best_epoch` (fit's, counted from 0), when given, is marked, and
    said to be `restored` (its weights are the run's result)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [e + 1 for e in history["epoch"]]
    ax1.plot(epochs, history["train_cost"], label="train cost")
    if "val_cost" in history:
        ax1.plot(epochs, history["val_cost"], label="validation cost")
        ax2.plot(epochs, history["val_score"], color="C2", label="validation score")
    if best_epoch is not None:
        label = f"best epoch {best_epoch + 1}" + (" (restored)" if restored else "")
        for ax in (ax1, ax2):
            ax.axvline(best_epoch + 1, color="C3", linestyle="--", linewidth=1, label=label)
    ax1.set(xlabel="epoch (from 1)", ylabel="cost J", yscale="log", title=title)
    ax2.set(xlabel="epoch (from 1)", ylabel="accuracy (R² for regression)",
            title="validation score")
    ax1.legend()
    ax2.legend()
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_path():
    """Where the learning curves go: --plot as given, else learning_curves.png in
    --checkpoint_dir when one is given; None for --plot ''."""
    if not FLAGS.plot:
        return None
    if FLAGS["plot"].present or not FLAGS.checkpoint_dir:
        return pathlib.Path(FLAGS.plot)
    return pathlib.Path(FLAGS.checkpoint_dir) / FLAGS.plot


def _train():
    from jaxbp import data

    _output_flag()
    main = _start_processes()
    say = print if main else (lambda *args, **kwargs: None)
    path = _checkpoint_path()
    if FLAGS.resume:
        _restore_run(path)
    _use_dtype()
    train_ds, test_ds = _train_test(FLAGS.test_fraction, FLAGS.seed, FLAGS.task, say)
    scaler = data.Standardizer().fit(train_ds.X)  # fitted on the training rows only
    X, X_test = scaler.transform(train_ds.X), scaler.transform(test_ds.X)
    y_scaler = _target_standardizer(train_ds)
    y, y_test = (_standardized(y_scaler, ds.y) for ds in (train_ds, test_ds))
    net = _net_for(train_ds, X.shape[1])
    opt = _optimizer()
    say(f"dataset {FLAGS.dataset}: {len(X)} training rows, {len(X_test)} test rows, "
        f"{X.shape[1]} features, task {train_ds.task}")
    say(f"network {net.sizes}, {net.hidden} hidden, {net.output} output, loss {net.loss}; "
        f"{type(opt).__name__} lr {FLAGS.lr}; {FLAGS.dtype}")
    record = _run_record(train_ds, scaler, y_scaler)
    saver = None if path is None else _saver(path, net, opt, record, main)
    start = _resume(path, net, opt, say) if FLAGS.resume else _FRESH
    mesh = _mesh(say)
    # A signal now stops the run at the end of the epoch in progress, checkpointed (the saver
    # sees it); without a checkpoint there is nothing to finish, and it stops at once.
    with _SIGNALS.deferred(saver is not None):
        result = _fit(net, X, y, opt, start, mesh, saver, main)
        if saver is not None:
            saver(result, result.history["epoch"][-1], final=True)
    if saver is not None:
        say(f"checkpoint: {path}")
    plot = _plot_path()
    if plot is not None and main:
        plot_history(result.history, plot, f"{FLAGS.dataset} {net.sizes}", result.best_epoch,
                     result.stopped_early)
        say(f"learning curves: {plot}")
    _report(result, start["start_epoch"], net, X_test, y_test, train_ds.task, say)


def _target_standardizer(train_ds):
    """A regression's targets are learnt standardised (mean 0, std 1 over the training rows),
    so a target in the hundreds of thousands trains as well as one near 1; `jaxbp.load_model`
    maps the outputs back. Class labels: None."""
    from jaxbp import data

    if train_ds.task != "regression":
        return None
    return data.Standardizer().fit(train_ds.y.reshape(len(train_ds.y), -1))


def _standardized(y_scaler, y):
    """y through a regression's target standardiser (same shape), or y itself."""
    if y_scaler is None:
        return y
    return y_scaler.transform(y.reshape(len(y), -1)).reshape(y.shape)


def _output_flag():
    """train's --output: one of OUTPUT_NAMES, "auto" when not given (the flag is predict's
    output file too, so absl cannot check it as an enum)."""
    if FLAGS.output is None:
        FLAGS.output = "auto"
    elif FLAGS.output not in OUTPUT_NAMES:
        _fail(f"--output: expected the output activation, one of {', '.join(OUTPUT_NAMES)}, "
              f"got {FLAGS.output!r}")


def _start_processes():
    """With --num_processes > 1, join the multi-host run (before any other JAX work, as
    jax.distributed requires). Whether this is the main process."""
    import jaxbp

    if FLAGS.num_processes > 1:
        if FLAGS.coordinator_address is None:
            _fail("--coordinator_address: expected 'host:port' of process 0 when "
                  f"--num_processes is {FLAGS.num_processes}, got nothing")
        if FLAGS.process_id >= FLAGS.num_processes:
            _fail(f"--process_id: expected 0 .. {FLAGS.num_processes - 1}, got "
                  f"{FLAGS.process_id}")
        if FLAGS.devices not in (0, 1):
            _fail("--devices: a multi-host run uses every device of every process; leave "
                  f"--devices unset, got {FLAGS.devices}")
        jaxbp.parallel.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                                  FLAGS.process_id)
    return jaxbp.parallel.is_main_process()


def _use_dtype():
    """Set up JAX for --dtype (float64: jax_enable_x64)."""
    import jax

    if FLAGS.dtype == "float64":
        jax.config.update("jax_enable_x64", True)


def _run_record(train_ds, scaler, y_scaler):
    """A checkpoint's extra: the model (`jaxbp.model_file.run_record`: the task, classes,
    feature names, target and standardisers) and the flags that define the run."""
    from jaxbp import model_file

    return {**model_file.run_record(train_ds.task, train_ds.classes, train_ds.feature_names,
                                    FLAGS.target, scaler, y_scaler),
            "flags": {name: FLAGS[name].value for name in (*_RUN_FLAGS, "epochs")}}


def _restore_run(path):
    """--resume: the run's flags from the checkpoint at `path` (`_restore_flags`), and a
    usage error if it has nothing left to run."""
    from jaxbp import checkpoint as ckpt

    if path is None or not path.is_file():
        _fail("--resume: expected --checkpoint_dir holding a checkpoint.npz of this run")
    try:
        header = ckpt.read_header(path)
    except ValueError as e:
        raise ValueError(f"--resume: {e}") from None
    where = f"the checkpoint in {path.parent}"
    _restore_flags(header["extra"], where)
    dtype = header["arrays"]["params/0/W"]["dtype"]  # an older record has no --dtype
    if dtype != FLAGS.dtype:
        _fail(f"--dtype: {where} holds {dtype} parameters, got --dtype {FLAGS.dtype}")
    if header["extra"].get("best_restored"):
        _fail(f"--resume: {path} ended with early stopping (best weights restored); "
              f"there is nothing to continue")
    if header["epoch"] >= FLAGS.epochs:
        _fail(f"--epochs: the checkpoint has already run {header['epoch']} epochs; ask for "
              f"more")


def _restore_flags(extra, where):
    """Set the run's flags from a checkpoint's run record `extra`: its "flags", or the few that
    an older record kept (_LEGACY_FLAGS). A flag not given takes the recorded value; one given
    must agree with it, or a usage error names the flag and both values; --epochs given is
    the new total. `where` names the checkpoint in messages."""
    recorded = extra["flags"] if "flags" in extra else {
        name: extra[name] for name in _LEGACY_FLAGS if name in extra}
    if not isinstance(recorded, dict):
        raise ValueError(f"{where}: run record 'flags': expected an object, got "
                         f"{recorded!r:.60}")
    for name in (*_RUN_FLAGS, "epochs"):
        if name not in recorded:
            continue
        value = _recorded_value(name, recorded[name], where)
        if not FLAGS[name].present:
            setattr(FLAGS, name, value)
        elif name != "epochs" and FLAGS[name].value != value:
            _fail(f"--{name}: {where} was trained with {_flag_text(name, value)}, got "
                  f"{_flag_text(name, FLAGS[name].value)}")


def _recorded_value(name, value, where):
    """A run record's value of flag `name`, checked by the flag's parser as a command line's."""
    flag = FLAGS[name]
    if value is None and flag.default is None:
        return None
    text = _value_text(value)
    try:
        return flag.parser.parse(text)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: its run record holds --{name} {text}, which --{name} does "
                         f"not take ({e})") from None


def _value_text(value):
    """A flag's value as the command line writes it (lists with commas)."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def _flag_text(name, value):
    """A flag with its value as the command line writes it: --hidden 128,64, --noearly_stopping."""
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if value is None:
        return f"no --{name}"
    return f"--{name} {_value_text(value) or repr('')}"


def _checkpoint_path():
    """<--checkpoint_dir>/checkpoint.npz, the directory created; None without the flag."""
    if not FLAGS.checkpoint_dir:
        return None
    directory = pathlib.Path(FLAGS.checkpoint_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _fail(f"--checkpoint_dir: cannot create {directory}: {e.strerror}")
    return directory / "checkpoint.npz"


def _saver(path, net, opt, extra, main):
    """fit's end-of-epoch hook: process 0 writes the checkpoint after the first epoch, then
    after the first epoch that ends --checkpoint_every seconds after the previous write, and
    when called with final=True. After a SIGINT or SIGTERM it writes the epoch just completed
    and stops the run (`Stopped`)."""
    from jaxbp import checkpoint as ckpt

    last = {"t": -math.inf}

    def saver(result, epoch, final=False):
        signum = None if final else _SIGNALS.received
        due = final or signum is not None or \
            time.monotonic() - last["t"] >= FLAGS.checkpoint_every
        if main and due:
            done = {"finished": final, "best_restored": final and result.stopped_early}
            ckpt.save_checkpoint(path, net=net, params=result.params, opt=opt,
                                 opt_state=result.opt_state, epoch=epoch + 1,
                                 key=result.key, history=result.history,
                                 extra={**extra, **done})
            last["t"] = time.monotonic()
        if signum is not None:
            raise Stopped(signum, f"after epoch {epoch + 1} of {FLAGS.epochs}; checkpoint "
                                  f"{path} (add --resume to the same command to continue)")

    return saver


class Stopped(BaseException):
    """A SIGINT or SIGTERM stopped the command: exit status 128 + signum, `detail` (what was
    done, what was kept) on the one line that says so. A BaseException, as KeyboardInterrupt
    is, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum, detail=""):
        super().__init__(signum, detail)
        self.signum, self.detail = signum, detail

    def __str__(self):
        name = signal.Signals(self.signum).name
        return f"stopped by {name}" + (f" {self.detail}" if self.detail else "")


class _Signals:
    """SIGINT and SIGTERM as `Stopped`: raised at once, or, while `deferred`, only recorded
    (`received`) for fit's checkpoint hook to finish the epoch, save it and raise; a second
    signal is raised at once. A signal the shell ignores (`cmd &` in a script) stays
    ignored."""

    def __init__(self):
        self.received, self._deferring = None, False

    def install(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, self._handle)

    def _handle(self, signum, frame):
        again, self.received = self.received is not None, signum
        if again or not self._deferring:
            raise Stopped(signum)

    @contextlib.contextmanager
    def deferred(self, defer=True):
        """Within the block, signals wait for the hook (when `defer`); one that arrived is
        raised as the block ends."""
        self._deferring = defer
        try:
            yield
        finally:
            self._deferring = False
        if self.received is not None:
            raise Stopped(self.received)


_SIGNALS = _Signals()


_FRESH = {"start_epoch": 0, "history": None, "params": None, "opt_state": None}


def _resume(path, net, opt, say):
    """fit's starting point from the checkpoint at `path` (every process reads it); its flags
    are restored already (`_restore_run`)."""
    from jaxbp import checkpoint as ckpt

    c = ckpt.load_checkpoint(path)
    try:
        ckpt.check_compatible(c, net, opt)
    except ValueError as e:
        if "flags" in c.extra:
            raise
        _fail(f"--resume: {path} does not record the flags of its run (an older jaxbp wrote "
              f"it): give them again, as they were ({e})")
    say(f"resuming from {path} at epoch {c.epoch}: epochs 1 to {c.epoch} of {FLAGS.epochs} "
        f"are done")
    return {"start_epoch": c.epoch, "history": c.history, "params": c.params,
            "opt_state": c.opt_state}


def _mesh(say):
    """The data-parallel mesh of --num_processes / --devices, or None for one device."""
    import jax

    import jaxbp

    if FLAGS.num_processes > 1:
        mesh = jaxbp.parallel.data_mesh()
        say(f"data parallel over {jax.device_count()} devices in {jax.process_count()} "
            f"processes: {jax.devices()[0].device_kind}")
        return mesh
    if FLAGS.devices == 1:
        return None
    available = jax.devices()
    n = len(available) if FLAGS.devices == 0 else FLAGS.devices
    if n > len(available):
        _fail(f"--devices: expected at most {len(available)} (the devices JAX sees), got {n}")
    mesh = jaxbp.parallel.data_mesh(available[:n])
    say(f"data parallel over {n} devices: {available[0].device_kind}")
    return mesh


def _fit(net, X, y, opt, start, mesh, saver, main):
    """jaxbp.fit as the flags ask, from `start` (a fresh run or a resumed one)."""
    import jaxbp

    return jaxbp.fit(net, X, y, mesh=mesh, opt=opt, epochs=FLAGS.epochs - start["start_epoch"],
                     **start,
                     batch_size=FLAGS.batch_size or None, key=FLAGS.seed, alpha=FLAGS.alpha,
                     dropout=FLAGS.dropout, schedule=FLAGS.schedule,
                     validation_fraction=FLAGS.validation_fraction,
                     early_stopping=FLAGS.early_stopping and FLAGS.validation_fraction > 0,
                     patience=FLAGS.patience, progress=main and not FLAGS.quiet,
                     on_epoch_end=saver)


def _report(result, start_epoch, net, X_test, y_test, task, say):
    """The run's last lines: the epochs (counted from 1: the first is epoch 1), then the test
    cost and accuracy (R² for regression)."""
    import jaxbp

    ev = jaxbp.evaluate(net, result.params, X_test, y_test)
    total = start_epoch + result.epochs_run
    line = f"epochs run: {total} (epochs 1 to {total}"
    if start_epoch:
        line += (f"; {result.epochs_run} by this process, {start_epoch + 1} to {total}, "
                 f"resumed after epoch {start_epoch}")
    line += ")"
    if result.stopped_early:
        line += f"; stopped early, best epoch {result.best_epoch + 1} restored"
    say(line)
    what = "R²" if task == "regression" else "accuracy"
    standardized = " (of the standardised target)" if task == "regression" else ""
    say(f"test cost: {ev['cost']:.4f}{standardized}")
    say(f"test {what}: {100 * ev['score']:.2f}%" if what == "accuracy" else
        f"test {what}: {ev['score']:.4f}")


def _load_for_inference():
    """(checkpoint, model) of --checkpoint: the `jaxbp.Checkpoint` and its
    `jaxbp.model_file.SavedModel`."""
    from jaxbp import checkpoint as ckpt
    from jaxbp import model_file

    if not FLAGS.checkpoint:
        _fail("--checkpoint: expected the path of a checkpoint.npz written by jaxbp train")
    if not pathlib.Path(FLAGS.checkpoint).is_file():
        _fail(f"--checkpoint: no such file {FLAGS.checkpoint}")
    try:
        header = ckpt.read_header(FLAGS.checkpoint)
        if header["arrays"]["params/0/W"]["dtype"] == "float64":  # trained with --dtype float64
            import jax

            jax.config.update("jax_enable_x64", True)
        c = ckpt.load_checkpoint(FLAGS.checkpoint)
        return c, model_file.SavedModel.from_checkpoint(c, where=FLAGS.checkpoint)
    except (OSError, ValueError) as e:
        raise ValueError(f"--checkpoint: {e}") from None


def _evaluate():
    import jaxbp

    c, model = _load_for_inference()
    _restore_flags(c.extra, f"the checkpoint {FLAGS.checkpoint}")  # its dataset and split
    task = _task_flag(model.task) if "task" in c.extra else "auto"
    _, test_ds = _train_test(FLAGS.test_fraction, FLAGS.seed, task, say=lambda *args: None)
    if c.extra.get("classes") is not None and test_ds.classes.tolist() != c.extra["classes"]:
        _fail(f"--checkpoint: trained on classes {c.extra['classes']}, the data now has "
              f"{test_ds.classes.tolist()}")
    y_test = _standardized(model.target_standardizer, test_ds.y)
    ev = jaxbp.evaluate(model.net, model.params, model.transform(test_ds.X), y_test)
    what = "R²" if model.task == "regression" else "accuracy"
    print(json.dumps({"checkpoint": FLAGS.checkpoint, "dataset": FLAGS.dataset,
                      "test_rows": len(test_ds.X), "cost": ev["cost"], what: ev["score"]}))


def _predict():
    """Print (or write to --output) the predictions of --checkpoint for the rows of --input."""
    from jaxbp import model_file

    _, model = _load_for_inference()
    X, names = _input_rows(model.target)
    try:
        if names is not None:
            X = X[:, model.column_order(names)]
        values = model.predict_proba(X) if FLAGS.proba else model.predict(X)
    except model_file.MismatchError as e:  # the rows or --proba do not fit the checkpoint
        flag = "--proba" if e.argument == "predict_proba" else f"--input {FLAGS.input}"
        _fail(f"{flag}: {e.problem}")
    except (TypeError, ValueError) as e:  # rows that are no numbers, or not finite
        raise ValueError(f"--input {FLAGS.input}: {e}") from None
    if FLAGS.proba:
        header = [str(label) for label in model.classes_]
    else:
        header = ["prediction"] if values.ndim == 1 else [
            f"prediction_{j + 1}" for j in range(values.shape[1])]
    _write_rows(header, values.reshape(len(values), -1))


def _input_rows(target):
    """(X, names) of --input: a .npy's array, or a .csv's rows and its header's names (None
    when its first row is all numbers: no header), without a column named `target`."""
    from jaxbp import datasets

    if not FLAGS.input:
        _fail("--input: expected a .csv or .npy file of rows to predict")
    path = pathlib.Path(FLAGS.input)
    if not path.is_file():
        _fail(f"--input: no such file {path}")
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False), None
        except ValueError as e:
            raise ValueError(f"--input: {path}: not a numeric .npy array ({e})") from None
    try:
        return datasets.load_csv_rows(path, target=target)
    except ValueError as e:
        raise ValueError(f"--input: {e}") from None


def _write_rows(header, rows):
    """The rows, one line each, comma-separated: to --output as a CSV file with the header
    row, else to stdout without it."""
    import csv

    lines = [[str(v) for v in row] for row in rows]
    if not FLAGS.output:
        csv.writer(sys.stdout, lineterminator="\n").writerows(lines)
        return
    try:
        with open(FLAGS.output, "w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerows([header, *lines])
    except OSError as e:
        raise OSError(f"--output: cannot write {FLAGS.output}: {e.strerror}") from None


def _export():
    """Write --checkpoint's model to --onnx; print what was written."""
    if not FLAGS.onnx:
        _fail("--onnx: expected the path of the .onnx file to write")
    _, model = _load_for_inference()
    try:
        proto = model.to_onnx(FLAGS.onnx)
    except OSError as e:
        raise OSError(f"--onnx: cannot write {FLAGS.onnx}: {e.strerror}") from None
    print(json.dumps({"checkpoint": FLAGS.checkpoint, "onnx": FLAGS.onnx, "task": model.task,
                      "inputs": model.n_features_in_,
                      "outputs": [o.name for o in proto.graph.output]}))


def _explain():
    from jaxbp.explain import explain

    explain(lr=FLAGS.explain_lr)


def _search():
    """Cross-validate every candidate of --grid on the training rows (populations), write the
    ranked results, then refit the best as `jaxbp train` would, into --search_dir."""
    from jaxbp import cli_search

    with contextlib.suppress(RuntimeError):  # JAX started already (a caller's own process)
        backends.use_cpu_cores()
    _output_flag()
    _use_dtype()
    try:
        grid = cli_search.parse_grid(FLAGS.grid, _grid_value)
    except cli_search.GridError as e:
        _fail(f"--grid: {e}")
    train_ds, _ = _train_test(FLAGS.test_fraction, FLAGS.seed, FLAGS.task, print)
    cands = cli_search.candidates(grid)
    splits = _folds(cli_search, train_ds)
    print(f"search: {len(cands)} candidates x {FLAGS.cv} folds = {len(cands) * FLAGS.cv} fits "
          f"of {FLAGS.dataset} ({len(train_ds.X)} training rows), as populations")
    start = time.perf_counter()
    with _SIGNALS.deferred(False):
        scores, epochs = cli_search.cross_validate(
            train_ds, splits, cands, lambda c: _candidate(train_ds, c), FLAGS.seed,
            progress=not FLAGS.quiet)
    rows = cli_search.ranked(cands, scores, epochs)
    what = "R2" if train_ds.task == "regression" else "accuracy"
    print(f"cross-validated in {time.perf_counter() - start:.1f} s; {what} on the held-out "
          f"fold, best first:\n{cli_search.table(rows, what)}")
    if not math.isfinite(rows[0]["mean_score"]):
        raise FloatingPointError("every candidate diverged on a fold; try a smaller --lr")
    _write_search(cli_search, rows, cands, what)
    best = cands[rows[0]["candidate"]]
    print("refit of the best on every training row, as jaxbp train runs it with "
          + " ".join(_flag_text(k, v) for k, v in best.items()))
    with _flags_set({**best, "checkpoint_dir": FLAGS.search_dir}):
        _train()


def _write_search(cli_search, rows, cands, what):
    """search.csv, search.json (with the command's flags) and search.png in --search_dir."""
    directory = pathlib.Path(FLAGS.search_dir)
    meta = {"dataset": FLAGS.dataset, "cv": FLAGS.cv, "score": what, "grid": FLAGS.grid,
            "flags": {name: FLAGS[name].value for name in COMMANDS["search"][1]}}
    paths = cli_search.write_results(rows, directory, meta)
    cli_search.plot_scores(rows, directory / "search.png", what,
                           f"{FLAGS.dataset}: {len(cands)} candidates, {FLAGS.cv}-fold")
    print(f"results: {paths[0]}, {paths[1]}, {directory / 'search.png'}")


def _grid_value(name, text):
    """One --grid value, parsed by the flag's own parser (hidden: widths joined by x)."""
    return FLAGS[name].parser.parse(text.replace("x", ",") if name == "hidden" else text)


def _folds(cli_search, train_ds):
    try:
        return cli_search.folds(train_ds, FLAGS.cv, FLAGS.seed)
    except ValueError as e:  # more folds than rows, or than a class has
        _fail(f"--cv: {e}")


def _candidate(train_ds, candidate):
    """(net, optimizer, per-member settings, shared fit_population keywords) of the run
    `jaxbp train` would make with the candidate's flags."""
    with _flags_set(candidate):
        return (_net_for(train_ds, train_ds.X.shape[1]), _optimizer(),
                {"lr": FLAGS.lr, "alpha": FLAGS.alpha, "dropout": FLAGS.dropout,
                 "schedule": FLAGS.schedule, "batch_size": FLAGS.batch_size or 200},
                {"epochs": FLAGS.epochs, "patience": FLAGS.patience,
                 "validation_fraction": FLAGS.validation_fraction,
                 "early_stopping": FLAGS.early_stopping and FLAGS.validation_fraction > 0})


@contextlib.contextmanager
def _flags_set(values):
    """The flags set to `values` (already parsed) inside, restored after."""
    old = {name: FLAGS[name].value for name in values}
    try:
        for name, value in values.items():
            FLAGS[name].value = value
        yield
    finally:
        for name, value in old.items():
            FLAGS[name].value = value


_RUN = {"train": _train, "search": _search, "evaluate": _evaluate, "predict": _predict,
        "export": _export, "explain": _explain}


def main(argv):
    """Run the command of argv (its flags parsed); errors are one line, see the exit status in
    this module's docstring."""
    name = _command(argv[1:])
    if not FLAGS["verbosity"].present:  # JAX's info lines ('Unable to initialize backend')
        absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        if "compilation_cache" in COMMANDS[name][1]:
            backends.compilation_cache(FLAGS.compilation_cache)
        _RUN[name]()
    except UsageError as e:
        _exit(f"jaxbp {name}: error: {e}", 2)
    except Stopped as e:
        _exit(f"jaxbp {name}: {e}", 128 + e.signum)
    except BrokenPipeError:  # `jaxbp predict ... | head`: the reader left; as `cat` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        sys.exit(128 + signal.SIGPIPE)
    except (ValueError, TypeError, OSError, ImportError, FloatingPointError) as e:
        if os.environ.get("JAXBP_DEBUG"):
            raise
        # A failed run (a file, the data, a diverging run) is one line, not a traceback;
        # JAXBP_DEBUG=1 shows the traceback.
        _exit(f"jaxbp {name}: error: {e}", 1)


def _exit(line, status):
    print(line, file=sys.stderr)
    sys.exit(status)


def _usage_exit(message, name=None):
    """A usage error before any work: the message and where to look, exit status 2."""
    where = f"jaxbp {name}" if name else "jaxbp"
    _exit(f"{where}: error: {message}\nRun '{where} --help' for "
          f"{'its flags' if name else 'the commands'}.", 2)


def _command(args):
    """The command named by `args` (what is left after the flags), checked with the flags
    given: each must be one of the command's."""
    if not args or args[0] not in COMMANDS:
        got = repr(args[0]) if args else "nothing"
        _usage_exit(f"command: expected one of {', '.join(COMMANDS)}, got {got}")
    name, takes = args[0], COMMANDS[args[0]][1]
    if len(args) > 1:
        _usage_exit(f"unexpected arguments {args[1:]}: flags start with --", name)
    for other, (_, names) in COMMANDS.items():
        given = [f for f in names if FLAGS[f].present and f not in takes]
        if given:
            _usage_exit(f"--{given[0]}: a flag of jaxbp {other}, not of jaxbp {name} (which "
                        f"takes {', '.join('--' + f for f in takes)})", name)
    return name


def _version():
    try:
        return importlib.metadata.version("jaxbp")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown: the package is not installed)"


def _overview():
    """What `jaxbp --help` prints: the commands, one line each."""
    width = max(map(len, COMMANDS))
    return "\n".join([
        "Usage: jaxbp COMMAND [--flags]       (or: python -m jaxbp COMMAND [--flags])", "",
        "Commands:",
        *(f"  {name:<{width}}  {summary}" for name, (summary, _) in COMMANDS.items()), "",
        "jaxbp COMMAND --help (or jaxbp help COMMAND) lists the command's flags; "
        "jaxbp --version prints the version.",
        "Flags of every command: --verbosity 0 shows JAX's informational log lines "
        "(hidden by default); --helpfull lists absl's flags too.",
        "Exit status: 0 done, 1 the run failed, 2 a usage error, 130 / 143 stopped by "
        "SIGINT / SIGTERM."])


def _command_help(name):
    """What `jaxbp NAME --help` prints: the command's flags only (absl's rendering)."""
    summary, names = COMMANDS[name]
    module = f"jaxbp {name}"  # the command's flags, declared key flags of a module of its own
    for flag in names:
        FLAGS.register_key_flag_for_module(module, FLAGS[flag])
    listing = FLAGS.module_help(module).strip().split("\n", 1)[1]  # without its title line
    return f"Usage: jaxbp {name} [--flags]\n\n{summary[0].upper()}{summary[1:]}.\n\n" \
           f"Flags:\n{listing}"


def _help(args):
    """Answer `jaxbp --help`, `jaxbp help [COMMAND]`, `jaxbp COMMAND --help` and exit."""
    words = [a for a in args if not a.startswith("-") and a != "help"]
    named = [w for w in words if w in COMMANDS]  # the others are flag values, or a typo
    if named:
        print(_command_help(named[0]))
    elif not words:
        print(_overview())
    else:
        _usage_exit(f"command: expected one of {', '.join(COMMANDS)}, got {words[0]!r}")
    sys.exit(0)


def _parse_command_line(argv):
    """absl's flags_parser: --version and the help requests answered here (exit status 0),
    then the flags parsed, a bad one a usage error (exit status 2). Returns argv without its
    flags."""
    args = argv[1:]
    if "--version" in args:
        print(f"jaxbp {_version()}")
        sys.exit(0)
    if "--helpfull" in args:
        print(FLAGS.get_help())
        sys.exit(0)
    if args[:1] == ["help"] or any(a in _HELP_FLAGS for a in args):
        _help(args)
    try:
        return FLAGS(argv)
    except flags.Error as e:
        _usage_exit(str(e), args[0] if args and args[0] in COMMANDS else None)


def run():
    """Entry point of `jaxbp` and `python -m jaxbp`."""
    # Deterministic GPU kernels, so that a run resumed with --resume equals the uninterrupted
    # one on a GPU too (XLA reads the flag when the backend starts; a no-op on CPU). Set
    # XLA_FLAGS=--xla_gpu_deterministic_ops=false to trade that for speed.
    backends.deterministic_gpu_ops()
    _SIGNALS.install()
    try:
        app.run(main, argv=sys.argv, flags_parser=_parse_command_line)
    except Stopped as e:  # before the command started (main says which command it stopped)
        _exit(f"jaxbp: {e}", 128 + e.signum)
