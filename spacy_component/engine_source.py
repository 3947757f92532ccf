"""Where the component's engine comes from: a model (directory, Hub id or the shipped one) and settings.

An :class:`EngineSource` is the recipe (model, pruning settings, device); ``checked()`` resolves
the model to a local folder (``bioprune.model_files.resolve_model_dir``: a directory, or a Hub
repository downloaded whole) with cheap checks only, and ``load()`` turns it into a
:class:`~bioprune.PruningEngine`. The component loads it when first needed, so ``spacy.load``
reads only the copy that ``to_disk`` saved (``PruningEngine.save_pretrained``), never the original.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from spacy_component.errors import ConfigError

if TYPE_CHECKING:  # bioprune imports torch: only when an engine is really needed
    from bioprune.config import PruningConfig
    from bioprune.engine import PruningEngine

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSource:
    """A model (directory or Hub id) plus the PruningConfig and device to load it with."""

    model_dir: Optional[Union[str, Path]] = None  # None: the shipped model; else a directory or Hub id
    device: str = "cpu"
    config: Optional["PruningConfig"] = None  # None: bioprune.config.DEFAULT, what every face runs

    @property
    def controller(self) -> str:
        return self.pruning_config().controller

    @property
    def path(self) -> Path:
        if self.model_dir is not None:
            return Path(self.model_dir)
        from bioprune.engine import DEFAULT_MODEL_DIR

        return DEFAULT_MODEL_DIR

    def pruning_config(self) -> "PruningConfig":
        """The PruningConfig the engine runs with."""
        from bioprune.config import DEFAULT

        return DEFAULT if self.config is None else self.config

    def checked(self) -> "EngineSource":
        """This source with its model resolved to a local model folder, or a ConfigError showing the fix.

        Cheap: no weights are read. A directory must hold ``config.json``; any other name must be a
        Hub id that ``snapshot_download`` can fetch (or find in the cache), so it is fetched here,
        once. A pruning controller also needs the exit heads (and "mlp" its learned controller).
        """
        from bioprune.controllers import CONTROLLER_FILE
        from bioprune.exits import EXIT_HEADS_FILE
        from bioprune.model_files import ModelNotFoundError, resolve_model_dir

        if self.model_dir is None and not (self.path / "config.json").is_file():
            raise ConfigError("model", None, f"null means the shipped model, which is not in this install "
                              f"({self.path})", "path/to/model-directory")
        try:
            path = resolve_model_dir(self.path)
        except ModelNotFoundError as e:
            raise ConfigError("model", str(self.model_dir), f"is wrong: {e.reason}", None) from None
        needed = {"rule": [EXIT_HEADS_FILE], "mlp": [EXIT_HEADS_FILE, CONTROLLER_FILE]}.get(self.controller, [])
        what = {EXIT_HEADS_FILE: "exit heads", CONTROLLER_FILE: "a learned controller"}
        missing = [f"{what[name]} ({name})" for name in needed if not (path / name).is_file()]
        if missing:
            raise ConfigError("controller", self.controller,
                              f"needs {' and '.join(missing)}, which {path} does not have", "none")
        return replace(self, model_dir=path)

    def load(self) -> "PruningEngine":
        """Read the model and build the engine (seconds for a small model)."""
        from bioprune.config import DENSE
        from bioprune.engine import PruningEngine

        path = self.checked().path
        engine = PruningEngine.from_pretrained(path, config=DENSE, device=self.device)  # valid on any model
        try:
            return engine.with_config(self.pruning_config())
        except ValueError as e:
            raise ConfigError("controller", self.controller, f"cannot run on {path}: {e}", "none") from None
