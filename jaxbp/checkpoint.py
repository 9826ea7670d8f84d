"""Checkpoints: one `.npz` file holding the arrays and a JSON header, written atomically and
loaded without unpickling.

File format, version 1 (an ordinary `np.savez` archive, one `.npy` member per array):

- "__header__": uint8 array, the UTF-8 bytes of a JSON object {"format": "jaxbp-checkpoint",
  "version": 1, "net": {sizes, hidden, output, loss, matmul_dtype, precision (optional)},
  "opt": null or {"class": "SGD" | "Adam", "hyperparameters": {...}}, "epoch": int, "key":
  null or {"typed": bool, "impl": str or null}, "history": {name: [numbers]}, "extra": {...},
  "arrays": {name: {"shape": [...], "dtype": str}}}. (Python's JSON dialect: NaN and
  Infinity are allowed.)
- "params/<l>/W", "params/<l>/b" for l = 0..L-1: W^{l+1}, b^{l+1}.
- "opt_state/<field>/<l>/W", "opt_state/<field>/<l>/b" for the params-shaped fields of the
  optimizer state (SGD's velocity, Adam's mu and nu), "opt_state/<field>" for the others
  (Adam's count). SGD without momentum stores no state arrays.
- "key": the PRNG key's raw uint32 bits (`jax.random.key_data`); the header says whether it
  was a typed key (and its impl) or a legacy uint32 key.

The name, shape and dtype of every array follow from the header's net, params dtype, opt and
key. The loader checks the header's manifest against them, and every stored array against the
manifest, before it reads any array data; any disagreement is a `CheckpointError` (a
ValueError) naming the file and what is wrong.
"""

import contextlib
import dataclasses
import errno
import json
import math
import os
import pathlib
import secrets
import struct
import zipfile
import zlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import optim, validate
from jaxbp.model import MLP, check_key, default_dtype

FORMAT = "jaxbp-checkpoint"
VERSION = 1
HEADER = "__header__"

_NET_FIELDS = ("sizes", "hidden", "output", "loss", "matmul_dtype", "precision")
_NET_OPTIONAL = ("precision",)  # absent from files written before it existed: its default
_ARCHITECTURE = ("sizes", "hidden", "output", "loss")  # the others are the compute policy
# A checkpoint names the optimizer's class; its fields restore it through the class's first
# factory in the registry (AdamW is Adam with decoupled=True: "Adam" with that field).
_OPTIMIZERS = {}
for _entry in optim.OPTIMIZERS.values():
    _OPTIMIZERS.setdefault(_entry.cls.__name__, (_entry.cls, _entry.factory))
_PARAM_DTYPES = ("float32", "float64")
_HEADER_KEYS = ("format", "version", "net", "opt", "epoch", "key", "history", "extra",
                "arrays")
_ZIP_MAGIC = b"PK\x03\x04"  # what np.load looks for to treat a file as .npz
# What reading a damaged zip member can raise (RuntimeError: an encrypted member;
# NotImplementedError: an unknown compression; ValueError: numpy's .npy reader).
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
                RuntimeError, ValueError, struct.error)


class CheckpointError(ValueError):
    """A file that is not a loadable jaxbp checkpoint: foreign, truncated, corrupted, pickled,
    from a newer jaxbp, or inconsistent. The message names the file and what is wrong."""


class Checkpoint(NamedTuple):
    """What `load_checkpoint` returns: the arguments that `save_checkpoint` was given."""

    net: MLP
    params: tuple  # ((W^1, b^1), ..., (W^L, b^L)) as jax arrays, in the saved dtype
    opt: Any  # an optim.SGD or optim.Adam equal to the saved one, or None
    opt_state: Any  # SGDState or AdamState of jax arrays, or None
    epoch: int
    key: Any  # a typed key or a legacy uint32 (2,) key, as saved; or None
    history: dict  # name -> list of numbers ({} if none was saved)
    extra: dict  # the caller's JSON dict ({} if none was saved); tuples come back as lists


class _Header(NamedTuple):
    """A header that passed every check, with its config turned back into objects."""

    net: MLP
    dtype: str
    opt: Any
    key: dict | None
    epoch: int
    history: dict
    extra: dict
    manifest: dict


# --- names, configs and manifests (shared by save and load) -------------------------------------
def _layer_arrays(prefix, tree):
    """{"<prefix>/<l>/W": W, "<prefix>/<l>/b": b} for a params-shaped tree of (W, b) pairs."""
    return {f"{prefix}/{l}/{name}": x
            for l, pair in enumerate(tree) for name, x in zip("Wb", pair, strict=True)}


def _state_arrays(state):
    """The optimizer state's arrays by name: params-shaped fields per layer, the rest whole."""
    arrays = {}
    for field, value in zip(state._fields, state, strict=True):
        if isinstance(value, (tuple, list)):
            arrays |= _layer_arrays(f"opt_state/{field}", value)  # () stores nothing
        else:
            arrays[f"opt_state/{field}"] = value
    return arrays


def _state_from_arrays(template, arrays):
    """The inverse of `_state_arrays`: a state shaped like `template` holding `arrays`."""
    fields = {}
    for field, value in zip(template._fields, template, strict=True):
        if isinstance(value, (tuple, list)):
            fields[field] = tuple((arrays[f"opt_state/{field}/{l}/W"],
                                   arrays[f"opt_state/{field}/{l}/b"])
                                  for l in range(len(value)))
        else:
            fields[field] = arrays[f"opt_state/{field}"]
    return type(template)(**fields)


def _spec(x):
    """The manifest entry of an array (or a ShapeDtypeStruct)."""
    return {"shape": [int(n) for n in x.shape], "dtype": np.dtype(x.dtype).name}


def _describe(spec):
    return f"shape {tuple(spec['shape'])} {spec['dtype']}"


def _key_bits_shape(key_config):
    """Shape of the raw bits of a key: (2,) for legacy keys, the impl's for typed keys."""
    if not key_config["typed"]:
        return (2,)
    return jax.random.key_data(jax.random.key(0, impl=key_config["impl"])).shape


def _state_manifest(opt, net, dtype):
    """The manifest entries of opt.init(params) for params of `dtype`, found abstractly. The
    stand-in params are float32 (float64 would need x64 on); the state's params-shaped fields
    take the params' dtype (both optimizers start them with zeros_like), the others (Adam's
    count) keep their own."""
    stand_in = tuple((jax.ShapeDtypeStruct(w, jnp.float32), jax.ShapeDtypeStruct(b, jnp.float32))
                     for w, b in net.param_shapes())
    state = jax.eval_shape(opt.init, stand_in)
    params_shaped = {name for field, value in zip(state._fields, state, strict=True)
                     if isinstance(value, (tuple, list))
                     for name in _layer_arrays(f"opt_state/{field}", value)}
    return {name: {**_spec(x), "dtype": dtype} if name in params_shaped else _spec(x)
            for name, x in _state_arrays(state).items()}


def _expected_manifest(net, dtype, opt, key_config):
    """Every array name -> {"shape", "dtype"} that a checkpoint of this config must hold."""
    manifest = {name: {"shape": list(shape), "dtype": dtype}
                for name, shape in _layer_arrays("params", net.param_shapes()).items()}
    if opt is not None:
        manifest |= _state_manifest(opt, net, dtype)
    if key_config is not None:
        manifest["key"] = {"shape": list(_key_bits_shape(key_config)), "dtype": "uint32"}
    return manifest


def net_config(net):
    """The JSON config of an `MLP`: MLP(**net_config(net)) == net (sizes as a list)."""
    validate.mlp(net)
    return {"sizes": list(net.sizes), "hidden": net.hidden, "output": net.output,
            "loss": net.loss, "matmul_dtype": net.matmul_dtype, "precision": net.precision}


def _opt_from_config(config):
    """An optimizer from {"class", "hyperparameters"}, through the checking factories."""
    if not isinstance(config, dict) or set(config) != {"class", "hyperparameters"}:
        raise CheckpointError(f"header 'opt': expected null or an object with keys 'class' and "
                              f"'hyperparameters', got {config!r:.100}")
    name, hyper = config["class"], config["hyperparameters"]
    if not isinstance(name, str) or name not in _OPTIMIZERS:
        raise CheckpointError(f"header 'opt': expected optimizer class one of "
                              f"{list(_OPTIMIZERS)}, got {name!r:.100}")
    cls, factory = _OPTIMIZERS[name]
    fields = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(hyper, dict) or sorted(hyper) != sorted(fields):
        raise CheckpointError(f"header 'opt': expected {name} hyperparameters {fields}, "
                              f"got {hyper!r:.100}")
    try:
        return factory(**hyper)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"header 'opt': invalid {name} hyperparameters ({e})") from None


def _opt_config(opt):
    """The JSON config of an optimizer; checks that loading it gives back an equal one."""
    names = {cls: name for name, (cls, _) in _OPTIMIZERS.items()}
    if type(opt) not in names:
        raise TypeError(f"opt: expected {optim.EXPECTED}, got {type(opt).__name__}")
    config = {"class": names[type(opt)], "hyperparameters": dataclasses.asdict(opt)}
    try:
        restored = _opt_from_config(json.loads(json.dumps(config)))
    except TypeError as e:  # e.g. a NumPy scalar hyperparameter in a hand-made dataclass
        raise TypeError(f"opt: {opt!r} cannot be saved: expected Python numbers as "
                        f"hyperparameters ({e})") from None
    except CheckpointError as e:
        raise ValueError(f"opt: {opt!r} cannot be saved: {str(e).removeprefix('header ')}"
                         ) from None
    if restored != opt:
        raise ValueError(f"opt: {opt!r} cannot be saved: it would load as {restored!r}")
    return config


# --- header checks (the loader's, also run by save on what it is about to write) ----------------
def _natural(name, value):
    """An int >= 0 (not a bool), for the epoch."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise CheckpointError(f"header {name!r}: expected an int >= 0, got {value!r:.100}")
    return int(value)


def _check_history(where, history):
    """A dict of str -> list of Python int/float values, as `FitResult.history`."""
    if not isinstance(history, dict):
        raise TypeError(f"{where}: expected a dict of lists of numbers, "
                        f"got {type(history).__name__}")
    for k, values in history.items():
        if not isinstance(k, str):
            raise TypeError(f"{where}: expected str keys, got {k!r:.60}")
        if not isinstance(values, (list, tuple)):
            raise TypeError(f"{where}[{k!r}]: expected a list of numbers, "
                            f"got {type(values).__name__}")
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"{where}[{k!r}][{i}]: expected a Python int or float, got "
                                f"{type(v).__name__} {v!r:.60}")
    return {k: list(v) for k, v in history.items()}


def _check_json(where, value):
    """Raise TypeError naming the first part of `value` that JSON would not give back as is."""
    if type(value) in (str, bool, int, float, type(None)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json(f"{where}[{i}]", v)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: expected str keys (JSON object keys), got {k!r:.60}")
            _check_json(f"{where}[{k!r}]", v)
        return
    hint = "; convert NumPy/JAX values with .tolist() or float()" if hasattr(
        value, "dtype") else ""
    raise TypeError(f"{where}: expected a JSON value (dict with str keys, list, str, int, float, "
                    f"bool or None), got {type(value).__name__} {value!r:.60}{hint}")


def _parse_net(config):
    required = [f for f in _NET_FIELDS if f not in _NET_OPTIONAL]
    if not isinstance(config, dict) or not set(required) <= set(config) <= set(_NET_FIELDS):
        raise CheckpointError(f"header 'net': expected an object with keys {list(_NET_FIELDS)}, "
                              f"got {config!r:.100}")
    try:
        return MLP(**{**config, "sizes": tuple(config["sizes"])})
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"header 'net': not a valid MLP ({e})") from None


def _parse_key(key):
    if key is None:
        return None
    ok = (isinstance(key, dict) and set(key) == {"typed", "impl"}
          and isinstance(key["typed"], bool)
          and (isinstance(key["impl"], str) if key["typed"] else key["impl"] is None))
    if not ok:
        raise CheckpointError(f"header 'key': expected null or {{'typed': bool, 'impl': str or "
                              f"null}}, got {key!r:.100}")
    if key["typed"]:
        try:
            _key_bits_shape(key)
        except (TypeError, ValueError, KeyError) as e:
            raise CheckpointError(f"header 'key': unknown PRNG impl {key['impl']!r:.60} ({e})"
                                  ) from None
    return key


def _manifest_entry_ok(entry):
    return (isinstance(entry, dict) and set(entry) == {"shape", "dtype"}
            and isinstance(entry["dtype"], str) and isinstance(entry["shape"], list)
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                    for n in entry["shape"]))


def _parse_manifest(manifest, net, opt, key):
    """The params dtype, once the manifest is exactly what net, opt and key call for."""
    if not isinstance(manifest, dict) or not all(map(_manifest_entry_ok, manifest.values())):
        raise CheckpointError("header 'arrays': expected an object of name -> {'shape': [int], "
                              "'dtype': str}")
    dtype = manifest.get("params/0/W", {}).get("dtype")
    if dtype not in _PARAM_DTYPES:
        raise CheckpointError(f"header 'arrays': expected params of dtype float32 or float64, "
                              f"got {dtype!r:.60}")
    expected = _expected_manifest(net, dtype, opt, key)
    if set(manifest) != set(expected):
        raise CheckpointError(
            f"header 'arrays' does not fit the header's network {net!r}, optimizer and key: "
            f"missing {sorted(set(expected) - set(manifest))}, "
            f"unexpected {sorted(set(manifest) - set(expected))}")
    for name, spec in expected.items():
        if manifest[name] != spec:
            raise CheckpointError(
                f"header 'arrays' does not fit the header's network {net!r}: array {name!r} "
                f"should be {_describe(spec)}, the manifest says {_describe(manifest[name])}")
    return dtype


def _parse_header(header):
    """Check a decoded header and turn its config back into objects (a `_Header`)."""
    if not isinstance(header, dict):
        raise CheckpointError(f"header: expected a JSON object, got {type(header).__name__}")
    if header.get("format") != FORMAT:
        raise CheckpointError(f"not a jaxbp checkpoint: header format {header.get('format')!r:.60}"
                              f", expected {FORMAT!r}")
    version = header.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"header 'version': expected an int >= 1, got {version!r:.60}")
    if version > VERSION:
        raise CheckpointError(f"written by a newer jaxbp: format version {version}, this jaxbp "
                              f"reads versions up to {VERSION}; upgrade jaxbp to load it")
    missing = [k for k in _HEADER_KEYS if k not in header]
    if missing:
        raise CheckpointError(f"header: missing {missing}")
    net = _parse_net(header["net"])
    opt = None if header["opt"] is None else _opt_from_config(header["opt"])
    epoch = _natural("epoch", header["epoch"])
    key = _parse_key(header["key"])
    try:
        history = _check_history("header 'history'", header["history"])
    except TypeError as e:
        raise CheckpointError(str(e)) from None
    if not isinstance(header["extra"], dict):
        raise CheckpointError(f"header 'extra': expected an object, "
                              f"got {type(header['extra']).__name__}")
    dtype = _parse_manifest(header["arrays"], net, opt, key)
    return _Header(net, dtype, opt, key, epoch, history, header["extra"], header["arrays"])


# --- reading -------------------------------------------------------------------------------------
@contextlib.contextmanager
def _reading(what):
    """Turn the errors of reading a damaged zip member into a CheckpointError naming it."""
    try:
        yield
    except CheckpointError:
        raise
    except _READ_ERRORS as e:
        raise CheckpointError(f"{what} is truncated or corrupted ({type(e).__name__}: {e})"
                              ) from None


def _npy_header(name, f, size):
    """(shape, dtype) from the header of the .npy member `name` of `size` bytes, without reading
    (or unpickling) its data; checks that the data that follows has the size they imply."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise CheckpointError(f"unsupported .npy format version {version}")
    shape, dtype = tuple(shape), np.dtype(dtype)
    if not dtype.hasobject and size - f.tell() != math.prod(shape) * dtype.itemsize:
        raise CheckpointError(f"array {name!r} is truncated or corrupted: it holds "
                              f"{size - f.tell()} bytes of data, its shape {shape} and dtype "
                              f"{dtype} need {math.prod(shape) * dtype.itemsize}")
    return shape, dtype


def _members(npz):
    """{array name: (shape, dtype)} of every member, from the .npy headers alone. Refuses a file
    with object (pickled) arrays before anything else."""
    names = npz.zip.namelist()
    if len(set(names)) != len(names):
        raise CheckpointError("corrupted: the archive holds duplicate member names")
    members = {}
    for info in npz.zip.infolist():
        member = info.filename
        if not member.endswith(".npy"):
            raise CheckpointError(f"not a jaxbp checkpoint: archive member {member!r:.80} is not "
                                  f"an .npy array")
        with _reading(f"array {member[:-4]!r}"), npz.zip.open(info) as f:
            members[member[:-4]] = _npy_header(member[:-4], f, info.file_size)
    pickled = sorted(name for name, (_, dtype) in members.items() if dtype.hasobject)
    if pickled:
        raise CheckpointError(f"holds pickled Python objects (arrays {pickled} have dtype "
                              f"object); jaxbp loads checkpoints without unpickling and refuses "
                              f"such files")
    return members


def _read_array(npz, name, shape, dtype):
    """One member's data (np.load with allow_pickle=False), checked against its .npy header."""
    with _reading(f"array {name!r}"):
        x = npz[name]
    if x.shape != shape or x.dtype != dtype:
        raise CheckpointError(f"array {name!r} is corrupted: read {x.shape} {x.dtype}, "
                              f"its header says {shape} {dtype}")
    return x


def _decode_header(npz, members):
    """The header's JSON object."""
    if HEADER not in members:
        raise CheckpointError(f"not a jaxbp checkpoint: no {HEADER!r} array (an .npz holding "
                              f"{sorted(members)[:8]})")
    shape, dtype = members[HEADER]
    if dtype != np.uint8 or len(shape) != 1:
        raise CheckpointError(f"not a jaxbp checkpoint: {HEADER!r} is {dtype} of shape {shape}, "
                              f"expected the uint8 bytes of a JSON object")
    raw = _read_array(npz, HEADER, shape, dtype)
    try:
        return json.loads(raw.tobytes().decode("utf-8"))
    except ValueError as e:  # UnicodeDecodeError, JSONDecodeError
        raise CheckpointError(f"header is not UTF-8 JSON: corrupted ({e})") from None


def _check_members(members, manifest):
    """The stored arrays are exactly the manifest's, with its shapes and dtypes."""
    stored = set(members) - {HEADER}
    if stored != set(manifest):
        raise CheckpointError(
            f"arrays do not match the header's manifest: missing from the file "
            f"{sorted(set(manifest) - stored)}, not in the manifest "
            f"{sorted(stored - set(manifest))}")
    for name, spec in manifest.items():
        shape, dtype = members[name]
        if list(shape) != spec["shape"] or dtype.name != spec["dtype"]:
            raise CheckpointError(f"array {name!r} holds shape {shape} {dtype.name}, the "
                                  f"header's manifest says {_describe(spec)}")


def _path_argument(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike file path, "
                        f"got {type(path).__name__}")
    return pathlib.Path(path)


@contextlib.contextmanager
def _open(path):
    """Yield (npz, members, header) for a checkpoint whose header and manifest check out;
    no array data has been read yet. Errors carry the path."""
    path = _path_argument(path)
    try:
        if path.is_dir():
            raise CheckpointError("expected a checkpoint file, got a directory")
        try:
            fh = open(path, "rb")  # closed by the with below
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "no such checkpoint file", str(path)) from None
        except OSError as e:
            raise OSError(e.errno, f"cannot read the checkpoint: {e.strerror}", str(path)
                          ) from None
        with fh:
            with _reading("the file"):
                is_zip = fh.read(4) == _ZIP_MAGIC and zipfile.is_zipfile(fh)
            if not is_zip:
                raise CheckpointError("not a jaxbp checkpoint: not an .npz (zip) file, or "
                                      "truncated (the zip directory at its end is missing)")
            fh.seek(0)
            with _reading("the zip directory"):
                npz = np.load(fh, allow_pickle=False)
            with npz:
                members = _members(npz)
                header = _parse_header(_decode_header(npz, members))
                _check_members(members, header.manifest)
                yield npz, members, header
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None


def read_header(path):
    """The checked JSON header of a checkpoint, without reading its arrays: e.g.
    `read_header(p)["arrays"]["params/0/W"]["dtype"]` to turn on x64 before `load_checkpoint`.
    Raises like `load_checkpoint`."""
    with _open(path) as (npz, members, _):
        return _decode_header(npz, members)


def load_checkpoint(path):
    """Read a checkpoint written by `save_checkpoint`; returns a `Checkpoint`.

    Never unpickles (np.load with allow_pickle=False; files with object arrays are refused).
    A missing file raises FileNotFoundError; a directory, a truncated, corrupted or foreign
    file, one from a newer jaxbp, or one whose header, manifest and arrays disagree raises
    `CheckpointError` (a ValueError) naming the file and what is wrong. float64 checkpoints
    need jax_enable_x64 on (they are not silently cast to float32).
    """
    with _open(path) as (npz, members, h):
        if h.dtype == "float64" and default_dtype() != jnp.float64:
            raise CheckpointError("holds float64 parameters, and jax_enable_x64 is off: turn "
                                  "it on (jax.config.update('jax_enable_x64', True)) before "
                                  "loading, so that they stay float64")
        arrays = {name: jnp.asarray(_read_array(npz, name, *members[name]))
                  for name in h.manifest}
    params = tuple((arrays[f"params/{l}/W"], arrays[f"params/{l}/b"]) for l in range(h.net.L))
    params = validate.params(h.net, params)
    state = None
    if h.opt is not None:
        state = _state_from_arrays(jax.eval_shape(h.opt.init, params), arrays)
    key = None
    if h.key is not None:
        key = arrays["key"]
        if h.key["typed"]:
            key = jax.random.wrap_key_data(key, impl=h.key["impl"])
    return Checkpoint(h.net, params, h.opt, state, h.epoch, key, h.history, h.extra)


# --- writing -------------------------------------------------------------------------------------
def _writable_path(path):
    """`path` as a Path, if a checkpoint can be written there."""
    path = _path_argument(path)
    if path.is_dir():
        raise ValueError(f"path: expected a file path for the checkpoint, got the directory "
                         f"{path}")
    parent = path.parent
    if not parent.exists():
        raise ValueError(f"path: the directory {parent} of {path} does not exist; create it "
                         f"first")
    if not parent.is_dir():
        raise ValueError(f"path: {parent}, the parent of {path}, is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"path: cannot write the checkpoint: the directory "
                                            f"{parent} is not writable", str(path))
    return path


def _key_config(key):
    """(header entry, raw uint32 bits) of a typed or legacy PRNG key."""
    check_key(key)
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return {"typed": True, "impl": str(jax.random.key_impl(key))}, jax.random.key_data(key)
    return {"typed": False, "impl": None}, key


def _to_host(name, x):
    try:
        return np.asarray(x)
    except RuntimeError as e:  # a deleted (donated) jax array
        raise ValueError(f"{name}: cannot read the array ({e}); train_step donates the params "
                         f"and state passed to it: save the ones it returned") from None


def _fsync_directory(directory):
    """Make a rename in `directory` durable, where the platform allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(path, arrays):
    """np.savez `arrays` to a temporary file beside `path`, fsync it, rename it over `path`,
    fsync the directory. On any failure, the temporary file is removed and `path` is untouched;
    a process killed midway leaves at most a stray `.<name>.<random>.tmp` beside it."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError) and e.errno is not None:
            raise OSError(e.errno, f"path: cannot write the checkpoint: {e.strerror}", str(path)
                          ) from e
        raise
    _fsync_directory(path.parent)


def _opt_arrays(opt, opt_state, params):
    """(header entry, state arrays by name) of an optimizer and its state; both or neither."""
    if opt is None and opt_state is not None:
        raise ValueError("opt_state: given without opt; pass the optimizer whose init made it "
                         "(opt=...)")
    if opt is None:
        return None, {}
    if opt_state is None:
        raise ValueError(f"opt_state: expected the state of {type(opt).__name__} (opt.init(params)"
                         f" or what training returned) together with opt, got None")
    entry = _opt_config(opt)
    try:
        optim.check(opt, opt_state, params)
    except (TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"opt_state: does not fit opt and params ({e})") from None
    return entry, _state_arrays(opt_state)


def _check_metadata(epoch, history, extra):
    """(epoch, history, extra) checked, with the defaults filled in."""
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise ValueError(f"epoch: expected an int >= 0, got {epoch!r:.60}")
    history = _check_history("history", {} if history is None else history)
    extra = {} if extra is None else extra
    if not isinstance(extra, dict):
        raise TypeError(f"extra: expected a JSON-serialisable dict, got {type(extra).__name__}")
    _check_json("extra", extra)
    return int(epoch), history, extra


def save_checkpoint(path, *, net, params, opt=None, opt_state=None, epoch=0, key=None,
                    history=None, extra=None):
    """Write everything needed to resume training to `path` (one .npz file), atomically.

    Arguments:
        path: the file to write (any name; ".npz" is conventional). Its directory must exist.
            An existing checkpoint there is replaced only once the new one is complete on disk.
        net: the `MLP`; params: its (W, b) pairs, float32 or float64.
        opt, opt_state: an optimizer from `jaxbp.optim` and its state (both or neither).
        epoch: an int >= 0, e.g. the number of epochs completed.
        key: a typed key (`jax.random.key`) or a legacy uint32 (2,) key; loads as the same kind.
        history: a dict of lists of Python numbers, e.g. `FitResult.history`.
        extra: any JSON-serialisable dict (str keys), e.g. the trainer's own settings.

    Returns the path as a `pathlib.Path`. Raises TypeError/ValueError naming the argument for
    bad arguments, OSError naming the path if the file cannot be written.
    """
    path = _writable_path(path)
    params = validate.params(net, params)
    arrays = _layer_arrays("params", params)
    opt_entry, state_arrays = _opt_arrays(opt, opt_state, params)
    key_entry = None
    if key is not None:
        key_entry, arrays["key"] = _key_config(key)
    epoch, history, extra = _check_metadata(epoch, history, extra)
    arrays = {name: _to_host(name, x) for name, x in (arrays | state_arrays).items()}
    manifest = {name: _spec(x) for name, x in arrays.items()}
    dtype = validate.param_dtype(params).name
    for name, spec in _expected_manifest(net, dtype, opt, key_entry).items():
        if manifest.get(name) != spec:  # only opt_state can get here: e.g. a float32 mu
            got = _describe(manifest[name]) if name in manifest else "nothing"
            raise ValueError(f"opt_state: expected {name} of {_describe(spec)}, like "
                             f"opt.init(params), got {got}")
    header = {"format": FORMAT, "version": VERSION, "net": net_config(net), "opt": opt_entry,
              "epoch": epoch, "key": key_entry, "history": history, "extra": extra,
              "arrays": manifest}
    blob = json.dumps(header).encode("utf-8")  # ASCII: non-ASCII text is \u-escaped
    _parse_header(json.loads(blob))  # never write a file that the loader would refuse
    _write_atomic(path, {HEADER: np.frombuffer(blob, np.uint8), **arrays})
    return path


def check_compatible(ckpt, net, opt=None):
    """Raise ValueError unless `ckpt` (a `Checkpoint`) can resume training of `net`: the same
    sizes, hidden, output and loss (the compute policy, matmul_dtype and precision, may
    differ). With `opt`, also check that the checkpoint's optimizer state fits it (same class
    and state structure; hyperparameters such as lr may differ)."""
    if not isinstance(ckpt, Checkpoint):
        raise TypeError(f"ckpt: expected a Checkpoint from load_checkpoint, "
                        f"got {type(ckpt).__name__}")
    validate.mlp(net)
    differ = [f for f in _ARCHITECTURE if getattr(ckpt.net, f) != getattr(net, f)]
    if differ:
        raise ValueError(f"net: expected a checkpoint of {net!r}, got one of {ckpt.net!r} "
                         f"(they differ in {', '.join(differ)})")
    if opt is None:
        return
    if ckpt.opt is None:
        raise ValueError(f"opt: expected a checkpoint with optimizer state for {opt!r}, got one "
                         f"without an optimizer")
    try:
        optim.check(opt, ckpt.opt_state, ckpt.params)
    except (TypeError, ValueError):
        raise ValueError(f"opt: expected a checkpoint whose optimizer state fits {opt!r}, got "
                         f"the state of {ckpt.opt!r}") from None
