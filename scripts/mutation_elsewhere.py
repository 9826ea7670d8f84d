"""Run the surviving mutants that a test outside mutmut's fast selection should kill.

mutmut runs each mutant against the tests of its selection only (docs/mutation.md). Some
code is checked by slower tests outside it: fit's mesh path by tests/test_parallel.py, for
example. docs/mutation-killed-elsewhere.tsv names such a survivor and the test (a pytest node
id) that kills it; this script applies each mutant (mutmut's own trampolined copy in mutants/,
switched by MUTANT_UNDER_TEST, as mutmut does) and runs that test, and records the outcome in
mutants/killed-elsewhere.json, which scripts/mutation_score.py reads: a survivor counts as
killed only when this run saw its test fail, never on the file's word alone.

    python scripts/mutation_elsewhere.py       # after `mutmut run`; then mutation_score.py
"""

import concurrent.futures
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIST = ROOT / "docs" / "mutation-killed-elsewhere.tsv"
OUT = ROOT / "mutants" / "killed-elsewhere.json"


def cases():
    rows = (line.split("\t") for line in LIST.read_text().splitlines()
            if line.strip() and not line.startswith("#"))
    return [(mutant.strip(), test.strip()) for mutant, test, *_ in rows]


def run(mutant, test):
    """'killed' if `test` fails with `mutant` switched on, 'survived' if it passes."""
    env = os.environ | {"MUTANT_UNDER_TEST": mutant}
    out = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-n0", "-p",
                          "no:cacheprovider", test], cwd=ROOT / "mutants", env=env,
                         capture_output=True, text=True, timeout=1800)
    return "killed" if out.returncode != 0 else "survived"


def main():
    check = subprocess.run([sys.executable, "-c", "import jaxbp; print(jaxbp.__file__)"],
                           cwd=ROOT / "mutants", capture_output=True, text=True, check=True)
    if "mutants" not in check.stdout:
        sys.exit(f"mutants/ does not import its own jaxbp ({check.stdout.strip()})")
    outcomes = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        runs = {pool.submit(run, mutant, test): (mutant, test) for mutant, test in cases()}
        for done in concurrent.futures.as_completed(runs):
            mutant, test = runs[done]
            outcomes[mutant] = {"test": test, "outcome": done.result()}
            print(f"{outcomes[mutant]['outcome']:9} {mutant}  ({test})", flush=True)
    OUT.write_text(json.dumps(dict(sorted(outcomes.items())), indent=1))


if __name__ == "__main__":
    main()
