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

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from bioprune.config import DEFAULT
from bioprune.controllers import CONTROLLER_FILE
from bioprune.precision import PRECISIONS
from bioprune.engine import DEFAULT_MODEL_DIR
from training import sweep_pruning
from training.analysis.common import MEDLINE_SLICE, command_line, json_safe, write_json_atomic

logger = logging.getLogger("fidelity_medline")


def controllers_available(model: str | Path) -> list[str]:
    """``none`` (dense) and ``rule``, plus ``mlp`` when the learned controller's file is beside the model."""
    return ["none", "rule"] + (["mlp"] if (Path(model) / CONTROLLER_FILE).is_file() else [])


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unlabelled", default=str(MEDLINE_SLICE), help="PubMed XML (the MEDLINE slice)")
    parser.add_argument("--half", choices=["first", "second", "all"], default="second",
                        help="second: the held-out half (the default); first: the half settings are chosen on")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--output", default="results/fidelity_medline.json")
    parser.add_argument("--lambdas", type=float, nargs="+",
                        help="default: each controller's operating point (its λ and pruning layers)")
    parser.add_argument("--limit-docs", type=int, default=0, help="0: every document of the half")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULT.precision,
                        help="precision of every row (the reference is dense fp32)")
    ns = parser.parse_args(argv)
    controllers = controllers_available(ns.model)
    if "mlp" not in controllers:
        logger.warning("no %s in %s: fidelity of the rule controller only", CONTROLLER_FILE, ns.model)
    result = {"command": command_line("-m training.fidelity_medline", argv), "model": ns.model,
              "unlabelled": ns.unlabelled, "half": ns.half, "controllers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for controller in controllers:
            sweep = sweep_pruning.main(["--model", ns.model, "--unlabelled", ns.unlabelled, "--half", ns.half,
                                        "--controller", controller,
                                        *(["--lambdas", *map(str, ns.lambdas)] if ns.lambdas else []),
                                        "--recovery", "off" if controller == "none" else "both",
                                        "--set", f"precision={ns.precision}", "--limit-docs", str(ns.limit_docs),
                                        "--threads", str(ns.threads), "--output", str(Path(tmp) / f"{controller}.json")])
            result["reference"] = sweep["gold"]
            result["n_documents"] = sweep["n_documents"]
            result["controllers"][controller] = sweep["rows"]
            for r in sweep["rows"]:
                logger.info("%s λ=%s recovery %s: agreement F1 %.4f, FLOPs saved %.1f%%", controller,
                            r["config"]["aggressiveness"], r["config"]["recovery"], r["f1"]["micro"],
                            100 * r["flops_saved_ratio"])
    write_json_atomic(ns.output, json_safe(result))
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main()
