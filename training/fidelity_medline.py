"""Fidelity on unlabelled text: agreement of pruned with dense entities on the MEDLINE slice's
second half (held out: the first half is for choosing settings and calibrating the MLP threshold).

    python -m training.fidelity_medline --output results/fidelity_medline.json [--precision fp32]

The dense model's own entities are the reference; a pruned configuration's exact-match F1 against
them is its agreement. Runs ``training/sweep_pruning.py --unlabelled SLICE --half second`` once per
controller (none: the dense model at ``--precision``; rule; mlp when ``controller.safetensors`` is
beside the model), recovery on and off for the pruning ones, at the given λ values, every row at
``--precision`` (default auto: what the engine runs by default), and gathers the rows into one file.
The reference is always the exact dense fp32 model.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bioprune.config import DEFAULT
from bioprune.controllers import CONTROLLER_FILE
from bioprune.precision import PRECISIONS
from bioprune.engine import DEFAULT_MODEL_DIR
from training import sweep_pruning
from training.analysis.common import MEDLINE_SLICE, command_line, parse_dataclass, write_json_atomic

logger = logging.getLogger("fidelity_medline")


@dataclass(frozen=True)
class MedlineFidelityArgs:
    unlabelled: str = str(MEDLINE_SLICE)  # PubMed XML (the MEDLINE slice)
    half: Literal["first", "second", "all"] = "second"  # second: the held-out half; first: where settings are chosen
    model: str = str(DEFAULT_MODEL_DIR)  # model directory (controller.safetensors beside it for the mlp rows)
    output: str = "results/fidelity_medline.json"  # results JSON
    lambdas: tuple[float, ...] = ()  # default: each controller's operating point (its λ and pruning layers)
    limit_docs: int = 0  # 0: every document of the half
    threads: int = 2  # torch intra-op threads
    precision: Literal[PRECISIONS] = DEFAULT.precision  # precision of every row (the reference is dense fp32)


def main(argv=None) -> dict:
    args = parse_dataclass(MedlineFidelityArgs, __doc__, argv)
    controllers = ["none", "rule"] + (["mlp"] if (Path(args.model) / CONTROLLER_FILE).is_file() else [])
    if "mlp" not in controllers:
        logger.warning("no %s in %s: fidelity of the rule controller only", CONTROLLER_FILE, args.model)
    result = {"command": command_line("-m training.fidelity_medline", argv), "model": args.model,
              "unlabelled": args.unlabelled, "half": args.half, "controllers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for controller in controllers:
            sweep = sweep_pruning.main(["--model", args.model, "--unlabelled", args.unlabelled, "--half", args.half,
                                        "--controller", controller,
                                        *(["--lambdas", *map(str, args.lambdas)] if args.lambdas else []),
                                        "--recovery", "off" if controller == "none" else "both",
                                        "--set", f"precision={args.precision}", "--limit-docs", str(args.limit_docs),
                                        "--threads", str(args.threads),
                                        "--output", str(Path(tmp) / f"{controller}.json")])
            result["reference"] = sweep["gold"]
            result["n_documents"] = sweep["n_documents"]
            result["controllers"][controller] = sweep["rows"]
            for r in sweep["rows"]:
                logger.info("%s λ=%s recovery %s: agreement F1 %.4f, FLOPs saved %.1f%%", controller,
                            r["config"]["aggressiveness"], r["config"]["recovery"], r["f1"]["micro"],
                            100 * r["flops_saved_ratio"])
    write_json_atomic(args.output, result)  # strict JSON: write_json_atomic applies json_safe
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main()
