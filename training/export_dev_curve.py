"""Copy a run's per-epoch dev scores from its training_run.json into results/dev_curve.json.

    python -m training.export_dev_curve runs/dev-minilm/training_run.json

Runs live outside git (runs/ is ignored); the dev curve that chose the recipe is kept as a result.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a finetune run's training_run.json")
    source = parser.parse_args().run
    try:
        run = json.loads(Path(source).read_text())
        a = run["args"]
    except (OSError, ValueError, KeyError) as err:
        parser.exit(2, f"export_dev_curve: {source}: not a readable training_run.json ({err})\n")
    command = (f"python -m training.finetune --train {' '.join(Path(p).name for p in a['train'])} "
               f"--dev {Path(a['dev']).name} --epochs {a['epochs']} --learning-rate {a['learning_rate']} "
               f"--batch-size {a['batch_size']}")
    out = {"command": command, "source": source, **{k: run[k] for k in ("args", "data", "n_train_abstracts", "epochs")}}
    Path("results").mkdir(exist_ok=True)
    Path("results/dev_curve.json").write_text(json.dumps(out, indent=2))
