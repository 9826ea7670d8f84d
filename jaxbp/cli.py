"""The command line: `jaxbp train | evaluate | predict | explain` (also `python -m jaxbp ...`).

Usage: jaxbp COMMAND [--flags]

    jaxbp train                                   # breast_cancer, progress bar, test accuracy
    jaxbp train --dataset digits --hidden 128,64 --epochs 100 --checkpoint_dir runs/digits
    jaxbp evaluate --checkpoint runs/digits/checkpoint.npz
    jaxbp predict --checkpoint runs/digits/checkpoint.npz --input new_rows.csv
    jaxbp explain                                 # seed 001's worked example, every quantity

`jaxbp train` splits off a test set (stratified, --test_fraction), fits a standardiser on the
training rows only, trains with a validation split (--validation_fraction), then reports the
test accuracy (R² for regression) on its last lines and writes the learning-curve plot.
"""

import json
import math
import os
import pathlib
import sys
import time

from absl import app, flags

from jaxbp import backends

COMMANDS = ("train", "evaluate", "predict", "explain")
ACTIVATION_NAMES = ["relu", "leaky_relu", "tanh", "sigmoid", "gelu", "softplus", "identity"]

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "breast_cancer",
                    "A built-in dataset (breast_cancer, digits, mnist1d, xor, moons, spirals), "
                    "or a file: idx:DIR (MNIST/Fashion-MNIST IDX files), csv:PATH, npz:PATH.")
flags.DEFINE_string("target", None, "Target column of a csv: dataset (required for csv).")
flags.DEFINE_list("hidden", ["100"], "Hidden layer widths, e.g. 64,32 (empty: no hidden layer).")
flags.DEFINE_enum("activation", "relu", ACTIVATION_NAMES, "Hidden activation g.")
flags.DEFINE_enum("output", "auto", ["auto", "sigmoid", "softmax", "identity"],
                  "Output activation; auto picks sigmoid (2 classes), softmax (more) or identity "
                  "(regression).")
flags.DEFINE_enum("optimizer", "adam", ["adam", "adamw", "sgd"], "Optimizer.")
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
flags.DEFINE_string("checkpoint_dir", None, "Write checkpoint.npz here: every epoch or every "
                    "--checkpoint_every seconds, whichever is rarer, and at the end.")
flags.DEFINE_float("checkpoint_every", 30.0, "Seconds between checkpoints.", lower_bound=0.0)
flags.DEFINE_boolean("resume", False, "Continue from <checkpoint_dir>/checkpoint.npz up to "
                     "--epochs in all; without early stopping it ends exactly as an "
                     "uninterrupted run.")
flags.DEFINE_string("plot", "learning_curves.png", "PNG of the learning curves ('' for none).")
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
flags.DEFINE_string("checkpoint", None, "evaluate/predict: the checkpoint .npz to load.")
flags.DEFINE_string("input", None, "predict: rows to predict (.csv with a header, or .npy).")
flags.DEFINE_float("explain_lr", 0.01, "explain: learning rate of the SGD step shown.",
                   lower_bound=0.0)


def _fail(message):
    raise app.UsageError(message)


# load's arguments as the command line names them
_FLAG_OF = {"name": "--dataset", "target": "--target"}


def _load_dataset():
    """(data, test | None) of --dataset: test is the test set the source ships (idx:DIR)."""
    from jaxbp import datasets

    try:
        return datasets.load_with_test(FLAGS.dataset, seed=FLAGS.seed, target=FLAGS.target)
    except datasets.SpecError as e:
        _fail(f"{_FLAG_OF[e.argument]}: {e.problem}")


def _train_test(test_fraction, seed):
    """(train, test) of --dataset: the test set its source ships, else `test_fraction` of the
    rows (stratified for classification) drawn from `seed`."""
    from jaxbp import data

    train_ds, test_ds = _load_dataset()
    if test_ds is None:
        train_ds, test_ds = data.train_test_split(train_ds, test_fraction, seed=seed)
    return train_ds, test_ds


def _standardizer_record(scaler):
    """A fitted `data.Standardizer` as the checkpoint's extra holds it."""
    return {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()}


def _standardizer_of(extra):
    """The training run's `data.Standardizer`, from the checkpoint's extra."""
    from jaxbp import data

    return data.Standardizer(extra["mean"], extra["scale"])


def _net_for(ds, n_features):
    import jaxbp

    hidden = tuple(int(h) for h in FLAGS.hidden if h.strip())
    output = {"binary": "sigmoid", "multiclass": "softmax", "regression": "identity"}[ds.task]
    n_L = ds.n_outputs  # 1 (sigmoid), k (softmax) or the number of regression targets
    if FLAGS.output != "auto":
        output = FLAGS.output
        if output == "softmax" and ds.task == "binary":
            n_L = 2
    return jaxbp.MLP((n_features, *hidden, n_L), hidden=FLAGS.activation, output=output,
                     precision=FLAGS.precision)


def _optimizer():
    from jaxbp import optim

    if FLAGS.optimizer == "sgd":
        return optim.sgd(FLAGS.lr, momentum=FLAGS.momentum, nesterov=FLAGS.nesterov,
                         weight_decay=FLAGS.weight_decay)
    return optim.adam(FLAGS.lr, b1=FLAGS.beta1, b2=FLAGS.beta2,
                      weight_decay=FLAGS.weight_decay, decoupled=FLAGS.optimizer == "adamw")


def plot_history(history, path, title):
    """Learning curves: costs on the left, the validation score on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(history["epoch"], history["train_cost"], label="train cost")
    if "val_cost" in history:
        ax1.plot(history["epoch"], history["val_cost"], label="validation cost")
        ax2.plot(history["epoch"], history["val_score"], color="C2", label="validation score")
    ax1.set(xlabel="epoch", ylabel="cost J", yscale="log", title=title)
    ax2.set(xlabel="epoch", ylabel="accuracy (R² for regression)", title="validation score")
    ax1.legend()
    ax2.legend()
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _train():
    from jaxbp import data

    main = _start_processes()
    say = print if main else (lambda *args, **kwargs: None)
    train_ds, test_ds = _train_test(FLAGS.test_fraction, FLAGS.seed)
    scaler = data.Standardizer().fit(train_ds.X)  # fitted on the training rows only
    X, X_test = scaler.transform(train_ds.X), scaler.transform(test_ds.X)
    net = _net_for(train_ds, X.shape[1])
    opt = _optimizer()
    say(f"dataset {FLAGS.dataset}: {len(X)} training rows, {len(X_test)} test rows, "
        f"{X.shape[1]} features, task {train_ds.task}")
    say(f"network {net.sizes}, {net.hidden} hidden, {net.output} output, loss {net.loss}; "
        f"{type(opt).__name__} lr {FLAGS.lr}; {FLAGS.dtype}")
    path = _checkpoint_path()
    saver = None if path is None else _saver(path, net, opt, _run_record(train_ds, scaler), main)
    start = _resume(path, net, opt, say) if FLAGS.resume else _FRESH
    result = _fit(net, X, train_ds.y, opt, start, _mesh(say), saver, main)
    if saver is not None:
        saver(result, result.history["epoch"][-1], final=True)
        say(f"checkpoint: {path}")
    if FLAGS.plot and main:
        plot_history(result.history, FLAGS.plot, f"{FLAGS.dataset} {net.sizes}")
        say(f"learning curves: {FLAGS.plot}")
    _report(result, net, X_test, test_ds.y, train_ds.task, say)


def _start_processes():
    """Set up JAX for --dtype and, with --num_processes > 1, join the multi-host run (before
    any other JAX work, as jax.distributed requires). Whether this is the main process."""
    import jax

    import jaxbp

    if FLAGS.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
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


def _run_record(train_ds, scaler):
    """What a checkpoint's extra holds about the run: the data, its standardiser, the split."""
    return {"dataset": FLAGS.dataset, "task": train_ds.task,
            "classes": None if train_ds.classes is None else train_ds.classes.tolist(),
            "target": FLAGS.target, **_standardizer_record(scaler),
            "seed": FLAGS.seed, "test_fraction": FLAGS.test_fraction}


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
    """fit's end-of-epoch hook: process 0 writes the checkpoint every epoch or every
    --checkpoint_every seconds, whichever is rarer, and when called with final=True."""
    from jaxbp import checkpoint as ckpt

    last = {"t": -math.inf}

    def saver(result, epoch, final=False):
        if not main:
            return
        if final or time.monotonic() - last["t"] >= FLAGS.checkpoint_every:
            done = {"finished": final, "best_restored": final and result.stopped_early}
            ckpt.save_checkpoint(path, net=net, params=result.params, opt=opt,
                                 opt_state=result.opt_state, epoch=epoch + 1,
                                 key=result.key, history=result.history,
                                 extra={**extra, **done})
            last["t"] = time.monotonic()

    return saver


_FRESH = {"start_epoch": 0, "history": None, "params": None, "opt_state": None}


def _resume(path, net, opt, say):
    """fit's starting point from the checkpoint at `path` (every process reads it)."""
    from jaxbp import checkpoint as ckpt

    if path is None or not path.is_file():
        _fail("--resume: expected --checkpoint_dir holding a checkpoint.npz of this run")
    c = ckpt.load_checkpoint(path)
    ckpt.check_compatible(c, net, opt)
    if c.extra.get("best_restored"):
        _fail(f"--resume: {path} ended with early stopping (best weights restored); "
              f"there is nothing to continue")
    say(f"resuming from {path} at epoch {c.epoch}")
    if c.epoch >= FLAGS.epochs:
        _fail(f"--epochs: the checkpoint has already run {c.epoch} epochs; ask for more")
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
                     checkpoint=saver)


def _report(result, net, X_test, y_test, task, say):
    """The run's last lines: epochs run, then the test cost and accuracy (R² for regression)."""
    import jaxbp

    ev = jaxbp.evaluate(net, result.params, X_test, y_test)
    say(f"epochs run: {result.epochs_run}" + (f" (stopped early; best epoch "
                                                f"{result.best_epoch})" if result.stopped_early
                                                else ""))
    what = "R²" if task == "regression" else "accuracy"
    say(f"test cost: {ev['cost']:.4f}")
    say(f"test {what}: {100 * ev['score']:.2f}%" if what == "accuracy" else
        f"test {what}: {ev['score']:.4f}")


def _load_for_inference():
    from jaxbp import checkpoint as ckpt

    if not FLAGS.checkpoint:
        _fail("--checkpoint: expected the path of a checkpoint.npz written by jaxbp train")
    try:
        header = ckpt.read_header(FLAGS.checkpoint)
        if header["arrays"]["params/0/W"]["dtype"] == "float64":  # trained with --dtype float64
            import jax

            jax.config.update("jax_enable_x64", True)
        c = ckpt.load_checkpoint(FLAGS.checkpoint)
    except (OSError, ValueError) as e:
        _fail(str(e))
    return c


def _evaluate():
    import jaxbp

    c = _load_for_inference()
    extra = c.extra or {}
    FLAGS.dataset = extra.get("dataset", FLAGS.dataset)
    FLAGS.target = extra.get("target") or FLAGS.target
    _, test_ds = _train_test(extra.get("test_fraction", 0.2), extra.get("seed", 0))
    X = _standardizer_of(extra).transform(test_ds.X)
    if extra.get("classes") is not None and test_ds.classes.tolist() != extra["classes"]:
        _fail(f"--checkpoint: trained on classes {extra['classes']}, the data now has "
              f"{test_ds.classes.tolist()}")
    ev = jaxbp.evaluate(c.net, c.params, X, test_ds.y)
    what = "R²" if extra.get("task") == "regression" else "accuracy"
    print(json.dumps({"checkpoint": FLAGS.checkpoint, "dataset": FLAGS.dataset,
                      "test_rows": len(X), "cost": ev["cost"], what: ev["score"]}))


def _predict():
    import numpy as np

    import jaxbp

    c = _load_for_inference()
    if not FLAGS.input:
        _fail("--input: expected a .csv (with a header row) or .npy file of rows to predict")
    path = pathlib.Path(FLAGS.input)
    if not path.is_file():
        _fail(f"--input: no such file {path}")
    if path.suffix == ".npy":
        X = np.load(path, allow_pickle=False)
    else:
        X = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    extra = c.extra or {}
    if X.ndim != 2 or X.shape[1] != c.net.sizes[0]:
        _fail(f"--input: expected rows of {c.net.sizes[0]} features, got shape {X.shape}")
    X = _standardizer_of(extra).transform(X)
    A = np.asarray(jaxbp.predict(c.net, c.params, X))
    for r in _predictions(A, c.net.output, extra):
        print(r if np.ndim(r) == 0 else ",".join(f"{v:.6g}" for v in r))


def _predictions(A, output, extra):
    """The rows to print for the outputs A (m, n_L): A itself for regression, else each row's
    class label (a single sigmoid output: above 0.5; otherwise the largest output)."""
    import numpy as np

    from jaxbp import data

    if extra.get("task") == "regression":
        return A
    if output == "sigmoid" and A.shape[1] == 1:
        ids = (A[:, 0] > 0.5).astype(int)
    else:
        ids = np.argmax(A, axis=1)
    return data.LabelEncoder(extra["classes"]).inverse_transform(ids)


def _explain():
    from jaxbp.explain import explain

    explain(lr=FLAGS.explain_lr)


def main(argv):
    args = argv[1:]
    if not args or args[0] not in COMMANDS:
        got = args[0] if args else "nothing"
        _fail(f"command: expected one of {', '.join(COMMANDS)}, got {got!r}")
    if len(args) > 1:
        _fail(f"unexpected arguments {args[1:]}: flags start with --")
    command = {"train": _train, "evaluate": _evaluate, "predict": _predict, "explain": _explain}
    try:
        command[args[0]]()
    except (ValueError, TypeError, OSError, ImportError, FloatingPointError) as e:
        if os.environ.get("JAXBP_DEBUG"):
            raise
        # Bad input (a flag value, a file, a diverging run) is one line, not a traceback;
        # JAXBP_DEBUG=1 shows the traceback.
        print(f"jaxbp {args[0]}: error: {e}", file=sys.stderr)
        sys.exit(2)


def run():
    """Entry point of `jaxbp` and `python -m jaxbp`."""
    # Deterministic GPU kernels, so that a run resumed with --resume equals the uninterrupted
    # one on a GPU too (XLA reads the flag when the backend starts; a no-op on CPU). Set
    # XLA_FLAGS=--xla_gpu_deterministic_ops=false to trade that for speed.
    backends.deterministic_gpu_ops()
    # --help lists the main module's key flags; the main module is whatever script started us
    # (sys.argv[0]), so declare this module's flags key flags of it.
    for flag in FLAGS.get_flags_for_module(__name__):
        FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(main, argv=sys.argv)
