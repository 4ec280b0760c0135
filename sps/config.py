"""Configs: YAML files with ``key.sub=value`` overrides, bound to typed dataclasses.

Every stage and component declares its options once, as a frozen dataclass whose fields
carry the defaults and the types (nested dataclasses for sections). :func:`bind` turns
a mapping (YAML plus overrides) into an instance and is the one place where configs are
validated:

* an unknown key is an error that names it and suggests the closest valid key;
* a value of the wrong type is an error that names the key, the type and the value
  (``mgc_order: expected int, got 'abc'``); ints are accepted for floats, NaN is not,
  anywhere, nor infinities (``lr: expected a finite number, got nan``) except for the
  fields a dataclass lists in ``ALLOW_INF`` (where inf means "no limit");
* ``Literal[...]`` fields take one of their values only;
* a dataclass's ``__post_init__`` adds the checks that involve several fields.

:func:`bind_kwargs` does the same for the keyword arguments of a callable (the ``model``
sections of vocoders bind straight to their constructor).
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml


class ConfigError(ValueError):
    """A config value or key is invalid; the message names it."""


# ------------------------------------------------------------------ YAML + overrides
def load_config(path: str | os.PathLike | None, overrides: list[str] | tuple = (),
                defaults: dict | None = None) -> dict:
    """Read a YAML config, merge it over ``defaults`` and apply overrides.

    Parameters
    ----------
    path : path-like or None
        YAML file with a mapping at the top level (None: defaults only).
    overrides : list of str
        ``key=value`` or ``section.key=value``; values are parsed as YAML scalars
        (``lr=1e-3``, ``model.layers=[512,512]``, ``alpha=null``).
    defaults : dict, optional
        Values used where the file says nothing.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ConfigError
        Invalid YAML in the file or in an override, or an override without ``=``.
    """
    config = copy.deepcopy(defaults) if defaults else {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: config file not found")
        if path.is_dir():
            raise ConfigError(f"{path}: is a directory, not a config file")
        try:
            data = yaml.safe_load(path.read_bytes().decode("utf-8")) or {}
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not a UTF-8 text file (byte {err.start}: {err.reason})") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML ({_yaml_problem(err)})") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        merge(config, data)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value or section.key=value")
        set_dotted(config, key.strip(), parse_value(value, key.strip()))
    return config


def _yaml_problem(err: yaml.YAMLError) -> str:
    return " ".join(str(getattr(err, "problem", None) or err).split())


def parse_value(text: str, key: str = "value"):
    """A YAML scalar/list, with ``1e-3`` read as a float (YAML 1.1 would keep a string)."""
    if not text.strip():
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {key}={text}: not a valid YAML value ({_yaml_problem(err)})") from None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def merge(base: dict, update: dict) -> dict:
    """Recursively merge ``update`` into ``base`` (in place) and return it."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def set_dotted(config: dict, key: str, value) -> None:
    node = config
    parts = key.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


# ------------------------------------------------------------------ typed binding
def _suggest(key: str, valid) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(sorted(valid))}"


def unknown_key_error(key: str, valid, where: str) -> ConfigError:
    return ConfigError(f"{where}: unknown key {key!r}{_suggest(key, valid)}")


def _type_name(tp) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if _is_union(tp):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def check_finite(value: Any, where: str, allow_inf: bool = False) -> None:
    """``ConfigError`` for a NaN (or, unless ``allow_inf``, an infinite) number anywhere in
    ``value`` (lists and mappings included)."""
    if isinstance(value, float) and (math.isnan(value) or (math.isinf(value) and not allow_inf)):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if isinstance(value, dict):
        for k, v in value.items():
            check_finite(v, f"{where}.{k}", allow_inf)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_finite(v, f"{where}[{i}]", allow_inf)


def coerce(value: Any, tp, where: str, allow_inf: bool = False):
    """Check (and lightly convert) ``value`` against the annotation ``tp``. NaN is refused
    everywhere, infinities unless ``allow_inf``."""
    check_finite(value, where, allow_inf)
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    if _is_union(tp):
        errors = []
        for option in typing.get_args(tp):
            try:
                return coerce(value, option, where)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{where}: expected one of {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if value is None:
            return tp()
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping (section), got {value!r}")
        return bind(tp, value, where)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        out = [coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if (origin is tuple or tp is tuple) else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected int, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected float, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def bind(cls, data: dict | None, where: str = "config"):
    """An instance of the dataclass ``cls`` from ``data`` (missing keys take the defaults).

    Raises
    ------
    ConfigError
        Unknown key (with the closest valid one), wrong type, or a check of
        ``cls.__post_init__`` failing (its ``ValueError`` is re-raised with ``where``).
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise unknown_key_error(str(key), fields, where)
    infinite = getattr(cls, "ALLOW_INF", ())      # options where inf means "no limit"
    kwargs = {name: coerce(value, hints[name], f"{where}.{name}", name in infinite) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None


def to_dict(obj) -> dict:
    """A dataclass instance as plain (YAML-safe) nested dicts and lists."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(obj)


def bind_kwargs(fn, data: dict | None, where: str = "config", skip: tuple[str, ...] = ()) -> dict:
    """Check ``data`` against the keyword parameters of ``fn`` (a class binds to ``__init__``).

    Returns the mapping with values checked against the annotations (unannotated
    parameters take anything). Unknown keys raise :class:`ConfigError` with a suggestion.
    """
    target = fn.__init__ if inspect.isclass(fn) else fn
    sig = inspect.signature(target)
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable annotations: check names only
        hints = {}
    params = {n: p for n, p in sig.parameters.items()
              if n not in ("self", *skip) and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    out = {}
    for key, value in dict(data or {}).items():
        if key not in params:
            raise unknown_key_error(str(key), params, where)
        out[key] = coerce(value, hints.get(key, Any), f"{where}.{key}")
    return out
