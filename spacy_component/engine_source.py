"""Where the component's engine comes from, and how its model files are saved beside a pipeline.

An :class:`EngineSource` is the recipe (model directory, pruning settings, device); ``load()``
turns it into a :class:`~bioprune.PruningEngine`. The component loads it when first needed, so
``spacy.load`` reads only the copy that ``to_disk`` saved, never the original directory.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from spacy_component.errors import ConfigError

if TYPE_CHECKING:  # bioprune imports torch: only when an engine is really needed
    from bioprune.config import PruningConfig
    from bioprune.engine import PruningEngine

logger = logging.getLogger(__name__)

EXIT_HEADS_FILE = "exit_heads.safetensors"  # as bioprune.exits.EXIT_HEADS_FILE
SKIPPED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")  # weights bioprune never reads (it loads safetensors)


@dataclass(frozen=True)
class EngineSource:
    """A model directory plus the pruning settings and device to load it with."""

    model_dir: Optional[Union[str, Path]] = None  # None: the shipped model
    device: str = "cpu"
    controller: str = "default"  # "default" | "none" | "rule" | "mlp"
    aggressiveness: Optional[float] = None  # λ; None: the controller's operating point
    min_keep_ratio: float = 0.3
    recovery: bool = True

    def __post_init__(self):
        try:  # PruningConfig's own checks, with the component's error message
            self.pruning_config(has_exit_heads=True)
        except ValueError as e:
            raise ConfigError("controller", self.controller, f"with these settings is invalid ({e})", "rule") from None

    @property
    def path(self) -> Path:
        if self.model_dir is not None:
            return Path(self.model_dir)
        from bioprune.engine import DEFAULT_MODEL_DIR

        return DEFAULT_MODEL_DIR

    def pruning_config(self, has_exit_heads: bool) -> "PruningConfig":
        """The PruningConfig these settings mean for a model with or without exit heads."""
        from bioprune.config import DENSE, PruningConfig

        if self.controller in ("none", "default"):  # the engine's default: dense, pruning is opt-in
            return DENSE
        return PruningConfig(controller=self.controller, aggressiveness=self.aggressiveness,
                             min_keep_ratio=self.min_keep_ratio, recovery=self.recovery)

    def check_model_dir(self) -> None:
        """Early, cheap checks when the directory is there (it may legitimately not be: see module doc)."""
        path = self.path
        if not (path / "config.json").is_file():
            logger.debug("model directory %s not present yet; it is read on first use", path)
            return
        if self.controller in ("rule", "mlp") and not (path / EXIT_HEADS_FILE).is_file():
            raise ConfigError("controller", self.controller,
                              f"needs exit heads ({EXIT_HEADS_FILE}), which {path} does not have", "none")

    def load(self) -> "PruningEngine":
        """Read the model and build the engine (seconds for a small model)."""
        from bioprune.config import DENSE
        from bioprune.engine import PruningEngine

        path = self.path
        if not (path / "config.json").is_file():
            what = "the shipped model is not in this install" if self.model_dir is None else \
                "is not a model directory (no config.json)"
            raise ConfigError("model", str(path), what, None)
        engine = PruningEngine.from_pretrained(path, config=DENSE, device=self.device)  # valid on any model
        try:
            return engine.with_config(self.pruning_config(engine.exit_heads is not None))
        except ValueError as e:
            raise ConfigError("controller", self.controller, f"cannot run on {path}: {e}", "none") from None


def save_model_files(engine: "PruningEngine | None", source_dir: Optional[Path], target: Path) -> None:
    """Write the model to ``target``: copy ``source_dir``'s files if given, else save ``engine``'s.

    Copying keeps the files exactly as shipped (fp16 weights stay fp16); the engine is saved only
    when it has no directory behind it (built in memory).
    """
    target.mkdir(parents=True, exist_ok=True)
    if source_dir is not None and (source_dir / "config.json").is_file():
        if source_dir.resolve() == target.resolve():
            return
        for file in sorted(source_dir.iterdir()):
            if file.is_file() and file.suffix not in SKIPPED_SUFFIXES:
                shutil.copy2(file, target / file.name)
        return
    if engine is None:
        raise FileNotFoundError(f"no model to save: {source_dir} is not a model directory and no engine is loaded")
    engine.model.save_pretrained(str(target), safe_serialization=True)
    engine.tokenizer.save_pretrained(str(target))
    if engine.exit_heads is not None:
        engine.exit_heads.save(target)
