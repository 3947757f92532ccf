"""Per-token overhead of the pruning controllers, against one encoder layer (2 CPU threads).

    python -m training.benchmark_controller --output results/controller_overhead.json

Times ``importance`` of the rule and the learned (MLP) controller on the real signals of a batch
of BC5CDR-sized windows (batch 16 x 400 tokens, signals computed by the shipped model's exit head
after layer 2), and one encoder layer of the shipped model on the same batch, as microseconds per
token (median of ``--repeats``).
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from bioprune.config import PruningConfig
from bioprune.layer import run_layer
from bioprune.engine import DEFAULT_MODEL_DIR, PruningEngine
from bioprune.importance import token_signals
from training.analysis.common import command_line, parse_dataclass, write_json_atomic


@dataclass(frozen=True)
class OverheadArgs:
    model: str = str(DEFAULT_MODEL_DIR)  # model directory (with exit heads and controller.safetensors)
    output: str = "results/controller_overhead.json"  # results JSON
    batch: int = 16  # sequences
    tokens: int = 400  # tokens per sequence
    repeats: int = 20  # timed calls per measurement; the median is reported
    threads: int = 2  # torch intra-op threads


def _median_us(fn, repeats: int, n_tokens: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1e6 * statistics.median(times) / n_tokens


@torch.no_grad()
def main(args: OverheadArgs) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    engine = PruningEngine.from_pretrained(args.model)
    if "mlp" not in engine.controllers:
        raise SystemExit(f"{args.model}: no controller.safetensors (training/train_controller.py)")
    layers = engine.encoder.layers
    ids = torch.randint(1000, engine.tokenizer.vocab_size, (args.batch, args.tokens))
    valid = torch.ones(args.batch, args.tokens, dtype=torch.bool)
    hidden = engine.model.base_model.embeddings(input_ids=ids)
    hidden, _ = run_layer(layers[0], hidden, valid)
    after, attention = run_layer(layers[1], hidden, valid, need_signals=True)
    positions = torch.arange(args.tokens).expand(args.batch, -1)
    signals = token_signals(attention, engine.exit_heads(2, after), valid, after, positions, valid.sum(1), 2 / 6)
    n = args.batch * args.tokens
    config = PruningConfig()
    result = {
        "args": asdict(args),
        "command": command_line("-m training.benchmark_controller"),
        "us_per_token": {
            "rule_controller": _median_us(lambda: engine.controllers["rule"].importance(signals, config), args.repeats, n),
            "mlp_controller": _median_us(lambda: engine.controllers["mlp"].importance(signals, config), args.repeats, n),
            "exit_head": _median_us(lambda: engine.exit_heads(2, after), args.repeats, n),
            "encoder_layer": _median_us(lambda: run_layer(layers[2], after, valid), args.repeats, n),
            # the layer before a pruning point when the controller reads attention signals (rule; an MLP
            # trained with them): eager per-sequence attention instead of the fused kernel
            "encoder_layer_with_attention_signals": _median_us(
                lambda: run_layer(layers[2], after, valid, need_signals=True), args.repeats, n),
        },
    }
    us = result["us_per_token"]
    result["mlp_vs_layer"] = us["mlp_controller"] / us["encoder_layer"]
    write_json_atomic(args.output, result)
    print(json.dumps(us, indent=2), f"\nMLP controller = {result['mlp_vs_layer']:.1%} of one encoder layer per token")
    return result


if __name__ == "__main__":
    main(parse_dataclass(OverheadArgs, __doc__))
