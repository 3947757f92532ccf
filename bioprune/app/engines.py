"""EngineHub: the model loaded once, and an engine on the same weights for each pruning choice.

The learned (MLP) controller lives in ``controller.safetensors`` beside the model and may appear
(or be retrained) while the app runs: the hub looks for the file on each MLP request and loads it
when it is new or has changed, so the MLP choice starts working without a restart. Until then an
MLP request is refused with a message saying what is missing.

PruningChoice is what a person picked: a value per face setting of :mod:`bioprune.options`, by its
key, so a setting added to PruningConfig with ``face(...)`` reaches the engine with no change here.
"""
from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from bioprune import options
from bioprune.config import DENSE, NOT_PRUNING_KNOBS, PruningConfig
from bioprune.controllers import CONTROLLER_FILE, LearnedController
from bioprune.engine import PruningEngine
from bioprune.options import Setting

from bioprune.app.errors import UserError

logger = logging.getLogger(__name__)

# How the app words what bioprune.options leaves plain: a choice's label in the UI, a setting's short name.
CHOICE_LABELS: dict[str, dict[str, str]] = {"controller": {"none": "dense (no pruning)", "mlp": "MLP (learned)"}}
SHORT_NAMES: dict[str, str] = {"lambda_": "λ"}


def setting(key: str) -> Setting:
    """The face setting ``key``, looked up in ``bioprune.options.SETTINGS`` when asked (not at import)."""
    return next(s for s in options.SETTINGS if s.key == key)


def label(s: Setting) -> str:
    """A control's label: the field's name in words, with its symbol where it has one ("Aggressiveness (λ)")."""
    words = s.field.replace("_", " ").capitalize()
    return f"{words} ({SHORT_NAMES[s.key]})" if s.key in SHORT_NAMES else words


def choice_label(s: Setting, value: str) -> str:
    """How the UI shows ``value`` of the choice setting ``s`` ("dense (no pruning)" for controller none)."""
    return CHOICE_LABELS.get(s.key, {}).get(value, value)


def operating_point(controller: str) -> dict[str, object]:
    """What ``controller`` decides, by key, as the controls hold it: the settings whose default is None
    (λ and the pruning layers; PruningConfig's OPERATING_POINTS). Picking a controller sets them to these."""
    config = PruningConfig(controller=controller)
    values = {s.key: getattr(config, s.field) for s in options.SETTINGS if s.default is None}
    return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}


def start_values() -> dict[str, object]:
    """Where the controls start, by key: each setting's default, and the default controller's operating
    point for the settings it decides; together the engine's DEFAULT config (the CLI's with no flags)."""
    point = operating_point(setting("controller").default)
    return {s.key: point[s.key] if s.default is None else s.default for s in options.SETTINGS}


@dataclass(frozen=True, init=False)
class PruningChoice:
    """What the person picked in the UI or the API: a value per face setting, by key (``controller``,
    ``lambda_``, ...; bioprune.options). A missing or empty value (None, no layer ticked) is the
    setting's default, which for λ and the layers is the controller's operating point.
    """

    values: Mapping[str, object]

    def __init__(self, **values):
        if unknown := sorted(set(values) - {s.key for s in options.SETTINGS}):
            raise TypeError(f"unknown setting(s) {unknown}; known: {[s.key for s in options.SETTINGS]}")
        object.__setattr__(self, "values", MappingProxyType(dict(values)))

    def value(self, s: Setting):
        """The value picked for ``s``, or its default when none was."""
        value = self.values.get(s.key)
        return s.default if value is None or (s.kind == "layers" and not value) else value

    @property
    def controller(self) -> str:
        return self.value(setting("controller"))

    @property
    def dense(self) -> bool:
        return self.controller == "none"

    @property
    def exact(self) -> bool:
        """The exact dense fp32 model: what the app compares every other choice with."""
        return self.config() == DENSE

    def applies(self, s: Setting) -> bool:
        """Whether ``s`` applies to this choice: the dense model ignores the pruning settings, not the precision."""
        return not self.dense or s.field in NOT_PRUNING_KNOBS

    def config(self) -> PruningConfig:
        """The engine's config, through bioprune.options (other knobs at their defaults); UserError for an
        invalid value, in one line."""
        values = {}
        for s in options.SETTINGS:
            value = self.value(s)
            if s.kind == "choice" and value not in s.choices:
                raise UserError(f"Unknown {s.field.replace('_', ' ')} {value!r}: choose one of {', '.join(s.choices)}.")
            if self.applies(s):
                values[s.key] = value
        try:
            return options.config_from_values(values)
        except (TypeError, ValueError) as err:
            raise UserError(f"Invalid setting: {err}.") from None

    def describe(self) -> str:
        """One line naming the choice and the value of every setting that applies to it."""
        config = self.config()
        head = ("dense model (no pruning)" if self.dense
                else f"{choice_label(setting('controller'), self.controller)} controller")
        return ", ".join([head, *(f"{SHORT_NAMES.get(s.key, s.key)} {_shown(s, getattr(config, s.field))}"
                                  for s in options.SETTINGS if s.key != "controller" and self.applies(s))])


def _shown(s: Setting, value) -> str:
    """``value`` as the summary writes it: on/off, layer counts, a number to its slider's step."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, float) and s.ui is not None:
        return f"{value:.{max(0, -math.floor(math.log10(s.ui[2])))}f}"
    return f"{value:g}" if isinstance(value, float) else str(value)


class EngineHub:
    """Holds the loaded model; hands out engines for pruning choices; loads the MLP controller lazily.

    Args:
        engine: a loaded engine (any config); its weights are shared, never copied.
        model_dir: the directory it was loaded from, where ``controller.safetensors`` may appear;
            None when unknown (then the MLP choice works only if ``engine`` already has it).
    """

    def __init__(self, engine: PruningEngine, model_dir: str | Path | None = None):
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self._lock = threading.Lock()
        self._base = engine.with_config(DENSE)
        self._mlp_stamp: tuple[int, int] | None = None
        if "mlp" in engine.controllers and self._controller_path() is not None and self._controller_path().is_file():
            self._mlp_stamp = self._stamp(self._controller_path())

    @property
    def dense(self) -> PruningEngine:
        return self._base

    @property
    def n_layers(self) -> int:
        return int(self._base.model.config.num_hidden_layers)

    @property
    def exit_layers(self) -> tuple[int, ...]:
        """The layers the model has an exit head after, the only ones it can prune after: the
        pruning layers' choices (none for a dense-only model)."""
        heads = self._base.exit_heads
        return tuple(heads.layers) if heads is not None else ()

    def engine_for(self, choice: PruningChoice) -> PruningEngine:
        """An engine on the shared weights for ``choice``; UserError when it cannot run."""
        config = choice.config()
        if config == self._base.config:
            return self._base
        if config.controller == "mlp":
            self._ensure_mlp()
        try:
            return self._base.with_config(config)
        except ValueError as err:
            raise UserError(f"This model cannot run that setting: {err}.") from None

    def mlp_available(self) -> bool:
        path = self._controller_path()
        return "mlp" in self._base.controllers or (path is not None and path.is_file())

    def mlp_status(self) -> str:
        """A short line for the controller choice: whether the learned controller can be chosen."""
        if self.mlp_available():
            return "MLP (learned): available."
        return f"MLP (learned): not trained yet ({CONTROLLER_FILE} missing); choose rule or dense meanwhile."

    def _controller_path(self) -> Path | None:
        return self.model_dir / CONTROLLER_FILE if self.model_dir is not None else None

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int]:
        stat = path.stat()
        return stat.st_mtime_ns, stat.st_size

    def _ensure_mlp(self) -> None:
        path = self._controller_path()
        with self._lock:
            if path is None or not path.is_file():
                if "mlp" in self._base.controllers:
                    return  # loaded earlier (or given with the engine): keep using it
                raise UserError(f"The MLP controller is not trained yet ({path or CONTROLLER_FILE} is missing; "
                                "training/train_controller.py writes it). Choose the rule controller or the dense "
                                "model meanwhile; the MLP choice works as soon as the file appears, without a restart.")
            stamp = self._stamp(path)
            if stamp == self._mlp_stamp and "mlp" in self._base.controllers:
                return
            try:
                learned = LearnedController.load(path.parent, self._base.device)
            except Exception as err:  # noqa: BLE001 - a half-written or incompatible file
                raise UserError(f"The MLP controller file {path} could not be loaded ({type(err).__name__}: "
                                f"{err}). If it is being trained right now, try again in a minute.") from None
            bundle = self._base.bundle.with_controllers({**self._base.controllers, "mlp": learned})
            self._base = replace(self._base, bundle=bundle)  # everything else (postprocess, int8, linker) kept
            self._mlp_stamp = stamp
            logger.info("loaded the MLP controller from %s", path)
