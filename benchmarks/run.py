"""Run the benchmark suites and write JSON, Markdown and PNG plots.

    python benchmarks/run.py --suite quick          # the CI smoke run, < 3 min on 2 CPU cores
    python benchmarks/run.py --suite full           # what the README's numbers come from
    python benchmarks/run.py --suite full --only autodiff,peers

Results go to benchmarks/results/<device>/<suite>-<UTC time>.{json,md} and one PNG per plot,
where <device> names the accelerator or the CPU model and thread count; every report names the
device at its top. JAX picks the platform: JAX_PLATFORMS=cuda makes a GPU run fail loudly
instead of falling back to the CPU (a report warns when it seems to have). Nothing here asserts
anything about speed: the numbers are reported, never pass/fail.
"""

import os
import pathlib
import sys
import time
import traceback

# Four thread pools share the cores in one process (XLA's, torch's OpenMP, NumPy's BLAS,
# scikit-learn's OpenMP). An OpenMP pool spins after its work by default, taking the cores
# from the next contender of an interleaved round; passive waiting puts it to sleep instead.
# Set before torch or scikit-learn start their pools; a value given by the user is kept. The
# reports record it (environment: "omp_wait_policy").
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402
from benchmarks.suites import SUITES, TITLES  # noqa: E402

_SUITE = flags.DEFINE_enum("suite", "quick", ["quick", "full"], "Sizes: CI smoke or full.")
_ONLY = flags.DEFINE_list("only", [], f"Run only these suites, of {', '.join(SUITES)}.")
_OUT = flags.DEFINE_string("out", str(ROOT / "benchmarks" / "results"),
                           "Directory under which <device>/ results are written.")


def run_suite(name, quick, out, base):
    """Run one suite and save its figures as out/<base>-<figure>.png. Returns its JSON entry
    (records, seconds, its Markdown table) and its Markdown section."""
    t0 = time.perf_counter()
    result = SUITES[name](quick)
    seconds = time.perf_counter() - t0
    md = [f"## {TITLES[name]}", "", result["markdown"], ""]
    for fig_name, fig in result["figures"].items():
        png = pathlib.Path(out) / f"{base}-{fig_name}.png"
        fig.savefig(png, dpi=110)
        md += [f"![{fig_name}]({png.name})", ""]
    entry = {"records": result["records"], "seconds": seconds, "markdown": result["markdown"]}
    return entry, md


def main(argv):
    del argv
    unknown = [s for s in _ONLY.value if s not in SUITES]
    if unknown:
        raise app.UsageError(f"--only: expected names from {list(SUITES)}, got {unknown}")
    import matplotlib

    matplotlib.use("Agg")
    names = _ONLY.value or list(SUITES)
    quick = _SUITE.value == "quick"
    env = harness.environment()
    stamp = env["date"].replace(":", "").replace("-", "")
    out = pathlib.Path(_OUT.value) / harness.device_slug(env)
    out.mkdir(parents=True, exist_ok=True)
    base = f"{_SUITE.value}-{stamp}"
    payload = {"device": harness.device_line(env), "warning": env["warning"],
               "suite": _SUITE.value, "env": env, "results": {}}
    md = harness.report_header(
        f"jaxbp benchmarks ({_SUITE.value})", env,
        f"{env['date']} · jax {env['jax']} · torch {env['torch']} · "
        f"scikit-learn {env['sklearn']} · float32 unless stated")
    if env["warning"]:
        print(env["warning"], flush=True)
    t_all, failed = time.perf_counter(), []
    for name in names:
        print(f"[{name}] running...", flush=True)
        try:
            payload["results"][name], section = run_suite(name, quick, out, base)
        except Exception as e:  # one suite's failure loses neither the others nor the report
            traceback.print_exc()
            failed.append(name)
            payload["results"][name] = {"error": f"{type(e).__name__}: {e}"}
            section = [f"## {TITLES[name]}", "", f"**Failed:** `{type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else ''}`", ""]
        md += section
        print(section[2], f"\n[{name}] {payload['results'][name].get('seconds', 0):.1f} s\n",
              flush=True)
        harness.write_json(out / f"{base}.json", payload)  # after each suite: nothing lost
    payload["seconds"] = time.perf_counter() - t_all
    harness.write_json(out / f"{base}.json", payload)
    (out / f"{base}.md").write_text("\n".join(md) + "\n")
    print(f"wrote {out / base}.json and .md ({payload['seconds']:.0f} s in all)")
    if failed:
        sys.exit(f"failed suites: {', '.join(failed)} (their tracebacks above)")


if __name__ == "__main__":
    app.run(main)
