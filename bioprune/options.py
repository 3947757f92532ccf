"""The inference settings every face offers, derived from PruningConfig's fields: the one adapter.

    parser = argparse.ArgumentParser(); add_config_arguments(parser)     # --controller, --lambda, ...
    config = config_from_values(vars(parser.parse_args()))                # -> PruningConfig
    DEFAULT_SETTINGS                                                      # spaCy/app keys -> defaults

A field of :class:`~bioprune.config.PruningConfig` declared with ``metadata=face(help)`` is a face
setting: the CLI gets a flag, the spaCy component a config key and the app a control from it, with
the field's type, choices, default (from :data:`~bioprune.config.DEFAULT`, what every face runs with
no options) and help. Adding a field there adds it everywhere (tests/test_options.py checks each
face). Experts' fields (trigger thresholds, margins) stay in the dataclass, reachable from Python
and the scripts' ``--set FIELD=VALUE``.
"""
from __future__ import annotations

import argparse
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields

from bioprune.config import DEFAULT, OPERATING_POINT_FIELDS, OPERATING_POINTS, PruningConfig


@dataclass(frozen=True)
class Setting:
    """One face setting: a PruningConfig field as a flag (CLI) and a key (spaCy config, app)."""

    field: str  # the PruningConfig field
    flag: str  # CLI flag, e.g. "--lambda"
    key: str  # spaCy config key / app name, e.g. "lambda_"
    kind: str  # "choice", "float", "bool" or "layers"
    choices: tuple[str, ...]  # for kind "choice"
    default: object  # from DEFAULT; None: decided by the controller (its operating point)
    help: str
    ui: tuple[float, float, float] | None = None  # kind "float": (low, high, step) of the app's slider, if any


def _kind(hint) -> tuple[str, tuple[str, ...]]:
    """The setting kind of a field's type hint (``Literal[...]``, ``float | None``, ``bool``, ``tuple[int, ...] | None``)."""
    if typing.get_origin(hint) is typing.Literal:
        return "choice", tuple(typing.get_args(hint))
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    inner = args[0]
    if inner is bool:
        return "bool", ()
    if inner in (float, int):
        return "float", ()
    if typing.get_origin(inner) is tuple:
        return "layers", ()
    raise TypeError(f"no face setting for a field of type {hint!r}")


def _settings() -> tuple[Setting, ...]:
    hints = typing.get_type_hints(PruningConfig)
    out = []
    for f in (f for f in fields(PruningConfig) if f.metadata.get("face")):
        kind, choices = _kind(hints[f.name])
        default = getattr(DEFAULT, f.name) if f.name not in OPERATING_POINT_FIELDS else None
        out.append(Setting(field=f.name, flag=f.metadata["flag"] or "--" + f.name.replace("_", "-"),
                           key=f.metadata["key"] or f.name, kind=kind, choices=choices, default=default,
                           help=f.metadata["help"], ui=f.metadata.get("ui")))
    return tuple(out)


SETTINGS: tuple[Setting, ...] = _settings()
DEFAULT_SETTINGS: dict[str, object] = {s.key: s.default for s in SETTINGS}  # spaCy config / app keys -> defaults


def add_config_arguments(parser: argparse.ArgumentParser, controllers: tuple[str, ...] | None = None,
                         without: tuple[str, ...] = (), defaults: Mapping[str, object] | None = None) -> None:
    """Add one flag per face setting to ``parser`` (dest: the setting's key); ``controllers``
    narrows ``--controller``'s choices (a script that only prunes); ``without`` names the fields a
    script does not honour (no flag it would ignore); ``defaults`` (by key) replaces the settings'
    own defaults for a script that measures another setting."""
    for s in SETTINGS:
        if s.field in without:
            continue
        default = (defaults or {}).get(s.key, s.default)
        if s.field == "controller" and controllers and default not in controllers:
            default = controllers[0]
        shown = str(default) if default is not None else "the controller's operating point, " + ", ".join(
            f"{c} {_shown(getattr(OPERATING_POINTS[c], s.field))}" for c in ("rule", "mlp"))
        kwargs: dict = {"dest": s.key, "default": default, "help": f"{s.help} (default: {shown})"}
        if s.kind == "choice":
            kwargs["choices"] = list(controllers if s.field == "controller" and controllers else s.choices)
        elif s.kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif s.kind == "float":
            kwargs["type"] = float
        else:
            kwargs.update(type=int, nargs="+")
        parser.add_argument(s.flag, **kwargs)


def _shown(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return " ".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}"


def config_from_values(values: Mapping[str, object], **extra) -> PruningConfig:
    """The PruningConfig of face settings ``values`` (keys as in :data:`DEFAULT_SETTINGS`; missing
    ones at their defaults), plus expert fields ``extra``. Raises ValueError for a bad value."""
    if unknown := sorted(set(values) - set(DEFAULT_SETTINGS) - {s.field for s in SETTINGS}):
        raise ValueError(f"unknown setting(s) {unknown}; known: {sorted(DEFAULT_SETTINGS)}")
    chosen = {}
    for s in SETTINGS:
        value = values.get(s.key, values.get(s.field, s.default))
        if s.kind == "layers" and value is not None:
            value = tuple(int(k) for k in value)
        elif s.kind == "float" and value is not None:
            value = float(value)
        chosen[s.field] = value
    return PruningConfig(**chosen, **extra)
