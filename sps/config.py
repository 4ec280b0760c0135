"""YAML configs with ``key.sub=value`` command-line overrides."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml


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
    """
    config = copy.deepcopy(defaults) if defaults else {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: invalid YAML ({err})") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path}: top level must be a mapping")
        merge(config, data)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like key=value or section.key=value")
        set_dotted(config, key.strip(), parse_value(value))
    return config


def parse_value(text: str):
    """A YAML scalar/list, with ``1e-3`` read as a float (YAML 1.1 would keep a string)."""
    if not text.strip():
        return None
    value = yaml.safe_load(text)
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
