"""The persistent compilation cache (`jaxbp.backends.compilation_cache`): on by default for
`fit`, the estimators and the CLI, so a second process loads what the first compiled; moved
or turned off by $JAXBP_COMPILATION_CACHE or `--compilation_cache`; a cache the user gave JAX
is left alone. Each case runs in fresh processes (JAX opens its cache once per process),
without the test session's own cache (tests/conftest.py)."""

import json
import os
import subprocess
import sys

import pytest

# A small fit; prints the cache hits and misses JAX counted and a digest of the parameters.
FIT = """
import hashlib, json, warnings
import jax, numpy as np
counts = {"hits": 0, "misses": 0}
def listen(event, **kwargs):
    if event == "/jax/compilation_cache/cache_hits":
        counts["hits"] += 1
    if event == "/jax/compilation_cache/cache_misses":
        counts["misses"] += 1
jax.monitoring.register_event_listener(listen)
import jaxbp
X = np.random.default_rng(0).normal(size=(64, 5))
y = (X[:, 0] > 0).astype(int)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    r = jaxbp.fit(jaxbp.MLP((5, 8, 1), output="sigmoid"), X, y, epochs=3, progress=False)
digest = hashlib.sha256(b"".join(np.asarray(a).tobytes() for a in jax.tree.leaves(r.params)))
print(json.dumps(counts | {"params": digest.hexdigest(),
                           "warnings": [str(w.message) for w in caught]}))
"""


def run(args, tmp_path, **env):
    """Python with `args`, in a fresh process with HOME and XDG_CACHE_HOME under tmp_path and
    no cache set by the test session; env entries of None are removed."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ("JAX_COMPILATION_CACHE_DIR", "JAXBP_COMPILATION_CACHE")}
    environ |= {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    for k, v in env.items():
        if v is None:
            environ.pop(k, None)
        else:
            environ[k] = v
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                         env=environ, timeout=300)
    assert out.returncode == 0, out.stderr
    return out


def fit_in_a_process(tmp_path, **env):
    return json.loads(run(["-c", FIT], tmp_path, **env).stdout.splitlines()[-1])


def entries(directory):
    return sorted(p.name for p in directory.glob("*-cache*")) if directory.is_dir() else []


def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    first = fit_in_a_process(tmp_path)
    cache = tmp_path / "xdg" / "jaxbp" / "compilation"  # the default: $XDG_CACHE_HOME/jaxbp/...
    written = entries(cache)
    assert first["hits"] == 0 and first["misses"] > 0 and written, first
    second = fit_in_a_process(tmp_path)
    # every program the first wrote is loaded (MIN_COMPILE_SECS is 0: all of them are written)
    assert second["hits"] == len(written) >= 3, (first, second, written)
    assert second["params"] == first["params"]  # the cached program is the compiled one
    assert entries(cache) == written and first["warnings"] == second["warnings"] == []


def test_without_xdg_the_cache_is_under_home(tmp_path):
    fit_in_a_process(tmp_path, XDG_CACHE_HOME=None)
    assert entries(tmp_path / "home" / ".cache" / "jaxbp" / "compilation")


@pytest.mark.parametrize("setting", ["0", "off", "OFF", "false"])
def test_the_environment_turns_it_off(tmp_path, setting):
    counts = fit_in_a_process(tmp_path, JAXBP_COMPILATION_CACHE=setting)
    assert counts["hits"] == counts["misses"] == 0
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "home").exists()


def test_the_environment_moves_it_and_a_jax_setting_wins(tmp_path):
    fit_in_a_process(tmp_path, JAXBP_COMPILATION_CACHE=str(tmp_path / "mine"))
    assert entries(tmp_path / "mine") and not (tmp_path / "xdg").exists()
    fit_in_a_process(tmp_path, JAXBP_COMPILATION_CACHE=str(tmp_path / "other"),
                     JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_own"))
    assert entries(tmp_path / "jax_own") and not (tmp_path / "other").exists()


def test_a_directory_that_cannot_be_made_warns_and_trains(tmp_path):
    (tmp_path / "a_file").write_text("not a directory")
    counts = fit_in_a_process(tmp_path, JAXBP_COMPILATION_CACHE=str(tmp_path / "a_file" / "c"))
    assert counts["hits"] == counts["misses"] == 0
    assert counts["warnings"] == [
        f"JAXBP_COMPILATION_CACHE: cannot create {tmp_path / 'a_file' / 'c'} (Not a "
        f"directory); compiling without the persistent cache"]


def test_the_cli_flag_moves_it_or_turns_it_off(tmp_path):
    train = ["-m", "jaxbp", "train", "--dataset", "xor", "--hidden", "4", "--epochs", "2",
             "--quiet", "--plot", "", "--compilation_cache"]
    run([*train, str(tmp_path / "flagged")], tmp_path)
    assert entries(tmp_path / "flagged") and not (tmp_path / "xdg").exists()
    run([*train, "off"], tmp_path, JAXBP_COMPILATION_CACHE=str(tmp_path / "env"))
    assert not (tmp_path / "env").exists() and not (tmp_path / "xdg").exists()
