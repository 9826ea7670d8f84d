"""What tests/test_no_autodiff.py uses: a source scanner and a run-time guard against autodiff.

`autodiff_uses(source)` walks a module's AST. It resolves every name to the dotted path it was
imported as (`import jax as j` makes `j.grad` "jax.grad"; `from jax import lax` makes `lax.scan`
"jax.lax.scan") and flags a jax path that names differentiation (grad, vjp, custom_jvp, remat,
jet, ...) or reaches into JAX's internals (jax._src, jax.interpreters), plus the ways around a
static scan: a getattr on a jax module with a computed name, import_module / __import__ of a
computed name, eval / exec, and getattr-like builtins passed around as values.

`install(monkeypatch)` makes JAX's differentiation machinery raise `AutodiffCalled`: the JVP,
linearize and jet traces cannot be created, the backward pass and every JVP, linearization
and transpose rule raise, and so do the public entry points. Saved references to jax.grad &c.
taken before the patch still reach the patched machinery, so they raise too.
"""

import ast

import jax
import jax._src.api as jax_api
import jax._src.interpreters.ad as ad
import jax.experimental.jet as jet

AUTODIFF = {
    "grad", "value_and_grad", "vjp", "jvp", "linearize", "custom_vjp", "custom_jvp",
    "jacfwd", "jacrev", "hessian", "linear_transpose", "checkpoint", "remat",
    "custom_gradient", "closure_convert", "fwd_and_bwd", "linearize_jaxpr", "jvp_jaxpr",
    "backward_pass",
}
GENERIC = {"checkpoint", "remat"}  # common words: flagged only on a jax path (jax.checkpoint)
# Parts of a jax path that jaxbp has no business with: autodiff modules and JAX's internals.
JAX_FORBIDDEN_PARTS = AUTODIFF | {
    "_src", "interpreters", "api", "ad", "ad_checkpoint", "checkpoint_policies", "jet",
    "custom_derivatives", "custom_root", "custom_linear_solve", "stop_gradient",
}
JAX_FORBIDDEN_PIECES = ("vjp", "jvp", "grad", "jac", "lineariz", "hessian", "remat", "checkpoint")
# Callables that reach an attribute or a module by a computed name, or run computed code: each
# call is checked, and passing one around as a value is flagged.
DYNAMIC = {"builtins.getattr", "builtins.vars", "builtins.__import__", "builtins.eval",
           "builtins.exec", "builtins.compile", "importlib.import_module",
           "importlib.__import__"}
ALWAYS = {"sys.modules", "operator.attrgetter", "operator.methodcaller", "builtins.globals",
          "builtins.locals"}  # jaxbp has no use for these
BUILTINS = {p.split(".")[1] for p in DYNAMIC | ALWAYS if p.startswith("builtins.")}


def forbidden(path):
    """True for a jax path that names autodiff or JAX's internals ("jax.grad", "jax._src.api")."""
    parts = path.split(".")
    if parts[0] != "jax":
        return path in ALWAYS
    return any(p in JAX_FORBIDDEN_PARTS or (p.startswith("__") and p != "__version__")
               or (p != "gradient" and any(piece in p for piece in JAX_FORBIDDEN_PIECES))
               for p in parts[1:])


def _imported(node):
    """(name bound, dotted path) for each name an import statement binds."""
    if isinstance(node, ast.Import):
        return [(a.asname, a.name) if a.asname else (a.name.split(".")[0], a.name.split(".")[0])
                for a in node.names]
    base = "." * node.level + (node.module or "")
    return [(a.asname or a.name, f"{base}.{a.name}" if node.module else base + a.name)
            for a in node.names]


def _aliases(tree):
    """name -> the dotted path it was bound to by an import (or by `name = <path>`)."""
    aliases = {"jax": "jax"}  # what `jax` names even in a snippet that does not import it
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            aliases.update(_imported(node))
    for _ in range(3):  # chains of plain assignments: m = jax; n = m.lax
        for node in ast.walk(tree):
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)):
                path = _path(node.value, aliases)
                if path and (path.split(".")[0] == "jax" or path in DYNAMIC | ALWAYS):
                    aliases[node.targets[0].id] = path
    return aliases


def _literal(node):
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _path(node, aliases):
    """The dotted path an expression names, if it can be told statically; else None."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id, f"builtins.{node.id}" if node.id in BUILTINS else None)
    if isinstance(node, ast.Attribute):
        base = _path(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, ast.Call) and node.args:  # getattr(jax, "lax"), import_module("jax")
        func, args = _path(node.func, aliases), node.args
        if func in ("builtins.__import__", "importlib.import_module", "importlib.__import__"):
            return _literal(args[0])
        if func == "builtins.getattr" and len(args) >= 2 and _literal(args[1]):
            base = _path(args[0], aliases)
            return f"{base}.{_literal(args[1])}" if base else None
    return None


def _call_findings(node, aliases):
    """Calls that reach a name no scan can read: getattr(jax, "gr" + "ad"), import_module(x)."""
    func, args = _path(node.func, aliases), node.args
    if func in ("builtins.getattr", "builtins.vars"):
        target = (_path(args[0], aliases) or "") if args else ""
        name = _literal(args[1]) if len(args) > 1 else None
        if target.split(".")[0] == "jax" and (func == "builtins.vars" or name is None):
            return [f"{func[9:]}({target}, <computed>)"]
        if name in AUTODIFF - GENERIC:
            return [f"getattr(..., {name!r})"]
    elif func in ("builtins.__import__", "importlib.import_module", "importlib.__import__"):
        if not (args and _literal(args[0])):
            return [f"{func}(<computed>)"]
    elif func in ("builtins.eval", "builtins.exec", "builtins.compile"):
        return [f"{func[9:]}()"]
    return []


def _finding(node, aliases, called):
    """What one AST node does that the scan forbids, as a list of strings."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        paths = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [path for _, path in _imported(node)]
        return [f"import {p}" for p in paths
                if forbidden(p) or (p.endswith(".*") and p.split(".")[0] == "jax")]
    what = []
    path = _path(node, aliases) if isinstance(node, ast.Name | ast.Attribute | ast.Call) else None
    if path and forbidden(path):
        what.append(path)
    elif path in DYNAMIC and id(node) not in called:
        what.append(f"{path} passed as a value")
    if isinstance(node, ast.Attribute) and node.attr in AUTODIFF - GENERIC and not what:
        what.append(f".{node.attr}")
    if isinstance(node, ast.Call):
        what += _call_findings(node, aliases)
    return what


def autodiff_uses(source):
    """Each use of automatic differentiation in `source`, as "line N: what"; [] if none."""
    tree = ast.parse(source)
    aliases = _aliases(tree)
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return [f"line {node.lineno}: {w}" for node in ast.walk(tree)
            for w in _finding(node, aliases, called)]


# --- the run-time guard ---------------------------------------------------------------------------
class AutodiffCalled(BaseException):
    """Raised by the guard: a BaseException, so no `except Exception` in jaxbp can swallow it."""


# Whose construction is differentiation: JAX's JVP, linearize, transpose and jet machinery.
TRACE_CLASSES = (ad.JVPTrace, ad.JVPTracer, ad.LinearizeTrace, ad.LinearizeTracer,
                 ad.UndefinedPrimal, jet.JetTrace, jet.JetTracer)
MACHINERY = ("backward_pass", "backward_pass3", "closed_backward_pass", "get_primitive_transpose")
AD_FUNCTIONS = (*MACHINERY, "jvp", "linearize", "linearize_jaxpr", "jvp_jaxpr",
                "linearize_from_jvp", "call_transpose", "call_transpose_fancy")
PUBLIC = ("grad", "value_and_grad", "vjp", "jvp", "linearize", "jacfwd", "jacrev", "hessian",
          "linear_transpose", "fwd_and_bwd", "custom_jvp", "custom_vjp", "custom_gradient",
          "closure_convert", "checkpoint", "remat")
RULE_TABLES = ("primitive_jvps", "primitive_transposes", "primitive_linearizations",
               "fancy_transposes", "reducing_transposes")


def install(monkeypatch, names=True):
    """Make every differentiation path in JAX raise `AutodiffCalled`, until `monkeypatch` undoes
    it. Returns the list each attempt is appended to (even one that something swallowed).
    Clears JAX's caches, so nothing compiled before the guard skips tracing under it.

    The machinery (the trace classes, the backward pass, the rule tables) is always patched;
    `names` adds the functions by name (jax.grad, jax._src.api.vjp, ad.jvp, ...). The guard's
    own test turns `names` off to show the machinery alone catches each way in."""
    hits = []

    def forbid(what):
        def raiser(*args, **kwargs):
            hits.append(what)
            raise AutodiffCalled(f"automatic differentiation was called: {what}")
        return raiser

    for cls in TRACE_CLASSES:
        monkeypatch.setattr(cls, "__init__", forbid(f"{cls.__module__}.{cls.__name__}"))
    functions = ((ad, AD_FUNCTIONS), (jax_api, PUBLIC), (jax, PUBLIC), (jet, ("jet",)))
    for module, attrs in functions if names else ((ad, MACHINERY),):
        for name in attrs:
            if hasattr(module, name):
                monkeypatch.setattr(module, name, forbid(f"{module.__name__}.{name}"))
    for table in [getattr(ad, t, {}) for t in RULE_TABLES] + [jet.jet_rules]:
        for primitive in list(table):
            monkeypatch.setitem(table, primitive, forbid(f"differentiation rule of {primitive}"))
    jax.clear_caches()
    return hits
