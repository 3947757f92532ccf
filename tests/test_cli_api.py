"""The CLI's edges: ``--version``, ``--device`` (cpu, cuda, cuda:N) and incomplete model directories as
one-line errors with exit 2, pruning flags on the dense model refused, no transformers loading bar,
and ``evaluate``'s progress bar. The core checks behind them: tests/test_api.py."""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers.utils import logging as hf_logging

import bioprune
from bioprune.cli import build_parser, main

from conftest import SAMPLE_PUBTATOR, annotate_cli, one_error_line

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_doc(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.txt").write_text("Cisplatin nephrotoxicity in rats.\n", encoding="utf-8")
    return tmp_path / "in.txt"


# --- the public API -------------------------------------------------------------------------------

def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"bioprune {bioprune.__version__}\n"


# --- --device ---------------------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch that cannot use CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_on_a_cpu_only_torch_is_one_line_exit_2(one_doc, tiny_model_dir, capsys, device):
    assert annotate_cli(tiny_model_dir, [one_doc], "out.pubtator", "--device", device) == 2
    one_error_line(capsys, f"bioprune: error: --device {device}: ", "use cpu")
    assert not Path("out.pubtator").exists()


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "meta"])
def test_a_device_that_is_not_one_is_one_line_exit_2(one_doc, tiny_model_dir, capsys, device):
    assert main(["evaluate", "--gold", str(SAMPLE_PUBTATOR), "--model", str(tiny_model_dir), "--device", device]) == 2
    one_error_line(capsys, f"--device {device}: ")


def test_cuda_n_is_accepted_up_to_the_gpus_there_are(fake_gpus, one_doc, tiny_model_dir, capsys):
    assert build_parser().parse_args(["evaluate", "--gold", "g", "--device", "cuda:1"]).device == "cuda:1"
    assert main(["evaluate", "--gold", str(SAMPLE_PUBTATOR), "--model", str(tiny_model_dir), "--device", "cuda:2"]) == 2
    one_error_line(capsys, "--device cuda:2: this machine has 2 GPU(s)")


# --- --model DIR without a tokenizer ----------------------------------------------------------------

def test_a_model_directory_without_a_tokenizer_is_one_line_exit_2(one_doc, tiny_model_dir, tmp_path, capsys):
    bare = tmp_path / "no-tokenizer"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, bare / name)
    assert main(["annotate", str(one_doc), "--output", "out.pubtator", "--model", str(bare)]) == 2
    one_error_line(capsys, f"{bare}: ", "no tokenizer (tokenizer.json or vocab.txt)")


# --- pruning flags on the dense model ---------------------------------------------------------------

@pytest.mark.parametrize("flags, named", [(["--lambda", "3"], "--lambda"),
                                          (["--frozen-context"], "--frozen-context"),
                                          (["--prune-layers", "1"], "--prune-layers"),
                                          (["--min-keep-ratio", "0.5", "--lambda", "1"], "--lambda, --min-keep-ratio")])
def test_pruning_flags_on_the_dense_model_are_refused(one_doc, tiny_model_dir, capsys, flags, named):
    assert annotate_cli(tiny_model_dir, [one_doc], "out.pubtator", "--controller", "none", *flags) == 2
    one_error_line(capsys, f"bioprune: error: {named}: has no effect on the dense model", "--controller rule")


def test_lambda_with_a_controller_runs_and_reports_tokens_pruned_and_flops(one_doc, pruning_model_dir, capsys):
    assert annotate_cli(pruning_model_dir, [one_doc, SAMPLE_PUBTATOR], "out.pubtator", "--controller", "rule",
                        "--lambda", 3, "--prune-layers", 1, 2, "--min-keep-ratio", 0.1) == 0
    assert "tokens pruned" in capsys.readouterr().err
    state = json.loads(Path("out.pubtator.summary.json").read_text())["state"]
    assert state["tokens"] > 0 and state["dense_flops"] > 0 and state["flops"] > 0


# --- output noise and progress ----------------------------------------------------------------------

def test_the_cli_hides_transformers_loading_bar(one_doc, tiny_model_dir, capsys):
    hf_logging.enable_progress_bar()  # as in a fresh process, whatever ran before
    try:
        assert main(["evaluate", "--gold", str(SAMPLE_PUBTATOR), "--model", str(tiny_model_dir)]) == 0
    finally:
        hf_logging.enable_progress_bar()
    captured = capsys.readouterr()
    assert "Loading weights" not in captured.err + captured.out
    assert "exact       micro" in captured.out


def test_evaluate_shows_a_progress_bar_unless_quiet(tiny_model_dir, capsys):
    argv = ["evaluate", "--gold", str(SAMPLE_PUBTATOR), "--model", str(tiny_model_dir)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "evaluate: " in err and "/3 [" in err and "doc/s" in err  # a tqdm bar over the 3 documents
    assert main([*argv, "--quiet"]) == 0
    assert "/3 [" not in capsys.readouterr().err


@pytest.mark.parametrize("file, damage", [("names.tsv.gz", "missing"), ("Chemical.exact.tsv.gz", "not gzip"),
                                          ("Disease.bag.tsv.gz", "no tabs"), ("Chemical.bag.tsv.gz", "corrupt body")])
def test_a_bad_linker_index_is_one_line_with_the_build_command(tiny_model_dir, tmp_path, capsys, file, damage):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    damaged = model / "linker" / file
    if damage == "missing":
        damaged.unlink()
    elif damage == "not gzip":
        damaged.write_bytes(b"not gzip")
    elif damage == "corrupt body":  # a valid gzip header, then deflate data that does not decode
        data = bytearray(gzip.compress(b"delirium\tD003693\n" * 200))
        data[20:30] = b"x" * 10
        damaged.write_bytes(bytes(data))
    else:
        damaged.write_bytes(gzip.compress(b"delirium D003693\n"))
    assert main(["evaluate", "--gold", str(SAMPLE_PUBTATOR), "--model", str(model), "--quiet"]) == 2
    one_error_line(capsys, str(damaged), "python -m training.build_linker_index")
    assert main(["evaluate", "--gold", str(SAMPLE_PUBTATOR), "--model", str(model), "--quiet", "--no-link"]) == 0
