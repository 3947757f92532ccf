#!/usr/bin/env bash
# Issue 16's GPU check (item 8): on a CUDA machine, dense fp32 against dense bf16, the default (the MLP
# after layer 3, frozen context), faithful pruning and the MLP after layers 1 and 2, batch 1 and 64, timed by training/benchmark_pruning.py, and
# their BC5CDR test F1 and agreement by `bioprune evaluate`. Linking is off: it runs on the CPU
# alike for every setting. Every system first annotates all the abstracts at each batch size, untimed: CUDA
# meets each new shape once (pruned batches bring many), and a shorter warm-up left that cost in the first
# timed round. docs/pruning.md, "On a GPU", shows what it wrote (results/gpu/).
#     bash training/gpu_check.sh DATA/bc5cdr/CDR_TestSet.PubTator.txt results/gpu
set -euo pipefail
D=${1:?the BC5CDR test PubTator file}; OUT=${2:?the folder to write the results to}
mkdir -p "$OUT"
FAITHFUL="--controller mlp --lambda 6 --prune-layers 4 --frozen-context"
B="python3 -m training.benchmark_pruning --data $D --device cuda --batch-sizes 1 64 --warmup-docs 500 --no-link"
$B --controller none --precision bf16 --output "$OUT/benchmark_default.json"
$B $FAITHFUL --precision bf16 --output "$OUT/benchmark_faithful.json"
E="python3 -m bioprune.cli evaluate --gold $D --device cuda --batch-size 64 --no-link --quiet"
$E --controller none --precision fp32 --output "$OUT/evaluate_dense_fp32.json"
$E --controller none --precision bf16 --output "$OUT/evaluate_default.json"
$E $FAITHFUL --precision bf16 --output "$OUT/evaluate_faithful.json"
$B --controller mlp --lambda 6 --prune-layers 1 2 --no-frozen-context --precision bf16 --output "$OUT/benchmark_mlp.json"
$B --precision bf16 --output "$OUT/benchmark_pruned_default.json"
$E --precision bf16 --output "$OUT/evaluate_pruned_default.json"
