"""Honest timing for the benchmark suites.

- Compile time is measured on its own (ahead-of-time `lower(...).compile()`), never mixed into
  run times.
- Every variant is warmed up, then timed in rounds: in each round every variant of a comparison
  runs once, in an order that rotates from round to round, so machine drift hits all of them
  alike and ratios are taken within one process and one run.
- Each timed sample is `inner` back-to-back calls, chosen so a sample lasts at least `min_time`,
  ending with `block_until_ready`; the reported time per call is the median over rounds, with
  the 25th-75th percentile spread.
"""

import dataclasses
import datetime
import importlib.metadata
import json
import os
import pathlib
import platform
import re
import shutil
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np


@dataclasses.dataclass
class Prepared:
    """A variant ready to time: `once()` does one unit of work and returns something to block
    on; `compile_s` is its compile time (0 for eager peers); `units` counts what one call does
    (examples, steps), for throughput."""

    once: Callable[[], Any]
    compile_s: float = 0.0
    units: float = 1.0
    info: dict = dataclasses.field(default_factory=dict)


def block(x):
    """Wait for JAX arrays (and leave NumPy/torch results alone)."""
    return jax.block_until_ready(x)


def compile_timed(jitted, *args, **kwargs):
    """(compiled, seconds): ahead-of-time lowering and compilation of a jitted function."""
    t0 = time.perf_counter()
    compiled = jitted.lower(*args, **kwargs).compile()
    return compiled, time.perf_counter() - t0


def _time_calls(once, n):
    t0 = time.perf_counter()
    out = None
    for _ in range(n):
        out = once()
    block(out)
    return (time.perf_counter() - t0) / n


def measure(variants: dict[str, Prepared], rounds=7, min_time=0.05, warmup=2, max_inner=10_000):
    """Time every variant in interleaved rounds. Returns {name: stats} with seconds per call.

    Every variant makes the same number of calls per timed sample, calibrated so that the
    slowest one's sample takes about `min_time`: a comparison's samples then cover the same
    work and are averaged alike."""
    slowest = 0.0
    for v in variants.values():
        for _ in range(warmup):
            block(v.once())
        slowest = max(slowest, _time_calls(v.once, 1))
    calls = int(min(max_inner, max(1, np.ceil(min_time / max(slowest, 1e-9)))))
    inner = dict.fromkeys(variants, calls)
    samples = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            samples[name].append(_time_calls(variants[name].once, inner[name]))
    out = {}
    for name, ts in samples.items():
        v = variants[name]
        q1, med, q3 = np.percentile(ts, [25, 50, 75])
        out[name] = {
            "median_s": float(med), "q1_s": float(q1), "q3_s": float(q3),
            "min_s": float(min(ts)), "rounds": rounds, "inner": inner[name],
            "samples_s": [float(t) for t in ts],
            "compile_s": float(v.compile_s), "units": v.units,
            "units_per_s": float(v.units / med), **v.info,
        }
    return out


def paired_ratio(stats, slow, fast):
    """(median, q1, q3) of the per-round ratios slow/fast. The rounds interleave the variants,
    so each round's ratio compares times taken moments apart: drift of the machine between
    rounds cancels, and the quartiles say how well the ratio is resolved. Times are per unit
    of work (an example, an epoch) where the two variants' calls do different amounts of it."""
    per_unit = {k: np.asarray(stats[k]["samples_s"]) / stats[k].get("units", 1)
                for k in (slow, fast)}
    r = per_unit[slow] / per_unit[fast]
    q1, med, q3 = np.percentile(r, [25, 50, 75])
    return float(med), float(q1), float(q3)


def fmt_ratio(stats, slow, fast):
    """"1.04× (0.98–1.09)": the median per-round ratio and its quartiles."""
    med, q1, q3 = paired_ratio(stats, slow, fast)
    return f"{med:.3f}× ({q1:.2f}–{q3:.2f})"


# --- environment --------------------------------------------------------------------------
def cpu_model():
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module):
    try:
        return __import__(module).__version__
    except Exception:  # not installed, or broken: recorded as absent
        return None


JAX_CUDA_PLUGINS = ("jax-cuda13-plugin", "jax-cuda12-plugin")


def installed(dist):
    """The installed version of a distribution (pip name), or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def gpu_hints():
    """Signs that this machine has an NVIDIA GPU JAX could use: `nvidia-smi` on the PATH, a JAX
    CUDA plugin installed. (Signs only: neither proves that CUDA works.)"""
    hints = ["nvidia-smi on the PATH"] if shutil.which("nvidia-smi") else []
    return hints + [f"{d} {installed(d)} installed" for d in JAX_CUDA_PLUGINS if installed(d)]


def backend_warning(backend, jax_platforms, hints):
    """A loud line when JAX fell back to the CPU on what looks like a GPU machine: with
    JAX_PLATFORMS unset, JAX silently uses the CPU if its CUDA backend fails to start."""
    if backend == "cpu" and not jax_platforms and hints:
        return (f"WARNING: a GPU seems present ({'; '.join(hints)}) but JAX runs on CPU: "
                "set JAX_PLATFORMS=cuda")
    return None


def thread_pools():
    """The native thread pools loaded so far (NumPy's BLAS, OpenMP runtimes) and their sizes,
    as threadpoolctl (a scikit-learn dependency) reports them; torch sets its own per variant
    (`models.prepare_torch`), XLA's CPU client one thread per core."""
    from threadpoolctl import threadpool_info

    return [{k: pool.get(k) for k in ("user_api", "internal_api", "num_threads")}
            for pool in threadpool_info()]


def environment(dtype="float32"):
    dev = jax.devices()[0]
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "numpy": np.__version__,
        "torch": _version("torch"),
        "sklearn": _version("sklearn"),
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "cpu_model": cpu_model(),
        "cpu_threads": threads,
        "dtype": dtype,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax_platforms": os.environ.get("JAX_PLATFORMS", ""),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "thread_pools": thread_pools(),
    }
    env["warning"] = backend_warning(env["backend"], env["jax_platforms"], gpu_hints())
    return env


def device_line(env):
    """Where a report's numbers come from, in one line: backend, device kind and count, host."""
    return (f"{env['backend']} · {env['device_kind']} × {env['device_count']} · host CPU "
            f"{env['cpu_model']}, {env['cpu_threads']} threads")


def report_header(title, env, extra=""):
    """The top of a Markdown report: the title, the device line and any backend warning."""
    lines = [f"# {title}", "", f"**Device:** {device_line(env)}", ""]
    if env.get("warning"):
        lines += [f"**{env['warning']}**", ""]
    return lines + ([extra, ""] if extra else [])


def device_slug(env):
    """A directory name for results: the accelerator kind, or the CPU model and thread count."""
    if env["backend"] == "cpu":
        name = f"cpu-{env['cpu_model']}-{env['cpu_threads']}t"
    else:
        name = f"{env['backend']}-{env['device_kind']}"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write_json(path, payload):
    """Atomic JSON write (temporary file, then rename)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


def fmt_time(s):
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def fmt_rate(r):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if r >= scale:
            return f"{r / scale:.2f}{unit}"
    return f"{r:.1f}"


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def median(xs):
    return statistics.median(xs)
