"""AppContext: what every tab's handlers share: the engines, the settings, the app's output directory."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bioprune.app.engines import EngineHub
from bioprune.app.settings import AppSettings


@dataclass(frozen=True)
class AppContext:
    hub: EngineHub
    settings: AppSettings
    output_dir: Path  # the only directory the app writes to (batch outputs, staged charts)

    @property
    def batch_dir(self) -> Path:
        return self.output_dir / "batch"

    @property
    def charts_dir(self) -> Path:
        return self.output_dir / "charts"
