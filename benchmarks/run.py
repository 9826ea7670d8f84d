"""Run the benchmark suites and write JSON, Markdown and PNG plots.

    python benchmarks/run.py --suite quick          # the CI smoke run, < 3 min on 2 CPU cores
    python benchmarks/run.py --suite full           # what the README's numbers come from
    python benchmarks/run.py --suite full --only autodiff,peers

Results go to benchmarks/results/<device>/<suite>-<UTC time>.{json,md} and one PNG per plot,
where <device> names the accelerator or the CPU model and thread count. Nothing here asserts
anything about speed: the numbers are reported, never pass/fail.
"""

import pathlib
import sys
import time

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
    payload = {"suite": _SUITE.value, "env": env, "results": {}}
    md = [f"# jaxbp benchmarks ({_SUITE.value})", "",
          f"{env['date']} · {env['backend']} · {env['device_kind']} · {env['cpu_model']}, "
          f"{env['cpu_threads']} threads · jax {env['jax']} · torch {env['torch']} · "
          f"scikit-learn {env['sklearn']} · float32 unless stated", ""]
    t_all = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        print(f"[{name}] running...", flush=True)
        result = SUITES[name](quick)
        seconds = time.perf_counter() - t0
        payload["results"][name] = {"records": result["records"], "seconds": seconds}
        md += [f"## {TITLES[name]}", "", result["markdown"], ""]
        for fig_name, fig in result["figures"].items():
            png = out / f"{base}-{fig_name}.png"
            fig.savefig(png, dpi=110)
            md += [f"![{fig_name}]({png.name})", ""]
        print(result["markdown"], f"\n[{name}] {seconds:.1f} s\n", flush=True)
        harness.write_json(out / f"{base}.json", payload)  # after each suite: nothing lost
    payload["seconds"] = time.perf_counter() - t_all
    harness.write_json(out / f"{base}.json", payload)
    (out / f"{base}.md").write_text("\n".join(md) + "\n")
    print(f"wrote {out / base}.json and .md ({payload['seconds']:.0f} s in all)")


if __name__ == "__main__":
    app.run(main)
