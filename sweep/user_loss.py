"""A user's loss for problem = "function": find its module, load it, read its arguments (no jax here).

``loss = "module:function"`` names the loss. A top-level module is looked up as ``module.py`` (or the
package ``module/__init__.py``) in the spec file's folder, then in the working directory, then imported
from sys.path (PYTHONPATH); a dotted module (``pkg.mod``) only from sys.path. ``"path/to/file.py:function"``
names a file directly (relative paths start at the spec's folder, then the working directory).

A module found in a folder is loaded from its file under a private name (one per resolved path, cached), so
two specs in two folders with their own ``mylosses.py`` never see each other's module, and nothing is put on
sys.path. ``resolve`` turns the user's reference into a self-contained one (the file's absolute path, or the
module name when it came from sys.path) that ``load`` imports again at build time.

Arguments: each positional argument without a default is a trained scalar parameter; an argument named
under ``[problem] constants`` is a traced per-trajectory constant instead (also one with a default, which
it then overrides); other arguments keep their defaults.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterable

_FILE_MODULES: dict[str, ModuleType] = {}  # resolved file path -> its module, loaded once per process
EXAMPLE = "e.g. 'mylosses:bowl' with mylosses.py next to the spec"


def split(ref: str) -> tuple[str, str]:
    """``(module or file, function)`` of a reference; ValueError unless it is ``module:function``."""
    if not isinstance(ref, str) or ":" not in ref:
        raise ValueError(f"expected 'module:function', {EXAMPLE}")
    mod, fn = ref.rsplit(":", 1)
    if not mod or not fn:
        raise ValueError(f"expected 'module:function' with both parts, {EXAMPLE}")
    return mod, fn


def _is_file(mod: str) -> bool:
    return mod.endswith(".py") or "/" in mod or os.sep in mod


def search_folders(folder: str | os.PathLike | None) -> list[Path]:
    """The folders a module is looked for in, in order: the spec's folder (if any), the working directory."""
    out = []
    for f in (folder, os.getcwd()):
        if f is not None:
            p = Path(f).resolve()
            if p not in out:
                out.append(p)
    return out


def _in_folder(mod: str, folder: Path) -> Path | None:
    if _is_file(mod):
        p = Path(mod) if Path(mod).is_absolute() else folder / mod
        return p if p.is_file() else None
    if "." in mod:
        return None
    for p in (folder / f"{mod}.py", folder / mod / "__init__.py"):
        if p.is_file():
            return p
    return None


def resolve(ref: str, folder: str | os.PathLike | None = None) -> str:
    """The self-contained form of ``ref`` (raises ValueError saying where it looked)."""
    mod, fn = split(ref)
    folders = search_folders(folder)
    for f in folders:
        p = _in_folder(mod, f)
        if p is not None:
            path = str(p.resolve())
            load(f"{path}:{fn}")  # fails here, at spec time, if it does not import or has no such function
            return f"{path}:{fn}"
    where = " or ".join(str(f) for f in folders)
    if _is_file(mod):
        raise ValueError(f"no file {mod!r} in {where}; give a path relative to the spec's folder, or absolute")
    try:
        importlib.import_module(mod)
    except ModuleNotFoundError as e:
        if e.name is not None and mod != e.name and not mod.startswith(e.name + "."):
            raise _import_error(mod, e) from None  # the module exists but imports something missing
        looked = f"no {mod}.py in {where}, and " if "." not in mod else ""
        raise ValueError(f"cannot find module {mod!r}: {looked}not importable from sys.path ({e}); put "
                         f"{mod.split('.')[0]}.py next to the spec, or add its folder to PYTHONPATH") from None
    except Exception as e:  # noqa: BLE001 - reported to the user
        raise _import_error(mod, e) from None
    load(ref)
    return ref


def _import_error(mod: str, e: BaseException) -> ValueError:
    return ValueError(f"cannot import module {mod!r} ({type(e).__name__}: {e})")


def _module_from_file(path: str) -> ModuleType:
    if path in _FILE_MODULES:
        return _FILE_MODULES[path]
    p = Path(path)
    stem = p.parent.name if p.name == "__init__.py" else p.stem
    name = f"_sweep_loss_{hashlib.sha1(path.encode()).hexdigest()[:12]}_{stem}"
    package = [str(p.parent)] if p.name == "__init__.py" else None
    spec = importlib.util.spec_from_file_location(name, p, submodule_search_locations=package)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import {path!r}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # under its private name only (so relative imports of a package work)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - reported to the user
        del sys.modules[name]
        raise ValueError(f"cannot import {path!r} ({type(e).__name__}: {e})") from None
    _FILE_MODULES[path] = module
    return module


def load(ref: str) -> Callable:
    """The function of a resolved reference (``resolve``'s output)."""
    mod, fn = split(ref)
    if _is_file(mod):
        module, shown = _module_from_file(mod), Path(mod).name
    else:
        try:
            module = importlib.import_module(mod)
        except Exception as e:  # noqa: BLE001 - reported to the user
            raise _import_error(mod, e) from None
        shown = mod
    f = getattr(module, fn, None)
    if not callable(f):
        near = difflib.get_close_matches(fn, [n for n in dir(module) if not n.startswith("_")
                                              and callable(getattr(module, n, None))], n=1, cutoff=0.6)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"module {shown!r} has no function {fn!r}{hint}")
    return f


# --------------------------------------------------------------------------- arguments
def arguments(f: Callable) -> dict[str, inspect.Parameter]:
    """The named arguments of ``f`` (positional or keyword; not *args / **kwargs)."""
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError) as e:
        raise ValueError(f"cannot read the function's arguments ({e}); wrap it in a Python function "
                         "def loss(x, y): ...") from None
    return {n: p for n, p in sig.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def check_constants(f: Callable, constants: Iterable[str]) -> None:
    """Raises ``ValueError(name, message)`` for the first constant that is not an argument of ``f``."""
    args = arguments(f)
    for c in constants:
        if c not in args:
            near = difflib.get_close_matches(c, list(args), n=1, cutoff=0.5)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(c, f"not an argument of the loss{hint}; its arguments: {', '.join(args) or 'none'}")


def params(f: Callable, constants: Iterable[str] = ()) -> tuple[str, ...]:
    """The trained parameters: positional arguments without a default that are not constants, in order."""
    constants = set(constants)
    args = arguments(f)
    names = tuple(n for n, p in args.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.default is p.empty and n not in constants)
    for n, p in args.items():
        if p.kind is p.KEYWORD_ONLY and p.default is p.empty and n not in constants:
            raise ValueError(f"argument {n!r} is keyword-only without a default: give its value under "
                             f"[problem] constants, e.g. constants = {{ {n} = 1.0 }}")
    if not names:
        raise ValueError("the function has no positional argument left to train; each positional argument "
                         "without a default is a parameter, e.g. def loss(x, y): ... (constants are not trained)")
    return names


def caller(f: Callable) -> Callable[[dict], object]:
    """``call(values)``: ``f`` applied to the arguments named in ``values`` (the others keep their defaults):
    positional-only arguments by position, the rest by keyword."""
    args = arguments(f)
    positional = [n for n, p in args.items() if p.kind is p.POSITIONAL_ONLY]

    def call(values: dict):
        given = [i for i, n in enumerate(positional) if n in values]
        head = [values[n] if n in values else args[n].default for n in positional[: given[-1] + 1]] if given else []
        return f(*head, **{n: x for n, x in values.items() if n not in positional})

    return call
