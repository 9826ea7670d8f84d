"""The first check on a GPU machine: one command, a fixed time budget, nothing lost on a kill.

    python scripts/check_gpu.py             # GPU: within --budget (470 s), results under
                                            # benchmarks/results/<device>/check_gpu-<time>.*
    python scripts/check_gpu.py --cpu       # the same sequence scaled down on CPU (CI),
                                            # results in a temporary directory (or --out)

Steps, most valuable first: (a) environment facts; (b) the measured error of a float32
matmul under each precision policy; (c) the test suite on the accelerator; (d) the benchmark
suites that matter on a GPU, full size when the budget allows, else quick. Every step runs in
its own process (a hang or a crash stays contained: it is killed at its timeout), gets its
timeout from what is left of the budget, and is recorded as skipped, with the reason, when
it does not fit. The JSON and Markdown results are rewritten after every step.

This process never starts a JAX backend itself: it would hold GPU memory while the children
run. Exit status 1 if a step failed or timed out; skipped steps are listed, not failures.
"""

import argparse
import dataclasses
import datetime
import json
import math
import os
import pathlib
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402  (imports jax, starts no backend)
from jaxbp.backends import deterministic_gpu_ops  # noqa: E402

# --cpu: the pytest step runs only this file, to show the step works (the GPU run takes the
# whole suite; on a CPU the whole suite is the README's test command, which CI runs anyway).
CPU_TESTS = ["tests/test_dtypes.py", "-k", "not float64_array"]  # lowering tests: CI runs them
GPU_PYTEST_ARGS = ["--maxprocesses", "8"]  # 16 cores; pyproject's addopts say -n auto, max 4
# Benchmark suites in order of value, with rough seconds (quick, full) including the child's
# start-up: a suite runs full size when the time left covers its full estimate plus the quick
# estimates of the suites after it. GPU figures are guesses for an H100-class machine.
GPU_SUITES = {"mfu": (30, 60), "step_overhead": (15, 20), "per_sample": (45, 110),
              "autodiff": (45, 110), "peers": (35, 150), "population": (45, 150),
              "fit": (30, 70)}
# --cpu: the GPU sequence, every suite in its quick form (CI runs it: its time counts).
CPU_SUITES = {"mfu": (5, math.inf), "step_overhead": (10, math.inf), "per_sample": (15, math.inf),
              "autodiff": (15, math.inf), "peers": (25, math.inf), "population": (40, math.inf),
              "fit": (15, math.inf)}
# Steps (a)-(c): (least time worth starting with, most time given), per mode.
LIMITS = {"gpu": {"environment": (10, 90), "matmul_error": (10, 90), "pytest": (60, 240)},
          "cpu": {"environment": (5, 60), "matmul_error": (5, 60), "pytest": (25, 90)}}
RESERVE_S = 3.0  # kept back from every timeout, for writing the results at the end
TAIL = 6000  # characters of a child's output kept in the results
VERSIONS = ["jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda13-pjrt", "jax-cuda12-plugin",
            "jax-cuda12-pjrt", "numpy", "torch", "scikit-learn", "pytest", "pytest-xdist"]


# --- the runner: budget, timeouts, recording --------------------------------------------------
class StepTimeout(Exception):
    """A step's child was killed at its timeout; `tail` is what it had printed."""

    def __init__(self, message, tail=""):
        super().__init__(message)
        self.tail = tail


@dataclasses.dataclass
class Step:
    name: str
    run: Callable[[float], dict]  # timeout in seconds -> the step's record
    need_s: float  # with less than this left, the step is skipped
    cap_s: float = math.inf  # never given more than this


class Runner:
    """Runs steps against one time budget and hands every record to `on_record` (which writes
    the results) as soon as it exists. A step's record has `status`: ok, failed (the step said
    so, or raised), timeout (killed) or skipped (did not fit in what was left)."""

    def __init__(self, budget_s, on_record=lambda records: None, clock=time.monotonic):
        self.clock = clock
        self.deadline = clock() + budget_s
        self.on_record = on_record
        self.records = {}

    def left(self):
        return self.deadline - self.clock() - RESERVE_S

    def run(self, step):
        left = self.left()
        if left < step.need_s:
            record = {"status": "skipped", "reason": f"{max(left, 0):.0f} s of the budget "
                      f"left, the step needs at least {step.need_s:.0f} s"}
        else:
            timeout = min(left, step.cap_s)
            t0 = self.clock()
            try:
                record = {"status": "ok", **step.run(timeout)}
            except StepTimeout as e:
                record = {"status": "timeout", "reason": str(e), "tail": e.tail}
            except Exception as e:  # a crash of the step itself: recorded, the rest still runs
                record = {"status": "failed", "reason": f"{type(e).__name__}: {e}",
                          "tail": traceback.format_exc()[-TAIL:]}
            record.update(seconds=round(self.clock() - t0, 2), timeout_s=round(timeout, 1))
        self.records[step.name] = record
        self.on_record(self.records)
        return record

    def failures(self):
        return [n for n, r in self.records.items() if r["status"] in ("failed", "timeout")]


def run_process(cmd, timeout, env):
    """(return code, output tail) of a command run in its own process group; on timeout the
    whole group (pytest's workers too) is killed and StepTimeout raised."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=ROOT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise StepTimeout(f"killed after {timeout:.0f} s", (out or "")[-TAIL:]) from None
    return proc.returncode, out[-TAIL:]


# --- context: mode, the children's environment, where results go ------------------------------
@dataclasses.dataclass
class Context:
    cpu: bool
    out_root: pathlib.Path
    stamp: str
    env: dict  # the children's environment variables
    device_env: dict | None = None  # harness.environment() as the environment step found it
    paths: tuple | None = None  # (json, md), fixed at the first write

    @property
    def mode(self):
        return "cpu" if self.cpu else "gpu"


def children_environ(cpu):
    """JAX_PLATFORMS=cpu for --cpu; on a GPU machine cuda unless the caller chose, so a CUDA
    that fails to start is an error and not a silent fall back to the CPU. No preallocation:
    torch (the peers suite) and pytest's workers share the GPU with JAX."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    if cpu:
        env["JAX_PLATFORMS"] = "cpu"
    else:
        env.setdefault("JAX_PLATFORMS", "cuda")
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return env


def run_child(ctx, args, timeout):
    """Run this script as a child (`--child ...`) and return the JSON it wrote; raises with
    the child's output when it failed."""
    with tempfile.TemporaryDirectory() as tmp:
        result = pathlib.Path(tmp) / "result.json"
        cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--child", *args,
               "--result", str(result)]
        code, tail = run_process(cmd, timeout, ctx.env)
        if code != 0 or not result.exists():
            raise RuntimeError(f"child {args[0]} exited with {code}:\n{tail}")
        return json.loads(result.read_text())


# --- (a) environment ------------------------------------------------------------------------
def host_facts(ctx):
    """What this process can tell without starting JAX: versions, nvidia-smi, variables."""
    smi = None
    if shutil.which("nvidia-smi"):
        q = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv"]
        try:
            smi = subprocess.run(q, capture_output=True, text=True, timeout=30).stdout.strip()
        except (subprocess.TimeoutExpired, OSError) as e:
            smi = f"failed: {e}"
    names = ("CUDA_VISIBLE_DEVICES", "XLA_FLAGS", "JAX_PLATFORMS", "XLA_PYTHON_CLIENT_PREALLOCATE")
    return {"versions": {d: harness.installed(d) for d in VERSIONS},
            "nvidia_smi": smi, "gpu_hints": harness.gpu_hints(),
            "variables_given": {k: os.environ.get(k) for k in names},
            "variables_children": {k: ctx.env.get(k) for k in names},
            "cpu_model": harness.cpu_model(), "cpu_count": os.cpu_count(),
            "python": platform.python_version()}


def step_environment(ctx, timeout):
    facts = host_facts(ctx)
    try:
        facts["jax"] = run_child(ctx, ["environment"], timeout)
    except RuntimeError as e:  # CUDA did not start, say: the facts above still count
        return {"status": "failed", "reason": str(e)[-TAIL:], **facts}
    ctx.device_env = facts["jax"]["env"]
    torch = facts["jax"]["torch"]
    return {**facts, "summary": f"{harness.device_line(ctx.device_env)}; jax "
            f"{ctx.device_env['jax']}; torch {torch.get('version')} "
            f"(cuda available: {torch.get('cuda_available')})"}


def child_environment():
    import jax

    env = harness.environment()
    torch_facts = {"version": None}
    try:
        import torch

        torch_facts = {"version": torch.__version__, "cuda": torch.version.cuda,
                       "cuda_available": torch.cuda.is_available()}
        if torch_facts["cuda_available"]:
            torch_facts["device"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {"env": env, "devices": [repr(d) for d in jax.devices()],
            "default_matmul_precision": getattr(jax.config, "jax_default_matmul_precision", None),
            "torch": torch_facts}


# --- (b) the error of a float32 matmul under each precision policy ----------------------------
ERROR_DEFINITION = ("1024x1024 @ 1024x1024 float32 product of N(0, 1) matrices against a float64 "
                    "NumPy reference R: |C - R| / rms(R), max and median over the entries; "
                    "frobenius = ||C - R|| / ||R||")


def step_matmul_error(ctx, timeout):
    errors = run_child(ctx, ["matmul_error"], timeout)
    brief = ", ".join(f"{k}: {v['max']:.1e}" for k, v in errors.items())
    return {"definition": ERROR_DEFINITION, "errors": errors, "summary": f"max error {brief}"}


def child_matmul_error():
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxbp

    rng = np.random.default_rng(0)
    A, B = (rng.standard_normal((1024, 1024)).astype(np.float32) for _ in range(2))
    R = A.astype(np.float64) @ B.astype(np.float64)
    rms = float(np.sqrt(np.mean(R**2)))
    a, b = jax.device_put(A), jax.device_put(B)
    bf16 = jnp.bfloat16
    net_matmul = jax.jit(jaxbp.backends.matmul, static_argnums=0)
    cases = {
        "jnp highest": lambda: jnp.matmul(a, b, precision="highest"),
        "jnp high": lambda: jnp.matmul(a, b, precision="high"),
        "jnp default": lambda: jnp.matmul(a, b, precision="default"),
        "jnp bf16 operands, f32 accumulation": lambda: jnp.matmul(
            a.astype(bf16), b.astype(bf16), preferred_element_type=jnp.float32),
        "jaxbp precision=float32": lambda: net_matmul(jaxbp.MLP((2, 2)), a, b),
        "jaxbp precision=tf32": lambda: net_matmul(jaxbp.MLP((2, 2), precision="tf32"), a, b),
        "jaxbp matmul_dtype=bfloat16": lambda: net_matmul(
            jaxbp.MLP((2, 2), matmul_dtype="bfloat16"), a, b),
    }
    out = {}
    for name, product in cases.items():
        C = np.asarray(product(), dtype=np.float64)
        e = np.abs(C - R) / rms
        out[name] = {"max": float(e.max()), "median": float(np.median(e)),
                     "frobenius": float(np.linalg.norm(C - R) / np.linalg.norm(R))}
    return out


# --- (c) the test suite ------------------------------------------------------------------------
_COUNTS = re.compile(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?|deselected)")


def pytest_counts(output):
    """{"passed": 120, "failed": 1, ...} from pytest's closing summary line ({} if none)."""
    for line in reversed(output.strip().splitlines()):
        if re.search(r"\b(passed|failed|errors?|no tests ran)\b.* in [\d.]+s", line):
            return {kind.rstrip("s") if kind.startswith("error") else kind: int(n)
                    for n, kind in _COUNTS.findall(line)}
    return {}


def step_pytest(ctx, timeout):
    env = dict(ctx.env, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    deterministic_gpu_ops(env)
    args = CPU_TESTS if ctx.cpu else GPU_PYTEST_ARGS
    # (no -q: pyproject's addopts have one, and -qq drops the closing "N passed" line)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    code, tail = run_process(cmd, timeout, env)
    counts = pytest_counts(tail)
    return {"status": "ok" if code == 0 else "failed", "command": " ".join(cmd[1:]),
            "JAX_PLATFORMS": env.get("JAX_PLATFORMS"), "XLA_FLAGS": env["XLA_FLAGS"],
            "returncode": code, "counts": counts, "tail": tail,
            "summary": ", ".join(f"{n} {k}" for k, n in counts.items()) or f"exit {code}"}


# --- (d) benchmark suites ----------------------------------------------------------------------
def step_suite(ctx, name, full_if_s, timeout):
    quick = ctx.cpu or timeout < full_if_s
    json_path, _ = report_paths(ctx)
    args = ["suite", name, "--fig-dir", str(json_path.parent), "--fig-base",
            json_path.name.removesuffix(".json")] + (["--quick"] if quick else [])
    entry = run_child(ctx, args, timeout)
    return {"size": "quick" if quick else "full", **entry,
            "summary": SUMMARIES.get(name, lambda e: f"{len(e['records'])} records")(entry)}


def child_suite(name, quick, fig_dir, fig_base):
    import matplotlib

    matplotlib.use("Agg")
    from benchmarks.run import run_suite

    entry, _ = run_suite(name, quick, fig_dir, f"{fig_base}-{name}")
    return entry


def _summary_mfu(entry):
    recs = [r for r in entry["records"] if "policy" in r]
    if not recs:
        return entry["records"][0].get("note", "no records")
    return "; ".join(f"{r['policy']} m={r['m']}: {r['tflop_per_s']:.1f} TFLOP/s"
                     + (f" ({100 * r['mfu']:.0f}% MFU)" if r["mfu"] else "") for r in recs)


def _summary_step_overhead(entry):
    r = entry["records"][0]
    v = r["variants"]
    med, q1, q3 = r["train_step_over_jit"]
    return (f"train_step {v['train_step']['median_s'] * 1e6:.0f} µs, train_step_jit "
            f"{v['train_step_jit']['median_s'] * 1e6:.0f} µs per call: {med:.2f}× "
            f"({q1:.2f}–{q3:.2f})")


SUMMARIES = {"mfu": _summary_mfu, "step_overhead": _summary_step_overhead}


def suite_steps(ctx):
    suites = CPU_SUITES if ctx.cpu else GPU_SUITES
    names = list(suites)
    steps = []
    for i, name in enumerate(names):
        quick_s, full_s = suites[name]
        full_if = full_s + sum(suites[n][0] for n in names[i + 1:])
        steps.append(Step(f"suite {name}", lambda t, n=name, f=full_if: step_suite(ctx, n, f, t),
                          need_s=quick_s))
    return steps


# --- (e) the results ---------------------------------------------------------------------------
def report_paths(ctx):
    """(json, md) under <out>/<device>/, fixed at the first call (after the environment step;
    if that failed, the device is named from nvidia-smi or as unknown)."""
    if ctx.paths is None:
        env = ctx.device_env or fallback_env()
        out = ctx.out_root / harness.device_slug(env)
        out.mkdir(parents=True, exist_ok=True)
        base = out / f"check_gpu-{ctx.stamp}"
        ctx.paths = (base.with_suffix(".json"), base.with_suffix(".md"))
    return ctx.paths


def fallback_env():
    return {"backend": "unknown", "device_kind": "no device found", "device_count": 0,
            "cpu_model": harness.cpu_model(), "cpu_threads": os.cpu_count()}


def write_results(ctx, records, budget_s, exit_code=None):
    env = ctx.device_env or fallback_env()
    json_path, md_path = report_paths(ctx)
    payload = {"device": harness.device_line(env), "warning": env.get("warning"),
               "mode": ctx.mode, "budget_s": budget_s, "stamp": ctx.stamp,
               "exit_code": exit_code, "steps": records}
    harness.write_json(json_path, payload)
    md_path.write_text("\n".join(markdown(ctx, env, records, budget_s)) + "\n")


def markdown(ctx, env, records, budget_s):
    md = harness.report_header(f"jaxbp check_gpu ({ctx.mode} mode)", env,
                               f"{ctx.stamp} · budget {budget_s:.0f} s")
    md += [harness.markdown_table(
        ["step", "status", "seconds", "summary"],
        [[n, r["status"], r.get("seconds", "–"),
          (r.get("summary") or r.get("reason", "")).replace("\n", " ")[:300]]
         for n, r in records.items()]), ""]
    if "matmul_error" in records and "errors" in records["matmul_error"]:
        errs = records["matmul_error"]["errors"]
        md += ["## Float32 matmul error by precision policy", "", ERROR_DEFINITION + ".", "",
               harness.markdown_table(["policy", "max", "median", "frobenius"], [
                   [k, f"{v['max']:.2e}", f"{v['median']:.2e}", f"{v['frobenius']:.2e}"]
                   for k, v in errs.items()]), ""]
    for name, r in records.items():
        if name.startswith("suite ") and "markdown" in r:
            md += [f"## {name[6:]} ({r['size']})", "", r["markdown"], ""]
        if r.get("tail") and (name == "pytest" or r["status"] != "ok"):
            md += [f"## {name}: output tail", "", "```", r["tail"][-3000:], "```", ""]
    return md


# --- main ------------------------------------------------------------------------------------
def make_steps(ctx):
    limits = LIMITS[ctx.mode]

    def step(name, fn):
        need, cap = limits[name]
        return Step(name, lambda t: fn(ctx, t), need_s=need, cap_s=cap)

    return [step("environment", step_environment), step("matmul_error", step_matmul_error),
            step("pytest", step_pytest), *suite_steps(ctx)]


def check(cpu, budget_s, out_root):
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    ctx = Context(cpu=cpu, out_root=pathlib.Path(out_root), stamp=stamp,
                  env=children_environ(cpu))
    runner = Runner(budget_s, on_record=lambda records: write_results(ctx, records, budget_s))
    for step in make_steps(ctx):
        print(f"[{step.name}] {max(runner.left(), 0):.0f} s left", flush=True)
        r = runner.run(step)
        print(f"[{step.name}] {r['status']} ({r.get('seconds', 0)} s): "
              f"{r.get('summary') or r.get('reason', '')}"[:600], flush=True)
    failures = runner.failures()
    write_results(ctx, runner.records, budget_s, exit_code=int(bool(failures)))
    json_path, md_path = report_paths(ctx)
    skipped = [n for n, r in runner.records.items() if r["status"] == "skipped"]
    print(f"\nwrote {json_path} and {md_path.name}\nfailed: {', '.join(failures) or 'none'}; "
          f"skipped for the budget: {', '.join(skipped) or 'none'}")
    return int(bool(failures))


def run_as_child(args):
    if args.child == "environment":
        result = child_environment()
    elif args.child == "matmul_error":
        result = child_matmul_error()
    else:
        result = child_suite(args.suite, args.quick, args.fig_dir, args.fig_base)
    pathlib.Path(args.result).write_text(json.dumps(result))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cpu", action="store_true", help="scaled down, on CPU (CI)")
    p.add_argument("--budget", type=float, help="seconds for everything (470; --cpu: 240)")
    p.add_argument("--out", help="results root (benchmarks/results; --cpu: a temp dir)")
    p.add_argument("--child", choices=["environment", "matmul_error", "suite"],
                   help=argparse.SUPPRESS)
    p.add_argument("suite", nargs="?", help=argparse.SUPPRESS)
    for hidden in ("--result", "--fig-dir", "--fig-base"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return run_as_child(args)
    budget = args.budget or (240.0 if args.cpu else 470.0)
    out = args.out or (tempfile.mkdtemp(prefix="check_gpu-") if args.cpu
                       else ROOT / "benchmarks" / "results")
    return check(args.cpu, budget, out)


if __name__ == "__main__":
    sys.exit(main())
