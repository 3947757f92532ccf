"""The pruning controls of both tabs and the API's inputs: one per face setting of bioprune.options.

A field added to PruningConfig with ``face(...)`` becomes a control in the Annotate and Batch tabs
and a parameter of ``/annotate``, ``/entities`` and ``/annotate_files``, named by its key, with no
change here: :func:`setting_control` builds it from the setting's kind, help and default, and
:class:`bioprune.app.engines.PruningChoice` turns the values back into a config through
``bioprune.options.config_from_values``.
"""
from __future__ import annotations

import inspect

import gradio as gr

from bioprune import options
from bioprune.options import Setting

from bioprune.app.engines import choice_label, label, operating_point, start_values


def setting_control(s: Setting, value, layers: tuple[int, ...], *, elem_id: str | None = None,
                    slider: bool = True) -> gr.components.Component:
    """The control for setting ``s``, starting at ``value``, by its kind.

    choice: a radio of its choices; bool: a checkbox; layers: the pruning layers the model offers
    (``layers``) to tick; float: a slider over its declared ``ui`` range, else a number box. A None
    value (the controller's operating point) is an empty control. ``slider=False`` makes every number
    a box that takes any value the config accepts (the API-only inputs).
    """
    info = s.help if s.default is not None else f"{s.help}; default: the chosen controller's own"
    common = {"label": label(s), "info": info, "elem_id": elem_id}
    if s.kind == "choice":
        return gr.Radio(choices=[(choice_label(s, c), c) for c in s.choices], value=value, **common)
    if s.kind == "bool":
        return gr.Checkbox(value=value, **common)
    if s.kind == "layers":
        return gr.CheckboxGroup(choices=list(layers), value=list(value or ()), **common)
    if slider and s.ui is not None and value is not None:
        low, high, step = s.ui
        return gr.Slider(low, high, value=value, step=step, **common)
    return gr.Number(value=value, **common)


def pruning_controls(layers: tuple[int, ...], prefix: str) -> dict[str, gr.components.Component]:
    """One control per setting, by key, where the engine's default config is (elem_id
    ``{prefix}-{key}``, e.g. ``annotate-lambda``); picking a controller moves the settings it decides
    (λ, the layers) to its operating point, as the CLI's defaults do."""
    start = start_values()
    controls = {s.key: setting_control(s, start[s.key], layers,  # lambda_ -> annotate-lambda, ...
                                       elem_id=f"{prefix}-{s.key.strip('_').replace('_', '-')}")
                for s in options.SETTINGS}
    decided = [controls[s.key] for s in options.SETTINGS if s.default is None]
    controls["controller"].change(lambda controller: {controls[k]: v for k, v in operating_point(controller).items()},
                                  inputs=controls["controller"], outputs=decided, api_visibility="private")
    return controls


def api_inputs(layers: tuple[int, ...]) -> dict[str, gr.components.Component]:
    """One input per setting for an API-only endpoint, by key, at the setting's own default (None,
    the controller's operating point, left empty); numbers take any value the config accepts."""
    return {s.key: setting_control(s, s.default, layers, slider=False) for s in options.SETTINGS}


def takes_settings(fn):
    """``fn(..., **values)`` shown to Gradio with one keyword parameter per setting (default None:
    the setting's default), so the API names its parameters by the settings' keys and gradio_client
    may leave any of them out."""
    signature = inspect.signature(fn)
    own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    extra = [inspect.Parameter(s.key, inspect.Parameter.KEYWORD_ONLY, default=None) for s in options.SETTINGS]
    fn.__signature__ = signature.replace(parameters=[*own, *extra])
    return fn
