"""EngineHub: the model loaded once, and an engine on the same weights for each pruning choice.

The learned (MLP) controller lives in ``controller.safetensors`` beside the model and may appear
(or be retrained) while the app runs: the hub looks for the file on each MLP request and loads it
when it is new or has changed, so the MLP choice starts working without a restart. Until then an
MLP request is refused with a message saying what is missing.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from bioprune.config import DENSE, PruningConfig
from bioprune.options import DEFAULT_SETTINGS, SETTINGS, config_from_values
from bioprune.controllers import CONTROLLER_FILE, LearnedController
from bioprune.engine import PruningEngine

from webapp.errors import UserError

logger = logging.getLogger(__name__)

# (label shown in the UI, PruningConfig.controller)
CONTROLLER_CHOICES: tuple[tuple[str, str], ...] = (
    ("dense (no pruning)", "none"), ("rule", "rule"), ("MLP (learned)", "mlp"))
CONTROLLER_NAMES = {value: label for label, value in CONTROLLER_CHOICES}
MAX_LAMBDA = 16.0  # the λ slider's end: the largest λ the evaluation suite sweeps
# Where both tabs start: the engine's own default config (PruningEngine.from_pretrained without
# config=, bioprune.config.DEFAULT), which the CLI's default also is: dense, because pruning is opt-in,
# at the machine's best precision (bioprune.options derives every face's defaults from it).
DEFAULT_CONTROLLER: str = DEFAULT_SETTINGS["controller"]
DEFAULT_PRECISION: str = DEFAULT_SETTINGS["precision"]
PRECISION_CHOICES: tuple[str, ...] = next(s.choices for s in SETTINGS if s.field == "precision")


def default_lambda(controller: str) -> float:
    """The λ slider's value when ``controller`` is picked: that controller's operating point."""
    return PruningConfig(controller=controller).aggressiveness


@dataclass(frozen=True)
class PruningChoice:
    """What the person picked in the UI: controller, λ, min_keep_ratio, recovery, precision."""

    controller: str = DEFAULT_CONTROLLER
    aggressiveness: float = DENSE.aggressiveness  # the λ slider's start: the default controller's λ
    min_keep_ratio: float = DEFAULT_SETTINGS["min_keep_ratio"]
    recovery: bool = DEFAULT_SETTINGS["recovery"]
    precision: str = DEFAULT_PRECISION

    @property
    def dense(self) -> bool:
        return self.controller == "none"

    @property
    def exact(self) -> bool:
        """The exact dense fp32 model: what the app compares every other choice with."""
        return self.config() == DENSE

    def config(self) -> PruningConfig:
        """The engine's config (other knobs at their defaults; bioprune.options); UserError for an invalid value.

        The dense choice ignores the pruning sliders (they do not apply to it), not the precision.
        """
        if self.controller not in CONTROLLER_NAMES:
            raise UserError(f"Unknown controller {self.controller!r}: choose one of "
                            f"{', '.join(CONTROLLER_NAMES)}.")
        values = {"controller": self.controller, "precision": self.precision}
        if not self.dense:
            values.update(lambda_=self.aggressiveness, min_keep_ratio=self.min_keep_ratio, recovery=bool(self.recovery))
        try:
            return config_from_values(values)
        except (TypeError, ValueError) as err:
            raise UserError(f"Invalid setting: {err}.") from None

    def describe(self) -> str:
        if self.dense:
            return f"dense model (no pruning), precision {self.precision}"
        return (f"{CONTROLLER_NAMES[self.controller]} controller, λ {float(self.aggressiveness):.1f}, "
                f"min_keep_ratio {float(self.min_keep_ratio):.2f}, recovery {'on' if self.recovery else 'off'}, "
                f"precision {self.precision}")


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

    def _missing_message(self) -> str:
        where = self._controller_path() or CONTROLLER_FILE
        return (f"not trained yet ({where} is missing; training/train_controller.py writes it). "
                "Choose the rule controller or the dense model meanwhile; the MLP choice works as soon as "
                "the file appears, without a restart.")

    def _ensure_mlp(self) -> None:
        path = self._controller_path()
        with self._lock:
            if path is None or not path.is_file():
                if "mlp" in self._base.controllers:
                    return  # loaded earlier (or given with the engine): keep using it
                raise UserError("The MLP controller is " + self._missing_message())
            stamp = self._stamp(path)
            if stamp == self._mlp_stamp and "mlp" in self._base.controllers:
                return
            try:
                learned = LearnedController.load(path.parent, self._base.device)
            except Exception as err:  # noqa: BLE001 - a half-written or incompatible file
                raise UserError(f"The MLP controller file {path} could not be loaded ({type(err).__name__}: "
                                f"{err}). If it is being trained right now, try again in a minute.") from None
            controllers = {**self._base.controllers, "mlp": learned}
            base = self._base
            self._base = PruningEngine(base.model, base.tokenizer, config=DENSE, exit_heads=base.exit_heads,
                                       device=base.device, overlap_tokens=base.overlap_tokens,
                                       controllers=controllers, postprocess=base.postprocess,
                                       source_dir=base.source_dir)
            self._mlp_stamp = stamp
            logger.info("loaded the MLP controller from %s", path)
