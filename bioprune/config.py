"""PruningConfig: every knob of adaptive token pruning, validated, with units in the names."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields, replace
from typing import Literal

from bioprune.precision import PRECISIONS, Precision

Controller = Literal["none", "rule", "mlp"]
CONTROLLERS: tuple[str, ...] = ("none", "rule", "mlp")


@dataclass(frozen=True)
class OperatingPoint:
    """A controller's default λ, pruning layers and frozen context (the fields a config leaves None)."""

    aggressiveness: float
    prune_layers: tuple[int, ...]
    frozen_context: bool


# Each controller's operating point (docs/pruning.md; never chosen on test):
# rule: λ=2 after layer 2 keeps the BC5CDR dev drop under 1 point with the most FLOPs saved
#   (results/prune_aware_dev.json); it cannot reach 45% FLOPs saved at any λ.
# mlp: issue 16's fidelity target first: after layer 3 with frozen context, through the upper layers the
#   shipped model carries trained for that pruning (pruned_layers.safetensors), at the λ that saves the most
#   FLOPs with an agreement of at least DEFAULT_MIN_AGREEMENT with dense fp32 on the MEDLINE slice's first half
#   (results/pruned_layers_l3_trained_first.json; docs/pruning.md, "The default"). The point chosen before
#   fidelity was measured, λ=6 after layers 1 and 2 without frozen context (the smallest λ whose dev FLOPs
#   saved reach 45%, results/controllers_dev.json), changed several times more dense entities on held-out MEDLINE.
OPERATING_POINTS: dict[str, OperatingPoint] = {
    "none": OperatingPoint(2.0, (2,), False),  # unused by the dense model; the rule point keeps DENSE comparable
    "rule": OperatingPoint(2.0, (2,), False),
    "mlp": OperatingPoint(6.0, (3,), True),
}
OPERATING_POINT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(OperatingPoint))  # None in a config: the point's
DEFAULT_MIN_AGREEMENT = 0.97  # issue 16's bar for the default, on the first MEDLINE half that chooses it


class IgnoredSettingWarning(UserWarning):
    """A pruning setting given to the dense model (``controller="none"``), which ignores it.

    A warning, not an error, in the library: ``with_(controller="none")`` keeps the pruned
    config's other knobs, and that is a legitimate way to get the dense twin of a config. The CLI
    turns it into an error (a ``--lambda`` without ``--controller`` is a mistake there).
    ``settings`` names the fields, so a caller can name its own spelling of them (``--lambda``).
    """

    def __init__(self, settings: tuple[str, ...]):
        self.settings = settings
        super().__init__(f"{', '.join(settings)} set but ignored: controller='none' is the dense model, which "
                         "does not prune; choose controller='rule' or 'mlp', or leave them at their defaults")


def face(help: str, flag: str | None = None, key: str | None = None,
         ui: tuple[float, float, float] | None = None) -> dict:
    """Field metadata marking a setting every face offers (CLI flag, spaCy key, app control), with
    its help text; ``flag``/``key`` only where the field's own name will not do (``lambda`` is a
    Python keyword); ``ui`` the (low, high, step) of a number's slider in the app, where a range
    helps a person pick (the config's own checks still decide what is valid).
    :mod:`bioprune.options` derives each face's options from these."""
    return {"face": True, "help": help, "flag": flag, "key": key, "ui": ui}


@dataclass(frozen=True)
class PruningConfig:
    """How the engine prunes. ``controller="none"`` is the dense model.

    A token may leave at a pruning point only if the exit head there is confident it is outside
    every entity (p(O) >= 1 - exit_margin * aggressiveness), it is not a special token, it does not
    receive more than ``hub_attention_ratio`` times the uniform share of attention, and no token
    within ``guard_window_tokens`` looks like part of an entity (p(entity) >= guard_entity_prob).
    ``min_keep_ratio`` is a floor on the fraction of real tokens that stay.
    """

    controller: Controller = field(default="rule", metadata=face(
        "pruning controller: none = dense (no pruning), rule = thresholds, mlp = learned"))
    # λ and the pruning layers default to the controller's operating point (OPERATING_POINTS).
    # Recovery did not lower the dev drop of the rule controller (0.86 vs 0.84 points at λ=2) and cost
    # 1.5 points of FLOPs saved (results/prune_aware_dev.json), so it is opt-in.
    aggressiveness: float | None = field(default=None, metadata=face(
        "pruning aggressiveness λ: how far below certainty a token may be and still leave",
        flag="--lambda", key="lambda_", ui=(0.0, 16.0, 0.1)))  # 16: the largest λ the evaluation suite sweeps
    min_keep_ratio: float = field(default=0.3, metadata=face(
        "fraction of each sequence's real tokens that always stays", ui=(0.05, 1.0, 0.05)))
    prune_layers: tuple[int, ...] | None = field(default=None, metadata=face(
        "prune after this many layers have run (1..L-1)"))
    recovery: bool = field(default=False, metadata=face(
        "re-insert pruned tokens and re-run where the pruned result looks unsafe"))
    # Later layers still attend to pruned tokens' frozen states (keys and values only): on the BC5CDR
    # test set it halves the F1 drop but costs ~7 points of FLOPs saved; the tokens that stay keep the
    # context of those that left, which is what keeps the MLP's operating point faithful to dense.
    # None: the controller's operating point (on for the MLP, off for the rule).
    frozen_context: bool | None = field(default=None, metadata=face(
        "later layers still attend to pruned tokens' frozen states (more accurate, slower)"))
    # Run the layers after the pruning point that the model folder carries trained for pruning
    # (bioprune.pruned_layers, where they apply); False: the model's own layers, for comparison.
    trained_layers: bool = True
    exit_margin: float = 0.01  # 1 - p(O) a token may carry at λ = 1 (p(O) >= 0.99)
    hub_attention_ratio: float = 3.0  # keep tokens receiving > this × uniform attention share
    guard_entity_prob: float = 0.2  # a token this likely to be in an entity protects its neighbours
    guard_window_tokens: int = 1  # how many neighbours on each side it protects
    # Recovery triggers, chosen on dev with the train-only model (results/recovery_dev.json): recovery
    # on <= 15% of abstracts for both controllers at their operating points. The errors pruning adds
    # sit on kept tokens that lost context, so the trigger that pays counts uncertain kept tokens and
    # re-inserts the pruned tokens around them; a pruned token that still looks like an entity
    # (entity_loss) is rare at 0.5 and re-inserting those won nothing back at lower thresholds.
    loss_entity_prob: float = 0.5  # recovery trigger: a pruned token at least this likely an entity
    loss_next_to_entity: bool = False  # recovery trigger: a pruned token right next to a kept predicted entity
    spike_entropy_nats: float = 0.3  # recovery trigger: final entropy of a kept token near pruned ones
    spike_min_tokens: int = 32  # the entropy spike fires in a sequence only when this many kept tokens spike
    recovery_window_tokens: int = 8  # pruned tokens this close to a trigger are re-inserted
    mlp_threshold: float | None = None  # learned controller's keep threshold (None: its calibrated one)
    # Numeric precision of the forward (bioprune.precision): "auto" is bf16 where the device has native
    # bf16 (0.3% of dense fp32's entities changed on held-out MEDLINE, docs/pruning.md "Precision"), else fp32,
    # and at the default operating point "mixed" on a CPU with oneDNN int8 where the model's calibration
    # chose it; "fp32" with controller "none" is the exact dense model (DENSE).
    precision: Precision = field(default="auto", metadata=face(
        "numeric precision of the forward: auto = bf16 where the device has native bf16, else fp32 (at the "
        "default pruning, mixed on such a CPU); int8 = int8 matmuls on the CPU (oneDNN); "
        "mixed = int8 but in the layers the model's calibration keeps bf16"))
    # Concept normalisation (bioprune.linking): each entity gets its MeSH ID(s) after the abbreviation
    # pass. On by default: IDs are what users aggregate by (docs/linking.md); it adds their IDs, splits an
    # unlinked entity made wholly of dictionary names into them (linking.name_parts), and drops a Chemical it
    # links only to proteins or enzymes (a gene product: Linker.gene_product) and an entity it cannot link
    # that the model is unsure of (Postprocess.keeps), at a once-per-process index load.
    link: bool = field(default=True, metadata=face(
        "link each entity to MeSH IDs (PubTator 6th column, JSONL/CSV ids, BioC identifier, spaCy kb_id_) "
        "split an unlinked entity made of several dictionary names into them, and drop chemicals linked only "
        "to proteins or enzymes (gene products) and unlinked entities the model is unsure of "
        "(postprocess.json's unlinked_min_score)"))

    def __post_init__(self):
        if self.controller not in CONTROLLERS:
            raise ValueError(f"controller must be one of {CONTROLLERS}, got {self.controller!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in OPERATING_POINT_FIELDS:  # None: the controller's operating point
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(OPERATING_POINTS[self.controller], name))
        if not self.aggressiveness >= 0:  # also rejects NaN
            raise ValueError(f"aggressiveness (lambda) must be >= 0, got {self.aggressiveness}")
        if not 0.0 <= self.min_keep_ratio <= 1.0:
            raise ValueError(f"min_keep_ratio must be in [0, 1], got {self.min_keep_ratio}")
        if self.spike_min_tokens < 1 or self.recovery_window_tokens < 0:
            raise ValueError(f"spike_min_tokens must be >= 1 and recovery_window_tokens >= 0, got "
                             f"{self.spike_min_tokens} and {self.recovery_window_tokens}")
        layers = tuple(self.prune_layers)
        if any(k < 1 for k in layers) or list(layers) != sorted(set(layers)):
            raise ValueError(f"prune_layers must be increasing layer counts >= 1, got {self.prune_layers}")
        object.__setattr__(self, "prune_layers", layers)
        if self.controller == "none" and self.ignored_settings:
            warnings.warn(IgnoredSettingWarning(self.ignored_settings), stacklevel=3)  # the caller's line

    @property
    def ignored_settings(self) -> tuple[str, ...]:
        """Settings that differ from their defaults but do nothing here: every pruning knob, when
        the controller is ``"none"`` (the dense model); otherwise none."""
        if self.controller != "none":
            return ()
        return tuple(name for name, default in _dense_defaults().items() if getattr(self, name) != default)

    @property
    def enabled(self) -> bool:
        return self.controller != "none" and self.min_keep_ratio < 1.0 and bool(self.prune_layers)

    def with_(self, **changes) -> "PruningConfig":
        """A copy with ``changes``; λ, the pruning layers and frozen context stay as they are unless
        changed (pass ``aggressiveness=None``, ``prune_layers=None``, ``frozen_context=None`` for the
        new controller's operating point)."""
        return replace(self, **changes)


NOT_PRUNING_KNOBS = ("controller", "precision", "link")  # fields the dense model uses too


def _dense_defaults() -> dict:
    """Each pruning knob's default for the dense model, from the field declarations (λ and the
    pruning layers from the "none" operating point): the one place those defaults are written."""
    return {f.name: getattr(OPERATING_POINTS["none"], f.name, f.default) for f in fields(PruningConfig)
            if f.name not in NOT_PRUNING_KNOBS}


DENSE = PruningConfig(controller="none", precision="fp32")  # the exact dense fp32 model: the reference
DEFAULT = PruningConfig(controller="mlp")  # what every face runs with no options: the MLP's operating point, auto precision


def is_default(config: PruningConfig) -> bool:
    """Whether ``config`` is DEFAULT up to precision and linking (what the faces build with no pruning flags).

    Field by field, building no config: the forward asks on every call ("auto" at the default
    runs the calibrated int8), and a dense config with pruning knobs set would warn again."""
    return all(getattr(config, f.name) == getattr(DEFAULT, f.name) for f in fields(PruningConfig)
               if f.name not in ("precision", "link"))


def dense_twin(config: PruningConfig) -> PruningConfig:
    """``config`` without pruning: the dense model at its precision and linking."""
    return config.with_(controller="none", aggressiveness=None, prune_layers=None, frozen_context=None)


# Pruning that keeps the entities of dense fp32 (issue 16's fidelity target, agreement >= 0.97 on held-out
# MEDLINE): the MLP after layer 4 with frozen context, at the λ that saves the most FLOPs with an agreement
# of at least FAITHFUL_MIN_AGREEMENT on the MEDLINE slice's first half (a point of margin for the held-out
# second half; training/render_readme.py checks the choice; docs/pruning.md, "Faithful pruning").
FAITHFUL_MIN_AGREEMENT = 0.98
FAITHFUL = PruningConfig(controller="mlp", aggressiveness=6.0, prune_layers=(4,), frozen_context=True)
