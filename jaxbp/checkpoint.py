"""Checkpoints: one `.npz` holding the arrays and a JSON header, written atomically, never
unpickled.

Header (the UTF-8 JSON bytes of the uint8 array "__header__"): format name and version, the
`MLP` config, the optimizer class and hyperparameters, epoch, history, the caller's `extra`
dict, the PRNG key's kind, and a manifest of every array's shape and dtype. Arrays:
"params/<l>/W", "params/<l>/b", "opt_state/<i>" (the leaves of the optimizer state in tree
order), "key" (the key's raw uint32 bits).
"""

import dataclasses
import io
import json
import os
import pathlib
import tempfile
import zipfile
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import optim, validate
from jaxbp.model import MLP

FORMAT, VERSION = "jaxbp-checkpoint", 1


class Checkpoint(NamedTuple):
    net: MLP
    params: Any
    opt: Any
    opt_state: Any
    epoch: int
    key: Any
    history: dict
    extra: dict


def _net_config(net):
    return {"sizes": list(net.sizes), "hidden": net.hidden, "output": net.output,
            "loss": net.loss, "matmul_dtype": net.matmul_dtype}


def save_checkpoint(path, *, net, params, opt=None, opt_state=None, epoch=0, key=None,
                    history=None, extra=None):
    """Write everything needed to resume training to `path` (.npz), atomically: a temporary
    file in the same directory, flushed and fsynced, then renamed over the old checkpoint."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(f"path: expected a file path for the checkpoint, got directory {path}")
    if not path.parent.is_dir():
        raise ValueError(f"path: the directory {path.parent} does not exist")
    params = validate.params(net, params)
    if (opt is None) != (opt_state is None):
        raise ValueError("opt_state: expected opt and opt_state together (both or neither), "
                         f"got opt={type(opt).__name__} and opt_state={type(opt_state).__name__}")
    arrays = {}
    for l, (W, b) in enumerate(params):
        arrays[f"params/{l}/W"], arrays[f"params/{l}/b"] = np.asarray(W), np.asarray(b)
    opt_header = None
    if opt is not None:
        optim.check(opt, opt_state, params)
        opt_header = {"class": type(opt).__name__, **dataclasses.asdict(opt)}
        for i, leaf in enumerate(jax.tree.leaves(opt_state)):
            arrays[f"opt_state/{i}"] = np.asarray(leaf)
    key_header = None
    if key is not None:
        typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        arrays["key"] = np.asarray(jax.random.key_data(key) if typed else key)
        key_header = {"typed": bool(typed)}
    header = {"format": FORMAT, "version": VERSION, "net": _net_config(net), "opt": opt_header,
              "epoch": int(epoch), "key": key_header, "history": history or {},
              "extra": extra or {},
              "arrays": {k: [list(v.shape), v.dtype.name] for k, v in arrays.items()}}
    try:
        blob = json.dumps(header).encode()
    except TypeError as e:
        raise TypeError(f"history/extra: expected JSON-serialisable values ({e})") from None
    arrays["__header__"] = np.frombuffer(blob, np.uint8)

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def _bad(path, what):
    return ValueError(f"{path}: {what}")


def load_checkpoint(path):
    """Read a checkpoint written by `save_checkpoint`. Never unpickles; a truncated, corrupted
    or foreign file raises ValueError naming the file and what is wrong."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise _bad(path, "not a jaxbp checkpoint: not an .npz (zip) file, or truncated")
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            files = set(f.files)
            if "__header__" not in files:
                raise _bad(path, "not a jaxbp checkpoint (no __header__)")
            header = json.loads(f["__header__"].tobytes().decode())
            arrays = {k: f[k] for k in files if k != "__header__"}
    except ValueError as e:
        if str(e).startswith(str(path)):
            raise
        if "allow_pickle" in str(e) or "pickle" in str(e).lower():
            raise _bad(path, "holds pickled objects, which jaxbp never loads") from None
        raise _bad(path, f"not a readable checkpoint ({e})") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
        raise _bad(path, f"truncated or corrupted ({type(e).__name__}: {e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _bad(path, f"not a jaxbp checkpoint (format {header.get('format')!r})")
    if header.get("version", 0) > VERSION:
        raise _bad(path, f"written by a newer jaxbp (format version {header['version']} > "
                         f"{VERSION})")
    manifest = header.get("arrays", {})
    if set(manifest) != set(arrays):
        raise _bad(path, f"arrays {sorted(set(manifest) ^ set(arrays))} do not match the header")
    for k, (shape, dtype) in manifest.items():
        if list(arrays[k].shape) != shape or arrays[k].dtype.name != dtype:
            raise _bad(path, f"array {k} is {arrays[k].shape} {arrays[k].dtype}, the header "
                             f"says {tuple(shape)} {dtype}")
    try:
        cfg = header["net"]
        net = MLP(tuple(cfg["sizes"]), cfg["hidden"], cfg["output"], cfg["loss"],
                  cfg["matmul_dtype"])
        params = tuple((jnp.asarray(arrays[f"params/{l}/W"]), jnp.asarray(arrays[f"params/{l}/b"]))
                       for l in range(net.L))
        params = validate.params(net, params)
    except (KeyError, TypeError, ValueError) as e:
        raise _bad(path, f"inconsistent network or parameters ({e})") from None
    opt = state = None
    if header["opt"] is not None:
        cfg = dict(header["opt"])
        cls = {"SGD": optim.SGD, "Adam": optim.Adam}.get(cfg.pop("class"))
        if cls is None:
            raise _bad(path, f"unknown optimizer {header['opt']['class']!r}")
        opt = cls(**cfg)
        template = opt.init(params)
        leaves = [jnp.asarray(arrays[f"opt_state/{i}"])
                  for i in range(len(jax.tree.leaves(template)))]
        state = jax.tree.unflatten(jax.tree.structure(template), leaves)
    key = None
    if header["key"] is not None:
        bits = jnp.asarray(arrays["key"])
        key = jax.random.wrap_key_data(bits) if header["key"]["typed"] else bits
    return Checkpoint(net, params, opt, state, header["epoch"], key, header["history"],
                      header["extra"])


def check_compatible(ckpt, net):
    """Raise if a checkpoint's network is not `net` (e.g. resuming with another --hidden)."""
    if ckpt.net != net:
        raise ValueError(f"checkpoint: expected a network {_net_config(net)}, the checkpoint "
                         f"holds {_net_config(ckpt.net)}")
