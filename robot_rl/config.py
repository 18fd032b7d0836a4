"""Typed configs: dataclasses loaded from YAML plus `key.sub=value` overrides.

A wrong key is an error naming the key and the valid ones; a value of the wrong type is an
error naming the key and the expected type; a number outside its field's range (the field's
`metadata["range"]`, e.g. "[1, inf)") is an error naming the key and the range, and no float
may be NaN or infinite. Nothing is silently ignored.
"""
from __future__ import annotations

import dataclasses
import keyword
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    pass


def config_key(field_name: str) -> str:
    """The key a user writes for a field: a Python keyword (`from`) is a field with a trailing
    underscore (`from_`)."""
    base = field_name[:-1]
    return base if field_name.endswith("_") and keyword.iskeyword(base) else field_name


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, str) and _has_kind(tp):  # `runtime: ray` = `runtime: {kind: ray}`
            value = {"kind": value}
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):  # NaN passes every range comparison
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not (isinstance(value, int) or
                                           (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def check_range(where: str, value: Any, spec: str) -> None:
    """`value` (a number, or each number of a list) inside interval `spec` such as "(0, 1]"."""
    lo, hi = (float(x) for x in spec[1:-1].split(","))
    for v in value if isinstance(value, (list, tuple)) else [value]:
        if v is None:
            continue
        above = v > lo if spec[0] == "(" else v >= lo
        below = v < hi if spec[-1] == ")" else v <= hi
        if not (above and below):
            raise ConfigError(f"{where}={v!r} is out of range: it must be in {spec}")


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass `cls` from a (nested) mapping, rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    fields = {config_key(f.name): f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown config key {prefix}{unknown[0]!r}; valid keys"
                          f"{' in ' + where if where else ''}: {', '.join(sorted(fields))}")
    kwargs = {fields[k]: _coerce(v, hints[fields[k]], f"{where}.{k}" if where else k) for k, v in data.items()}
    for f in dataclasses.fields(cls):
        if "range" in f.metadata and f.name in kwargs:
            key = config_key(f.name)
            check_range(f"{where}.{key}" if where else key, kwargs[f.name], f.metadata["range"])
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


def to_dict(cfg) -> dict:
    def clean(v):
        if dataclasses.is_dataclass(v):
            return {config_key(f.name): clean(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (tuple, list)):
            return [clean(x) for x in v]
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return v
    return clean(cfg)


def parse_key_values(items) -> dict:
    """CLI `KEY=VALUE` pairs -> dict, each value parsed as YAML (numbers, lists, bools)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"expected key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """`a.b=1` sets data['a']['b'] = 1 (the value parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def _key_types(cls) -> dict:
    """{config key: field type} of a dataclass."""
    hints = typing.get_type_hints(cls)
    return {config_key(f.name): hints[f.name] for f in dataclasses.fields(cls)}


def _has_kind(tp) -> bool:
    return dataclasses.is_dataclass(tp) and any(f.name == "kind" for f in dataclasses.fields(tp))


def expand_kind_shorthand(cls, overrides: list[str]) -> list[str]:
    """`section=NAME` for a section with a `kind` field is short for `section.kind=NAME`
    (`runtime=ray`), so it combines with `section.other=...` overrides in any order."""
    out = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        tp = cls
        for part in key.strip().split("."):
            tp = _key_types(tp).get(part) if dataclasses.is_dataclass(tp) else None
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
                tp = args[0]  # an optional section (`env.teleop`)
        if sep and _has_kind(tp) and isinstance(yaml.safe_load(raw), str):
            item = f"{key.strip()}.kind={raw}"
        out.append(item)
    return out


def load(cls, path: str | Path | None = None, overrides: list[str] = ()):
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file not found: {p}")
        data = yaml.safe_load(p.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping")
    return from_dict(cls, apply_overrides(data, expand_kind_shorthand(cls, list(overrides))))


def save(cfg, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
