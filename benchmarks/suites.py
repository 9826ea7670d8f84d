"""The benchmark suites. Each takes `quick` (the CI smoke sizes) and returns a dict with its
raw records, a Markdown section and matplotlib figures."""

import itertools
import os
import time

import jax

import jaxbp
from benchmarks import models as M
from benchmarks import peaks, population_suite
from benchmarks.harness import (
    Prepared,
    compile_timed,
    fmt_rate,
    fmt_ratio,
    fmt_time,
    markdown_table,
    measure,
    paired_ratio,
)
from benchmarks.harness import (
    median as harness_median,
)


def _rounds(quick):
    return 5 if quick else 9


# --- 1. per-sample vs vectorized ----------------------------------------------------------
def per_sample(quick):
    nets = ["seed", "medium"] if quick else ["seed", "medium", "wide"]
    ms = [1, 8, 64, 128, 512] if quick else [1, 8, 64, 128, 512, 4096]
    examples = {"seed": 512, "medium": 128, "wide": 32}  # per-sample epoch lengths
    opt = jaxbp.optim.sgd(0.01)
    records, rows, figs_data = [], [], {}
    for name in nets:
        net = M.make_net(name)
        params = M.init_params(net)
        n = examples[name] if not quick else examples[name] // 2
        _, _, X, Y = M.data(net, max(n, max(ms)))
        X, Y = jax.numpy.asarray(X), jax.numpy.asarray(Y)
        Xs, Ys = X[:, :n], Y[:, :n]
        variants = {}

        def epoch_form(fn, inner_jit, Xs=Xs, Ys=Ys, net=net, params=params, n=n):
            p = M.copy_tree(params)
            carry = {"p": p, "s": opt.init(p)}
            _, compile_s = (compile_timed(inner_jit, net, opt, carry["p"], carry["s"], Xs, Ys)
                            if inner_jit is jaxbp.per_sample._epoch_scan else
                            compile_timed(inner_jit, net, opt, carry["p"], carry["s"], Xs, Ys, 0))

            def once():
                carry["p"], carry["s"], costs = fn(net, opt, carry["p"], carry["s"], Xs, Ys)
                return costs

            return Prepared(once, compile_s, units=n)

        variants["per-example loop"] = epoch_form(jaxbp.per_sample.sgd_epoch_loop,
                                                  jaxbp.per_sample._example_step)
        variants["per-example scan"] = epoch_form(jaxbp.per_sample.sgd_epoch_scan,
                                                  jaxbp.per_sample._epoch_scan)
        _, c = compile_timed(jaxbp.per_sample._per_example_grads, net, params, Xs, Ys)
        variants["per-example vmap grads"] = Prepared(
            lambda net=net, params=params, Xs=Xs, Ys=Ys: jaxbp.per_sample.per_example_grads(
                net, params, Xs, Ys), c, units=n)
        for m in ms:
            variants[f"batch m={m}"] = M.prepare_step("jaxbp", net, opt, params, X[:, :m],
                                                      Y[:, :m])
        # The per-example scan's regime: a whole epoch in one call (8 batches of 128, 4 in the
        # quick suite), so the batch form too pays one dispatch per epoch, not per step.
        nb = min(X.shape[1], 1024)
        variants["batch m=128 epoch scan"] = M.prepare_epoch("scan", net, opt, params,
                                                             X[:, :nb], Y[:, :nb], 128)
        stats = measure(variants, rounds=_rounds(quick))
        for v, st in stats.items():
            st.pop("compiled", None)
            records.append({"net": name, "sizes": net.sizes, "variant": v, **st})
        calls, scan = "batch m=128", "batch m=128 epoch scan"  # per-round ratios per example
        for v in ("per-example loop", "per-example scan", "per-example vmap grads"):
            rows.append([name, v, fmt_rate(stats[v]["units_per_s"]),
                         fmt_ratio(stats, v, calls), fmt_ratio(stats, v, scan)])
        figs_data[name] = ([(m, stats[f"batch m={m}"]["units_per_s"]) for m in ms],
                           {v: stats[v]["units_per_s"] for v in stats if not v.startswith("b")},
                           stats[scan]["units_per_s"])
        rows.append([name, "batch m=128 (train_step calls)", fmt_rate(stats[calls]["units_per_s"]),
                     "1×", fmt_ratio(stats, calls, scan)])
        rows.append([name, "batch m=128 (epoch scan)", fmt_rate(stats[scan]["units_per_s"]),
                     fmt_ratio(stats, scan, calls), "1×"])
    md = markdown_table(["net", "form", "examples/s", "batch m=128 (train_step calls) is "
                         "faster by", "batch m=128 (epoch scan) is faster by"], rows)
    return {"records": records, "markdown": md, "figures": {"per_sample": _plot_per_sample(
        figs_data)}}


def _plot_per_sample(figs_data):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(figs_data), figsize=(5 * len(figs_data), 4), squeeze=False)
    for ax, (name, (curve, flat, scan)) in zip(axes[0], figs_data.items(), strict=True):
        ms, rates = zip(*curve, strict=True)
        ax.loglog(ms, rates, "o-", label="vectorized batch (train_step)")
        ax.loglog([128], [scan], "s", color="C1", label="vectorized m=128, epoch scan")
        for (label, rate), style in zip(flat.items(), ["--", ":", "-."], strict=False):
            ax.axhline(rate, linestyle=style, color="gray", label=label)
        ax.set(title=f"{name} {M.NETS[name][0]}", xlabel="batch size m",
               ylabel="examples / s")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# --- 2. hand-written vs jax.grad -----------------------------------------------------------
def autodiff(quick):
    nets = ["small", "medium"] if quick else ["small", "medium", "wide"]
    ms = [64, 512] if quick else [64, 512, 4096]
    policies = [None, "bfloat16"]
    opt = jaxbp.optim.adam(1e-3)
    records, rows = [], []
    for name in nets:
        for policy in policies:
            net = M.make_net(name, matmul_dtype=policy)
            params = M.init_params(net)
            for m in ms:
                _, _, X, Y = M.data(net, m)
                variants = {k: M.prepare_step(k, net, opt, params, X, Y)
                            for k in ("jaxbp", "jaxbp, workarounds off", "autodiff",
                                      "jax.nn autodiff")}
                stats = measure(variants, rounds=_rounds(quick))
                exact = M.step_flops(net, m)
                rec = {"net": name, "sizes": net.sizes, "m": m,
                       "policy": policy or "float32", "exact_matmul_flops": exact}
                for k, st in stats.items():
                    compiled = st.pop("compiled")
                    mem = compiled.memory_analysis()
                    cost = compiled.cost_analysis()
                    cost = cost[0] if isinstance(cost, list) else cost
                    st["temp_bytes"] = int(getattr(mem, "temp_size_in_bytes", -1))
                    st["xla_flops"] = float(cost.get("flops", float("nan")))
                    rec[k] = st
                rec["speedup"] = stats["autodiff"]["median_s"] / stats["jaxbp"]["median_s"]
                rec["speedup_paired"] = paired_ratio(stats, "autodiff", "jaxbp")
                rec["speedup_over_jax_nn_paired"] = paired_ratio(stats, "jax.nn autodiff",
                                                                 "jaxbp")
                # what the equations alone give, and what the CPU workarounds add to them
                rec["plain_over_jax_nn_paired"] = paired_ratio(stats, "jax.nn autodiff",
                                                               "jaxbp, workarounds off")
                rec["workarounds_gain_paired"] = paired_ratio(stats, "jaxbp, workarounds off",
                                                              "jaxbp")
                records.append(rec)
                j, a = rec["jaxbp"], rec["jax.nn autodiff"]
                rows.append([name, rec["policy"], m, fmt_time(j["median_s"]),
                             fmt_time(a["median_s"]),
                             fmt_ratio(stats, "jax.nn autodiff", "jaxbp"),
                             fmt_ratio(stats, "autodiff", "jaxbp"),
                             fmt_ratio(stats, "jax.nn autodiff", "jaxbp, workarounds off"),
                             fmt_ratio(stats, "jaxbp, workarounds off", "jaxbp"),
                             f"{j['temp_bytes'] / 2**20:.2f} / {a['temp_bytes'] / 2**20:.2f}",
                             f"{j['xla_flops'] / exact:.3f} / {a['xla_flops'] / exact:.3f}"])
    md = markdown_table(
        ["net", "matmuls", "m", "jaxbp step", "jax.grad step (jax.nn)",
         "jaxbp faster by (per-round quartiles)",
         "over jax.grad of jaxbp's own blocks",
         "workarounds off, over jax.nn", "the workarounds' gain",
         "temp MiB jaxbp / grad", "XLA flops ÷ exact 6Pm−2P₁m (jaxbp / grad)"], rows)
    return {"records": records, "markdown": md, "figures": {}}


# --- 3. peers: PyTorch, scikit-learn, NumPy -----------------------------------------------
def peers(quick):
    setups = [("small", 8192, 64)] if quick else [
        ("small", 8192, 64), ("medium", 4096, 64), ("wide", 2048, 256)]
    lr = 1e-3
    opt = jaxbp.optim.adam(lr)
    records, rows = [], []
    for name, n, b in setups:
        net = M.make_net(name)
        params = M.init_params(net)
        X_rows, labels, X, Y = M.data(net, n)
        variants = {
            "jaxbp scan": M.prepare_epoch("scan", net, opt, params, X, Y, b),
            "jaxbp loop": M.prepare_epoch("loop", net, opt, params, X, Y, b),
            "numpy": M.prepare_numpy(net, params, X, Y, b, lr),
        }
        notes = {}
        try:
            variants |= _torch_variants(net, params, X_rows, labels, b, lr, quick, notes)
        except ImportError:
            notes["torch"] = "not installed (pip install torch==2.13.0)"
        try:
            variants["sklearn MLPClassifier"] = M.prepare_sklearn(net, X_rows, labels, b, lr,
                                                                 epochs=2 if quick else 3)
        except ImportError:
            notes["sklearn"] = "not installed"
        stats = measure(variants, rounds=3 if quick else _rounds(quick), min_time=0.0, warmup=1)
        base = stats["jaxbp scan"]["units_per_s"]
        for v, st in stats.items():
            records.append({"net": name, "sizes": net.sizes, "examples": n, "batch": b,
                            "variant": v, "jaxbp_scan_faster_by": base / st["units_per_s"],
                            "jaxbp_scan_faster_by_paired": paired_ratio(stats, v, "jaxbp scan"),
                            **st})
            epoch_s = (n // b) * b / st["units_per_s"]
            rows.append([name, f"{n}/{b}", v, st["runs_on"], fmt_time(epoch_s),
                         fmt_rate(st["units_per_s"]), fmt_ratio(stats, v, "jaxbp scan"),
                         fmt_time(st["compile_s"]) if st["compile_s"] else "–"])
        torches = [v for v in stats if v.startswith("torch")]
        if torches:  # "PyTorch": its fastest configuration, against both jaxbp forms
            best = max(torches, key=lambda v: stats[v]["units_per_s"])
            vs = {k: paired_ratio(stats, best, k) for k in ("jaxbp scan", "jaxbp loop")}
            records.append({"net": name, "variant": "PyTorch (best)", "best_of": best,
                            "jaxbp_scan_faster_by_paired": vs["jaxbp scan"],
                            "jaxbp_loop_faster_by_paired": vs["jaxbp loop"]})
            rows.append([name, f"{n}/{b}", f"PyTorch at its best: {best}", "", "", "",
                         f"scan {fmt_ratio(stats, best, 'jaxbp scan')}, loop "
                         f"{fmt_ratio(stats, best, 'jaxbp loop')}", ""])
        for k, note in notes.items():
            records.append({"net": name, "variant": k, "note": note})
            rows.append([name, f"{n}/{b}", k, "", note, "", "", ""])
    md = markdown_table(["net", "examples/batch", "contender", "runs on", "epoch", "examples/s",
                         "jaxbp scan faster by", "compile"], rows)
    return {"records": records, "markdown": md, "figures": {}}


def _torch_variants(net, params, X_rows, labels, b, lr, quick, notes):
    """PyTorch at its best and the alternatives: eager with each Adam implementation (fused,
    foreach, and the for-loop that is torch's CPU default), and torch.compile of the whole
    step (fused Adam) in the modes that run on a CPU. A failed compile is noted, not hidden."""
    adams = ["fused"] if quick else ["fused", "foreach", "for-loop"]
    variants = {f"torch eager ({a} Adam)": M.prepare_torch(net, params, X_rows, labels, b, lr,
                                                           adam=a) for a in adams}
    cores = len(os.sched_getaffinity(0))
    if not quick and cores > 1 and M.torch_device() == "cpu":  # fewer threads can be faster
        variants["torch eager (fused Adam, 1 thread)"] = M.prepare_torch(
            net, params, X_rows, labels, b, lr, adam="fused", threads=1)
    for mode in [] if quick else ["default", "max-autotune-no-cudagraphs"]:
        try:
            variants[f"torch.compile {mode}"] = M.prepare_torch(net, params, X_rows, labels, b,
                                                                lr, compile_mode=mode)
        except Exception as e:  # recorded, not hidden: torch.compile is optional
            notes[f"torch.compile {mode}"] = f"failed: {type(e).__name__}: {str(e)[:200]}"
    return variants


# --- 4. whole-epoch scan vs Python loop ---------------------------------------------------
def epoch(quick):
    setups = [("small", 4096, 64), ("medium", 2048, 64)]
    if not quick:
        setups += [("small", 4096, 16), ("medium", 4096, 256)]
    opt = jaxbp.optim.adam(1e-3)
    records, rows = [], []
    for name, n, b in setups:
        net = M.make_net(name)
        params = M.init_params(net)
        _, _, X, Y = M.data(net, n)
        variants = {k: M.prepare_epoch(k, net, opt, params, X, Y, b) for k in ("scan", "loop")}
        stats = measure(variants, rounds=_rounds(quick), min_time=0.0, warmup=1)
        r = stats["loop"]["median_s"] / stats["scan"]["median_s"]
        records.append({"net": name, "examples": n, "batch": b, "scan": stats["scan"],
                        "loop": stats["loop"], "scan_faster_by": r,
                        "scan_faster_by_paired": paired_ratio(stats, "loop", "scan")})
        rows.append([name, n, b, fmt_time(stats["scan"]["median_s"]),
                     fmt_time(stats["loop"]["median_s"]), fmt_ratio(stats, "loop", "scan"),
                     fmt_time(stats["scan"]["compile_s"])])
    md = markdown_table(["net", "examples", "batch", "scan epoch", "loop epoch",
                         "scan faster by", "scan compile"], rows)
    return {"records": records, "markdown": md, "figures": {}}


# --- 5. scaling ---------------------------------------------------------------------------
def scaling(quick):
    opt = jaxbp.optim.sgd(0.01)
    grids = {
        "batch": [((784, 256, 256, 10), m) for m in ([1, 16, 256, 1024] if quick else
                                                      [1, 4, 16, 64, 256, 1024, 4096])],
        "width": [((784, w, w, 10), 256) for w in ([64, 256, 1024] if quick else
                                                    [64, 128, 256, 512, 1024, 2048])],
        "depth": [((784, *([256] * d), 10), 256) for d in ([1, 2, 4] if quick else
                                                            [1, 2, 4, 8])],
    }
    records, rows, curves = [], [], {}
    for axis, points in grids.items():
        variants, meta = {}, {}
        for sizes, m in points:
            net = jaxbp.MLP(sizes, hidden="relu", output="softmax")
            params = M.init_params(net)
            _, _, X, Y = M.data(net, m)
            key = f"{sizes} m={m}"
            variants[key] = M.prepare_step("jaxbp", net, opt, params, X, Y)
            meta[key] = (net, m)
        stats = measure(variants, rounds=_rounds(quick))
        curves[axis] = []
        for key, st in stats.items():
            st.pop("compiled", None)
            net, m = meta[key]
            flops = M.step_flops(net, m)
            gflops = flops / st["median_s"] / 1e9
            records.append({"axis": axis, "sizes": net.sizes, "m": m, "flops": flops,
                            "gflop_per_s": gflops, **st})
            curves[axis].append((flops, st["median_s"]))
            rows.append([axis, f"{net.sizes}", m, f"{flops / 1e6:.2f}",
                         fmt_time(st["median_s"]), f"{gflops:.1f}"])
    md = markdown_table(["axis", "sizes", "m", "MFLOP/step", "step", "GFLOP/s"], rows)
    return {"records": records, "markdown": md, "figures": {"scaling": _plot_scaling(curves)}}


def _plot_scaling(curves):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for axis, pts in curves.items():
        f, t = zip(*pts, strict=True)
        ax.loglog(f, t, "o-", label=f"vary {axis}")
    lo = min(min(f for f, _ in p) for p in curves.values())
    hi = max(max(f for f, _ in p) for p in curves.values())
    best = min(t / f for p in curves.values() for f, t in p)
    ax.loglog([lo, hi], [best * lo, best * hi], "k:", label="∝ FLOPs (best rate seen)")
    ax.set(xlabel="matmul FLOPs per step (6Pm − 2P₁m)", ylabel="seconds per step",
           title="train_step time against FLOPs")
    ax.legend()
    fig.tight_layout()
    return fig


# --- 6. model-FLOPs utilisation ---------------------------------------------------------------
# Each float32 policy against its own peak: true float32 (the default, lax HIGHEST) against the
# CUDA-core fp32 rate, TF32 (precision="tf32", lax DEFAULT) and bfloat16 operands with float32
# accumulation against their Tensor Core rates.
MFU_POLICIES = {"fp32": {"precision": "float32"}, "tf32": {"precision": "tf32"},
                "bf16": {"matmul_dtype": "bfloat16"}}
MFU_SIZES = (4096, 4096, 4096, 4096, 10)


def mfu(quick):
    """Model FLOPs utilisation of train_step on a GPU, 4096-wide layers, m = 4096 and 8192
    (quick: 4096), every policy timed in the same interleaved rounds. Skipped (and recorded)
    on a CPU; on a GPU missing from `peaks.PEAKS`, TFLOP/s only."""
    kind = jax.devices()[0].device_kind
    if jax.default_backend() == "cpu":
        note = f"skipped: MFU is measured on GPUs only (this run: cpu, {kind})"
        return {"records": [{"skipped": True, "note": note}], "markdown": note, "figures": {}}
    peak = peaks.lookup(kind)
    opt = jaxbp.optim.sgd(0.01)
    records, rows = [], []
    for m in [4096] if quick else [4096, 8192]:
        variants = {}
        for label, policy in MFU_POLICIES.items():
            net = jaxbp.MLP(MFU_SIZES, hidden="relu", output="softmax", **policy)
            _, _, X, Y = M.data(net, m)
            variants[label] = M.prepare_step("jaxbp", net, opt, M.init_params(net), X, Y)
        stats = measure(variants, rounds=_rounds(quick))
        flops = M.step_flops(net, m)  # the same sizes under every policy
        for label, st in stats.items():
            st.pop("compiled", None)
            tflops = flops / st["median_s"] / 1e12
            top = peak.of(label) if peak else None
            records.append({"policy": label, **MFU_POLICIES[label], "sizes": MFU_SIZES, "m": m,
                            "device_kind": kind, "tflop_per_s": tflops, "peak_tflop_per_s": top,
                            "mfu": tflops / top if top else None, **st})
            rows.append([label, m, fmt_time(st["median_s"]), f"{tflops:.1f}",
                         f"{top:g}" if top else "peak unknown",
                         f"{100 * tflops / top:.1f}%" if top else "–"])
    source = (f"Peaks ({kind}): {peak.source}." if peak else
              f"Peak unknown: {kind!r} is not in benchmarks/peaks.py, so no MFU.")
    md = (f"Net {'-'.join(map(str, MFU_SIZES))}, SGD; FLOPs = 6Pm − 2P₁m per step. {source}\n\n"
          + markdown_table(["policy", "m", "step", "TFLOP/s", "dense peak TFLOP/s", "MFU"],
                           rows))
    return {"records": records, "markdown": md, "figures": {}}


# --- 7. data parallelism: step time against device count ---------------------------------
_DEVICES_SCRIPT = """
import json, sys
import jax, numpy as np
import jaxbp
from benchmarks import models as M
from benchmarks.harness import Prepared, compile_timed, measure
n = jax.device_count()
mesh = jaxbp.parallel.data_mesh()
net = M.make_net("medium")
opt = jaxbp.optim.sgd(0.01)
out = {}
for m in (512, 4096):
    params = M.init_params(net)
    _, _, X, Y = M.data(net, m)
    Xs, Ys, w = jaxbp.parallel.shard_batch(jax.numpy.asarray(X), jax.numpy.asarray(Y), mesh)
    carry = {"p": jaxbp.parallel.replicate(params, mesh)}
    carry["s"] = jaxbp.parallel.replicate(opt.init(params), mesh)
    step = jaxbp.parallel._sharded_step
    _, c = compile_timed(step, net, opt, mesh, carry["p"], carry["s"], Xs, Ys, w)
    def once():
        carry["p"], carry["s"], J = step(net, opt, mesh, carry["p"], carry["s"], Xs, Ys, w)
        return J
    st = measure({"step": Prepared(once, c, units=m)}, rounds=int(sys.argv[1]))["step"]
    out[m] = {"median_s": st["median_s"], "q1_s": st["q1_s"], "q3_s": st["q3_s"],
              "compile_s": c}
print(json.dumps({"devices": n, "backend": jax.default_backend(),
                  "kind": jax.devices()[0].device_kind, "steps": out}))
"""


def _devices_env(n, real, root):
    """The environment of the child that runs on n devices. It inherits JAX_PLATFORMS: real
    devices are the first n visible GPUs; on a CPU, n devices are simulated."""
    import os

    env = dict(os.environ, PYTHONPATH=str(root))
    if real:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(jax.device_count())]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(ids[:n])
    else:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                            f" --xla_force_host_platform_device_count={n}").strip()
        env.setdefault("JAX_PLATFORMS", "cpu")  # as this process: JAX chose the CPU here
    return env


def devices(quick):
    """jaxbp.parallel.train_step on 1, 2, 4 devices, each count in its own process. On a GPU
    machine these are real GPUs (counts above the number present are recorded as skipped); on a
    CPU the devices are simulated (--xla_force_host_platform_device_count): they share the
    same cores, so this measures the overhead of sharding and the all-reduce, not a speed-up.
    A child that ends up on another backend than this process is recorded as an error."""
    import json
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parent.parent
    backend = jax.default_backend()
    real = backend != "cpu"
    records, rows = [], []
    for n in [1, 2] if quick else [1, 2, 4]:
        if real and n > jax.device_count():
            records.append({"devices": n, "skipped": f"{jax.device_count()} device(s) here"})
            rows.append([n, f"skipped: {jax.device_count()} device(s) here", "", ""])
            continue
        out = subprocess.run([sys.executable, "-c", _DEVICES_SCRIPT, str(_rounds(quick))],
                             capture_output=True, text=True, env=_devices_env(n, real, root),
                             cwd=root, timeout=600)
        r = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None
        if r is None or r["backend"] != backend:
            error = (out.stderr[-500:] if r is None else
                     f"the child ran on {r['backend']}, this process on {backend}")
            records.append({"devices": n, "error": error})
            rows.append([n, "failed", "", ""])
            continue
        records.append(r)
        for m, st in r["steps"].items():
            rows.append([n, m, fmt_time(st["median_s"]), fmt_time(st["compile_s"])])
    what = f"real {backend} devices" if real else (
        "simulated CPU devices sharing the host's cores (this measures overhead, not speed-up)")
    md = (f"Devices: {what}.\n\n" +
          markdown_table(["devices", "m", "step (784-256-256-10, SGD)", "compile"], rows))
    return {"records": records, "markdown": md, "figures": {}}


# --- 8. a whole fit against scikit-learn ----------------------------------------------------
def fit(quick):
    """Wall time of a whole `jaxbp.fit` against scikit-learn's MLPClassifier.fit: the same
    rows (standardised), architecture (one hidden layer of 100 relu units), Adam 1e-3,
    alpha 1e-4, batch 200 and number of epochs, no early stopping: scikit-learn's defaults.
    jaxbp's compile (its first fit of these shapes) is timed apart; both take the median of
    interleaved repeats, each a fresh fit from its own seed. jaxbp in float32 (its default)
    against scikit-learn given float32 and float64 rows (it computes in their dtype); the
    first fit, compiling included, is what a new process waits for without a cache."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from jaxbp import data, datasets

    names = ["breast_cancer"] if quick else ["breast_cancer", "digits", "mnist1d"]
    epochs = 20 if quick else 200
    records, rows = [], []
    for name in names:
        ds = datasets.load(name)
        X = data.Standardizer().fit(ds.X).transform(ds.X)
        out = (1, "sigmoid") if ds.n_classes == 2 else (ds.n_classes, "softmax")
        net = jaxbp.MLP((X.shape[1], 100, out[0]), output=out[1])
        seeds = iter(range(10**6))

        def jaxbp_fit(net=net, X=X, y=ds.y, seeds=seeds):
            return jaxbp.fit(net, X, y, opt=jaxbp.optim.adam(1e-3), epochs=epochs,
                             batch_size=200, alpha=1e-4, key=next(seeds), progress=False).params

        def sklearn_fit(dtype, X=X, y=ds.y, seeds=seeds):
            def fit_once():
                clf = MLPClassifier((100,), alpha=1e-4, batch_size=200, learning_rate_init=1e-3,
                                    max_iter=epochs, tol=0.0, n_iter_no_change=10**9,
                                    random_state=next(seeds))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    return clf.fit(X.astype(dtype), y)  # it computes in X's dtype
            return fit_once

        t0 = time.perf_counter()
        jax.block_until_ready(jaxbp_fit())  # the first fit compiles
        first = time.perf_counter() - t0
        stats = measure({"jaxbp": Prepared(jaxbp_fit),
                         "scikit-learn float32": Prepared(sklearn_fit("float32")),
                         "scikit-learn float64": Prepared(sklearn_fit("float64"))},
                        rounds=3 if quick else 5, min_time=0.0, warmup=0)
        records.append({"dataset": name, "rows": len(X), "epochs": epochs, "batch": 200,
                        "jaxbp": stats["jaxbp"], "sklearn_float32": stats["scikit-learn float32"],
                        "sklearn_float64": stats["scikit-learn float64"],
                        "jaxbp_first_fit_s": first,
                        "jaxbp_faster_than_float32_paired": paired_ratio(
                            stats, "scikit-learn float32", "jaxbp"),
                        "jaxbp_faster_than_float64_paired": paired_ratio(
                            stats, "scikit-learn float64", "jaxbp")})
        rows.append([name, len(X), epochs, fmt_time(stats["jaxbp"]["median_s"]),
                     fmt_time(stats["scikit-learn float32"]["median_s"]),
                     fmt_time(stats["scikit-learn float64"]["median_s"]),
                     fmt_ratio(stats, "scikit-learn float32", "jaxbp"),
                     fmt_ratio(stats, "scikit-learn float64", "jaxbp"), fmt_time(first)])
    md = markdown_table(["dataset", "rows", "epochs", "jaxbp fit (float32)",
                         "scikit-learn fit, float32", "scikit-learn fit, float64",
                         "jaxbp faster than float32 by", "than float64 by",
                         "jaxbp first fit (with compiling)"], rows)
    return {"records": records, "markdown": md, "figures": {}}


# --- 9. the checked step's overhead --------------------------------------------------------
def step_overhead(quick):
    """Per-call time of the checked `jaxbp.train_step` against the unchecked jitted
    `train_step_jit` it wraps: the 30-64-32-1 net (relu, sigmoid), Adam, m = 32, the regime
    where a step is mostly dispatch. X and Y are put on the device once; every call of either
    step takes a new batch, columns 32i..32i+32, by a jitted slice, so train_step checks a
    fresh array each call as in a training loop. "slices alone" is that slicing by itself."""
    m, nb = 32, 64
    net = M.make_net("small")
    opt = jaxbp.optim.adam(1e-3)
    params = M.init_params(net)
    _, _, X, Y = M.data(net, m * nb)
    X, Y = jax.device_put(X), jax.device_put(Y)
    take = jax.jit(lambda A, i: jax.lax.dynamic_slice_in_dim(A, i * m, m, axis=1))
    batch = itertools.count()

    def prepared(step):
        p = M.copy_tree(params)
        carry = {"p": p, "s": opt.init(p)}

        def once():
            i = next(batch) % nb
            carry["p"], carry["s"], J = step(net, opt, carry["p"], carry["s"], take(X, i),
                                             take(Y, i))
            return J

        return Prepared(once, units=m)

    def slices():
        i = next(batch) % nb
        return take(X, i), take(Y, i)

    variants = {"train_step": prepared(jaxbp.train_step),
                "train_step_jit": prepared(jaxbp.train_step_jit),
                "slices alone": Prepared(slices, units=m)}
    stats = measure(variants, rounds=_rounds(quick))
    ratio = paired_ratio(stats, "train_step", "train_step_jit")
    records = [{"sizes": net.sizes, "m": m, "optimizer": "adam", "variants": stats,
                "train_step_over_jit": ratio}]
    us = lambda st: f"{st['median_s'] * 1e6:.1f} ({st['q1_s'] * 1e6:.1f}–{st['q3_s'] * 1e6:.1f})"  # noqa: E731
    rows = [[v, us(st)] for v, st in stats.items()]
    md = (markdown_table(["call (30-64-32-1, Adam, m = 32)", "µs per call, median (quartiles)"],
                         rows) + "\n\ntrain_step ÷ train_step_jit, per-round ratio: "
          + fmt_ratio(stats, "train_step", "train_step_jit"))
    return {"records": records, "markdown": md, "figures": {}}


# --- 10. the first run of a process: compilation, and the persistent cache ------------------------
# One estimator fit, timed in its own process after the imports and the data: the first fit
# (compiling, or loading from the cache), then a second of the same shapes (warm).
_FIRST_FIT = """
import json, sys, time, warnings
import numpy as np
from jaxbp import data, datasets
name, which = sys.argv[1], sys.argv[2]
ds = datasets.load(name)
X = data.Standardizer().fit(ds.X).transform(ds.X)
if which == "jaxbp":
    from jaxbp.sklearn import MLPClassifier
else:
    from sklearn.neural_network import MLPClassifier
warnings.simplefilter("ignore")
times = []
for seed in (0, 1):
    t0 = time.perf_counter()
    MLPClassifier(random_state=seed).fit(X, ds.y)
    times.append(time.perf_counter() - t0)
print(json.dumps({"first_fit_s": times[0], "warm_fit_s": times[1]}))
"""


def _process(args, cache):
    """(wall seconds, last stdout line) of `python args` in a fresh process with the
    persistent compilation cache at `cache` ("off": none)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["JAXBP_COMPILATION_CACHE"] = str(cache)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                         check=True, timeout=900)
    return time.perf_counter() - t0, out.stdout.strip().splitlines()[-1]


def first_run(quick):
    """What a user waits for in a new process, per dataset: `jaxbp train --dataset D --quiet
    --plot ''` (its defaults: 100 relu units, Adam, early stopping) as a whole process, and
    the estimator's first `fit` (scikit-learn's defaults; the time of the fit call, after the
    imports) next to a second fit in the same process (warm) and scikit-learn's own fit. Each
    jaxbp timing three ways: without the persistent compilation cache ("off"), with an empty
    one ("cold": it compiles and writes), and in a second process that finds the first's
    entries ("cached"). Interleaved rounds; medians."""
    import json
    import tempfile

    names = ["breast_cancer"] if quick else ["breast_cancer", "digits", "mnist1d"]
    rounds = 1 if quick else 3
    records, rows = [], []
    for name in names:
        t = {k: [] for k in ("train off", "train cold", "train cached", "fit off", "fit cold",
                             "fit cached", "fit warm", "sklearn fit")}
        for _ in range(rounds):
            with tempfile.TemporaryDirectory() as train_cache, \
                    tempfile.TemporaryDirectory() as fit_cache:
                train = ["-m", "jaxbp", "train", "--dataset", name, "--quiet", "--plot", ""]
                fit = ["-c", _FIRST_FIT, name, "jaxbp"]
                t["train off"].append(_process(train, "off")[0])
                for kind, cache in (("cold", train_cache), ("cached", train_cache)):
                    t[f"train {kind}"].append(_process(train, cache)[0])
                for kind, cache in (("off", "off"), ("cold", fit_cache), ("cached", fit_cache)):
                    one = json.loads(_process(fit, cache)[1])
                    t[f"fit {kind}"].append(one["first_fit_s"])
                t["fit warm"].append(one["warm_fit_s"])
                sk = ["-c", _FIRST_FIT, name, "sklearn"]
                t["sklearn fit"].append(json.loads(_process(sk, "off")[1])["first_fit_s"])
        med = {k: harness_median(v) for k, v in t.items()}
        records.append({"dataset": name, "rounds": rounds, "seconds": t, "median_s": med})
        rows.append([name, *(f"{med[k]:.2f} s" for k in t)])
    md = markdown_table(["dataset", "jaxbp train, no cache", "jaxbp train, empty cache",
                         "jaxbp train, second process", "estimator 1st fit, no cache",
                         "1st fit, empty cache", "1st fit, second process",
                         "2nd fit (warm)", "scikit-learn fit"], rows)
    return {"records": records, "markdown": md, "figures": {}}


# --- 11. L-BFGS: on the device, driven by SciPy, and scikit-learn's -------------------------------
def lbfgs(quick):
    """solver='lbfgs' three ways, per dataset (standardised, stratified 80/20 split, 100 relu
    units, alpha 1e-4, max_iter 200 with tol 0, so that each runs to 200 iterations unless its
    ftol rule or line search stops it first): jaxbp's L-BFGS as one compiled while_loop on
    the device (`jaxbp.lbfgs.minimize`, float32), the same objective driven by SciPy's
    L-BFGS-B from the host (`models.scipy_lbfgs`, float32), and scikit-learn's MLPClassifier
    (its init; float64 and float32). Same initial weights for the two jaxbp variants; time per
    whole run (median of interleaved rounds; jaxbp's compilation apart), iterations, final J,
    test accuracy."""
    names = ["breast_cancer"] if quick else ["breast_cancer", "digits", "mnist1d"]
    records, rows = [], []
    for name in names:
        record, more = _lbfgs_on(name, iters=20 if quick else 200, rounds=3 if quick else 5)
        records.append(record)
        rows += more
    md = markdown_table(["dataset", "L-BFGS", "time per run", "iterations", "final J",
                         "test accuracy"], rows)
    return {"records": records, "markdown": md, "figures": {}}


def _lbfgs_on(name, iters, rounds):
    """The lbfgs suite's record and table rows for one dataset."""
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    from jaxbp import data, datasets
    from jaxbp import lbfgs as jl
    from jaxbp.validate import targets_from_labels

    ds = datasets.load(name)
    X_tr, X_te, y_tr, y_te = train_test_split(ds.X, ds.y, test_size=0.2, random_state=0,
                                              stratify=ds.y)
    scaler = data.Standardizer().fit(X_tr)
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    k = ds.n_classes
    net = jaxbp.MLP((X_tr.shape[1], 100, 1 if k == 2 else k),
                    output="sigmoid" if k == 2 else "softmax")
    params = jaxbp.init(net, jax.random.key(0))
    cols = (jax.numpy.asarray(X_tr.T, "float32"),
            jax.numpy.asarray(targets_from_labels(net, y_tr), "float32"),
            jax.numpy.ones((1, len(y_tr)), "float32"))
    out = {}

    def device():
        out["jaxbp on device"] = jl.minimize(net, params, *cols, 1e-4, max_iter=iters, tol=0.0)
        return out["jaxbp on device"][0]

    def scipy_driven():
        out["jaxbp + SciPy"] = M.scipy_lbfgs(net, params, *cols, 1e-4, max_iter=iters, tol=0.0)
        return out["jaxbp + SciPy"][0]

    def sklearn(dtype):
        def run():
            clf = MLPClassifier((100,), solver="lbfgs", alpha=1e-4, max_iter=iters, tol=0.0,
                                random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                out[f"scikit-learn {dtype}"] = clf.fit(X_tr.astype(dtype), y_tr)
        return run

    t0 = time.perf_counter()
    jax.block_until_ready(device())
    compile_s = time.perf_counter() - t0
    scipy_driven()  # its evaluation program compiles here
    variants = {"jaxbp on device": Prepared(device, compile_s=compile_s),
                "jaxbp + SciPy": Prepared(scipy_driven),
                "scikit-learn float64": Prepared(sklearn("float64")),
                "scikit-learn float32": Prepared(sklearn("float32"))}
    stats = measure(variants, rounds=rounds, min_time=0.0, warmup=0)
    accuracy, runs = {}, {}
    for v in ("jaxbp on device", "jaxbp + SciPy"):
        p, res = out[v]
        A = np.asarray(jaxbp.predict(net, p, X_te))
        accuracy[v] = float(np.mean(((A[:, 0] > 0.5).astype(int) if k == 2 else
                                     A.argmax(axis=1)) == y_te))
        runs[v] = (int(res.nit), float(res.fun))
    for dtype in ("float64", "float32"):
        clf = out[f"scikit-learn {dtype}"]
        accuracy[f"scikit-learn {dtype}"] = float(clf.score(X_te.astype(dtype), y_te))
        runs[f"scikit-learn {dtype}"] = (int(clf.n_iter_), float(clf.loss_))
    record = {"dataset": name, "train_rows": len(y_tr), "max_iter": iters, "variants": stats,
              "accuracy": accuracy, "iterations_and_J": runs, "compile_s": compile_s,
              "device_faster_than_scipy": paired_ratio(stats, "jaxbp + SciPy",
                                                       "jaxbp on device"),
              "device_faster_than_sklearn64": paired_ratio(stats, "scikit-learn float64",
                                                           "jaxbp on device")}
    rows = [[name, v, fmt_time(st["median_s"]), runs[v][0], f"{runs[v][1]:.4g}",
             f"{accuracy[v]:.4f}"] for v, st in stats.items()]
    rows.append([name, "on device faster than SciPy-driven by (per-round quartiles)",
                 fmt_ratio(stats, "jaxbp + SciPy", "jaxbp on device"), "", "", ""])
    rows.append([name, "on device faster than scikit-learn float64 by",
                 fmt_ratio(stats, "scikit-learn float64", "jaxbp on device"), "", "", ""])
    rows.append([name, "jaxbp compile (first run)", fmt_time(compile_s), "", "", ""])
    return record, rows

SUITES = {"per_sample": per_sample, "autodiff": autodiff, "peers": peers, "epoch": epoch,
          "scaling": scaling, "mfu": mfu, "devices": devices, "fit": fit,
          "step_overhead": step_overhead, "first_run": first_run, "lbfgs": lbfgs,
          "population": population_suite.population}
TITLES = {
    "per_sample": "1. Per-sample vs vectorized (examples/s; SGD)",
    "autodiff": "2. Hand-written backward vs jax.grad (same step; Adam)",
    "peers": "3. Peers: one epoch of mini-batch Adam, same net, init, data and batch",
    "epoch": "4. Whole-epoch lax.scan vs a Python loop of train_step",
    "scaling": "5. Scaling of train_step (SGD)",
    "mfu": "6. GPU model-FLOPs utilisation (fp32, TF32, bf16 against their own peaks)",
    "devices": "7. Data parallelism: step time against device count",
    "fit": "8. A whole fit against scikit-learn's MLPClassifier (its defaults, no early stop)",
    "step_overhead": "9. Per-call overhead of the checked train_step over train_step_jit",
    "first_run": "10. A new process: compilation and the persistent compilation cache",
    "lbfgs": "11. L-BFGS: on the device, driven by SciPy from the host, and scikit-learn's",
    "population": "12. Many models at once: throughput against population size, a 30-fit search",
}
