"""What the evaluation suite runs: its rows (named configurations), grouped, built from the defaults.

Every configuration is ``PruningConfig().with_(...)``, so a changed default flows through every row
that does not vary that field. Torch-free, so the plan is testable without a model.

Groups:

* ``pareto``: dense; the rule controller over λ; the learned (MLP) controller over λ without and
  with recovery (only where the model directory holds ``controller.safetensors``); each controller
  at its own operating point's pruning layers, so its default is one of the rows.
* ``controllers``: rule vs MLP over λ at the *same* pruning layers, for each layer set (the
  operating points' by default): the comparison behind "the MLP dominates the rule controller".
* ``ablations`` (rule controller, defaults otherwise): ``min_keep_ratio``, the pruning layer(s),
  and recovery — on (both triggers), off, ``entity_loss`` alone, ``entropy_spike`` alone.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bioprune.config import DENSE, OPERATING_POINTS, PruningConfig

GROUPS: tuple[str, ...] = ("pareto", "controllers", "ablations")
DEFAULT_LAMBDAS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
DEFAULT_MIN_KEEP_RATIOS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.7)
DEFAULT_LAYER_SETS: tuple[tuple[int, ...], ...] = ((1,), (2,), (3,), (4,), (2, 4))
CONTROLLER_LAYER_SETS: tuple[tuple[int, ...], ...] = tuple(sorted(
    {OPERATING_POINTS[c].prune_layers for c in ("rule", "mlp")}, key=lambda ls: (len(ls), ls)))
MLP_FAMILIES = ("mlp", "mlp+recovery")
RECOVERY_VARIANTS = ("on", "off", "entity_loss only", "entropy_spike only")


@dataclass(frozen=True)
class SuiteRow:
    """One configuration of the suite.

    ``family`` is the curve or ablation it belongs to (``dense``, ``rule``, ``mlp``,
    ``mlp+recovery``, ``min_keep_ratio``, ``prune_layers``, ``recovery``); ``x`` the value varied
    along it (λ, the ratio, the layers as text, the recovery variant; None for dense).
    """

    group: str
    family: str
    name: str
    config: PruningConfig
    x: float | str | None = None

    @property
    def is_default(self) -> bool:
        """Its controller's default configuration (the rule one is the reference of every ablation)."""
        return self.config.enabled and self.config == PruningConfig(controller=self.config.controller)


def _num(x: float) -> str:
    return f"{x:g}"


def layers_text(layers: Sequence[int]) -> str:
    return "(" + ", ".join(map(str, layers)) + ("," if len(layers) == 1 else "") + ")"


def recovery_variant(variant: str, base: PruningConfig = PruningConfig()) -> PruningConfig:
    """``base`` with recovery ``on`` (both triggers as configured), ``off``, or one trigger alone.

    ``entity_loss only``: ``spike_entropy_nats = inf`` (no entropy can reach it).
    ``entropy_spike only``: ``loss_entity_prob = inf`` and ``loss_next_to_entity = False`` (both
    halves of the entity-loss trigger off).
    """
    changes = {"on": {"recovery": True}, "off": {"recovery": False},
               "entity_loss only": {"recovery": True, "spike_entropy_nats": math.inf},
               "entropy_spike only": {"recovery": True, "loss_entity_prob": math.inf, "loss_next_to_entity": False}}
    if variant not in changes:
        raise ValueError(f"unknown recovery variant {variant!r}; one of {RECOVERY_VARIANTS}")
    return base.with_(**changes[variant])


def pareto_rows(lambdas: Sequence[float] = DEFAULT_LAMBDAS, with_mlp: bool = True) -> list[SuiteRow]:
    """Dense, then rule over λ, then MLP without and with recovery over λ (``with_mlp``), each at its
    controller's operating-point layers."""
    rows = [SuiteRow("pareto", "dense", "dense", DENSE)]
    rows += [SuiteRow("pareto", "rule", f"rule λ={_num(lam)}", PruningConfig(controller="rule", aggressiveness=lam),
                      lam) for lam in lambdas]
    if with_mlp:
        for family, recovery in zip(MLP_FAMILIES, (False, True)):
            rows += [SuiteRow("pareto", family, f"{family} λ={_num(lam)}",
                              PruningConfig(controller="mlp", aggressiveness=lam, recovery=recovery), lam)
                     for lam in lambdas]
    return rows


def controller_rows(lambdas: Sequence[float] = DEFAULT_LAMBDAS, with_mlp: bool = True,
                    layer_sets: Sequence[Sequence[int]] = CONTROLLER_LAYER_SETS) -> list[SuiteRow]:
    """Rule and (``with_mlp``) MLP over λ at each of ``layer_sets``: family ``"rule (2,)"`` etc. Both
    without frozen context (the MLP's point has it, the rule's not): the controllers alone compared."""
    rows = []
    for ls in layer_sets:
        for controller in ("rule", "mlp") if with_mlp else ("rule",):
            family = f"{controller} {layers_text(ls)}"
            rows += [SuiteRow("controllers", family, f"{family} λ={_num(lam)}",
                              PruningConfig(controller=controller, aggressiveness=lam, prune_layers=ls,
                                            frozen_context=False), lam)
                     for lam in lambdas]
    return rows


def ablation_rows(min_keep_ratios: Sequence[float] = DEFAULT_MIN_KEEP_RATIOS,
                  layer_sets: Sequence[Sequence[int]] = DEFAULT_LAYER_SETS,
                  base: PruningConfig = PruningConfig()) -> list[SuiteRow]:
    """Rule controller (unless the base says otherwise): min_keep_ratio, prune layers, recovery, frozen context."""
    rows = [SuiteRow("ablations", "min_keep_ratio", f"min_keep_ratio={_num(r)}", base.with_(min_keep_ratio=r), r)
            for r in min_keep_ratios]
    rows += [SuiteRow("ablations", "prune_layers", f"prune_layers={layers_text(ls)}",
                      base.with_(prune_layers=tuple(ls)), layers_text(ls)) for ls in layer_sets]
    rows += [SuiteRow("ablations", "recovery", f"recovery {v}", recovery_variant(v, base), v)
             for v in RECOVERY_VARIANTS]
    rows += [SuiteRow("ablations", "frozen_context", f"frozen_context {v}", base.with_(frozen_context=v == "on"), v)
             for v in ("off", "on")]
    return rows


def suite_rows(groups: Sequence[str], lambdas: Sequence[float] = DEFAULT_LAMBDAS, with_mlp: bool = True,
               min_keep_ratios: Sequence[float] = DEFAULT_MIN_KEEP_RATIOS,
               layer_sets: Sequence[Sequence[int]] = DEFAULT_LAYER_SETS) -> list[SuiteRow]:
    """The rows of the chosen groups, in group order."""
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown groups {sorted(unknown)}; choose from {GROUPS}")
    rows: list[SuiteRow] = []
    if "pareto" in groups:
        rows += pareto_rows(lambdas, with_mlp)
    if "controllers" in groups:
        rows += controller_rows(lambdas, with_mlp)
    if "ablations" in groups:
        rows += ablation_rows(min_keep_ratios, layer_sets)
    return rows


def timed_groups(timing: Sequence[str] | None, groups: Sequence[str]) -> set[str]:
    """Which groups get wall-clock timing: ``None`` (flag absent) none, ``[]`` (bare ``--timing``)
    every selected group, else the named ones."""
    if timing is None:
        return set()
    unknown = set(timing) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown timing groups {sorted(unknown)}; choose from {GROUPS}")
    return set(groups) if not timing else set(timing) & set(groups)
