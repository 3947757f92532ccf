"""What ``bioprune annotate`` may write (issue 15): never onto an input, never over a device, FIFO
or symlink, one run per output (the lock), a size limit per document, progress within a long
document, and a summary line that tells the configured pruning. None of them ever writes to a device
(on a bioprune without :mod:`bioprune.io.output_target`, the module fails at import, before any test).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bioprune.batch_run import DEFAULT_MAX_DOC_CHARS, RunStats, annotate_chunk, annotate_files
from bioprune.cli import main
from bioprune.errors import InputError
from bioprune.io.output_target import OutputLock, check_paths, claim_output, is_stdout
from bioprune.io.outputs import output_format
from bioprune.types import Document

from conftest import FIXTURES, annotate_cli, one_error_line, write_jsonl

ROOT = Path(__file__).resolve().parents[1]


def _listing(folder: Path) -> dict[str, bytes | str]:
    """Every entry of ``folder``: a file's bytes, or what kind of entry it is."""
    out = {}
    for p in sorted(folder.iterdir()):
        mode = os.lstat(p).st_mode
        out[p.name] = p.read_bytes() if stat.S_ISREG(mode) else f"mode {stat.S_IFMT(mode):o}"
    return out


@pytest.fixture
def src(tmp_path) -> Path:
    """An input of one document: "a", "Aspirin overdose."."""
    return write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "Aspirin overdose."}])


# --- 1. output = input ----------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["same path", "through a symlinked directory", "hard link", "errors side file",
                                 "journal"])
def test_output_that_is_an_input_is_refused_and_nothing_is_written(tmp_path, tiny_model_dir, capsys, how):
    gold = tmp_path / "same.pubtator"
    shutil.copy(FIXTURES / "sample.pubtator", gold)
    inputs, output = [gold], gold
    if how == "through a symlinked directory":
        (tmp_path / "alias").symlink_to(tmp_path)
        output = tmp_path / "alias" / "same.pubtator"
    elif how == "hard link":
        output = tmp_path / "linked.pubtator"
        os.link(gold, output)
    elif how == "errors side file":  # OUT.errors.jsonl is the input: the run would replace it at the end
        output = tmp_path / "out"
        inputs = [gold, tmp_path / "out.errors.jsonl"]
        write_jsonl(inputs[1], [{"id": "x", "body": "no text: an error record"}])
    elif how == "journal":
        output = tmp_path / "same"
        inputs = [tmp_path / "same.journal"]
        write_jsonl(inputs[0], [{"id": "j", "text": "Aspirin."}])
    before = _listing(tmp_path)
    assert annotate_cli(tiny_model_dir, inputs, output) == 2
    one_error_line(capsys, "is the input file")
    assert _listing(tmp_path) == before  # the gold mention and relation lines are still there


def test_library_refuses_an_output_that_is_its_input(tmp_path, tiny_engine):
    gold = tmp_path / "same.pubtator"
    shutil.copy(FIXTURES / "sample.pubtator", gold)
    with pytest.raises(InputError, match="is the input file"):
        annotate_files(tiny_engine, [gold], gold, output_format("pubtator"))
    assert gold.read_bytes() == (FIXTURES / "sample.pubtator").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.pubtator"]


# --- 2. devices, FIFOs, symlinks and standard output ----------------------------------------------

@pytest.mark.parametrize("which", ["output", "errors side file", "partial file"])
def test_fifo_output_is_refused_not_replaced(tmp_path, src, tiny_model_dir, capsys, which):
    out = tmp_path / "out.pubtator"
    fifo = {"output": out, "errors side file": tmp_path / "out.pubtator.errors.jsonl",
            "partial file": tmp_path / "out.pubtator.partial"}[which]
    os.mkfifo(fifo)
    before = _listing(tmp_path)
    assert annotate_cli(tiny_model_dir, [src], out) == 2
    assert "named pipe (FIFO)" in one_error_line(capsys)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert _listing(tmp_path) == before


def test_symlinked_output_is_refused_and_its_target_untouched(tmp_path, src, tiny_model_dir, capsys):
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me\n")
    link = tmp_path / "out.pubtator"
    link.symlink_to(target)
    before = _listing(tmp_path)
    assert annotate_cli(tiny_model_dir, [src], link) == 2
    assert "symbolic link" in one_error_line(capsys)
    assert link.is_symlink() and os.readlink(link) == str(target) and target.read_text() == "keep me\n"
    assert _listing(tmp_path) == before


def test_directory_output_is_refused(tmp_path, src, tiny_model_dir, capsys):
    (tmp_path / "outdir").mkdir()
    assert annotate_cli(tiny_model_dir, [src], tmp_path / "outdir") == 2
    assert "is a directory" in one_error_line(capsys)
    assert list((tmp_path / "outdir").iterdir()) == []


def test_dev_null_is_refused_and_stays_a_device(src, tiny_model_dir, capsys):
    with pytest.raises(InputError, match="character device"):  # checked first: nothing below runs otherwise
        check_paths("/dev/null")
    dev_before = sorted(os.listdir("/dev"))
    assert annotate_cli(tiny_model_dir, [src], "/dev/null") == 2
    assert "character device" in one_error_line(capsys)
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode) and sorted(os.listdir("/dev")) == dev_before


def test_dev_stdout_means_standard_output(src, tiny_model_dir, capsys):
    assert is_stdout("/dev/stdout") and is_stdout("-") and not is_stdout("out.pubtator")
    dev_before = sorted(os.listdir("/dev"))
    assert annotate_cli(tiny_model_dir, [src], "/dev/stdout") == 0
    assert capsys.readouterr().out.startswith("a|t|Aspirin overdose.\na|a|\n")
    assert os.path.islink("/dev/stdout") and sorted(os.listdir("/dev")) == dev_before
    assert main(["annotate", str(src), "--output", "/dev/stdout", "--resume", "--model", str(tiny_model_dir)]) == 2
    assert "need an output path" in one_error_line(capsys)


# --- 3. one run per output: the lock --------------------------------------------------------------

def test_second_lock_holder_is_refused_with_its_pid(tmp_path):
    out = tmp_path / "out.pubtator"
    with claim_output(out) as first:
        assert first.path.read_text().strip() == str(os.getpid())
        with pytest.raises(InputError, match=rf"another bioprune run .*PID {os.getpid()}"):
            OutputLock(out).acquire()  # flock is per open file: the same process is refused too
    assert not first.path.exists()  # removed when the run ends
    with claim_output(out):
        pass


def test_stale_lock_file_of_a_dead_run_does_not_block(tmp_path, src, tiny_model_dir):
    out = tmp_path / "out.pubtator"
    (tmp_path / "out.pubtator.lock").write_text("999999999\n")  # a killed run's file, no process holds it
    assert annotate_cli(tiny_model_dir, [src], out) == 0
    assert out.read_text().startswith("a|t|") and not (tmp_path / "out.pubtator.lock").exists()


def test_live_run_locks_its_output_and_a_killed_one_resumes_to_identical_output(tmp_path, tiny_model_dir, capsys):
    words = "famotidine induced delirium in patients with renal failure and seizures after cisplatin".split()
    rows = [{"id": f"d{i}", "text": " ".join(words[(i + j) % len(words)] for j in range(40))} for i in range(200)]
    src = write_jsonl(tmp_path / "many.jsonl", rows)
    out, full = tmp_path / "out.jsonl", tmp_path / "full.jsonl"
    opts = ["--format", "jsonl", "--chunk-size", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "bioprune.cli", "annotate", str(src), "--output", str(out),
                             "--model", str(tiny_model_dir), "--quiet", *opts], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journal, deadline, records = tmp_path / "out.jsonl.journal", time.time() + 180, 0
    try:
        while time.time() < deadline and proc.poll() is None and records < 6:
            try:
                records = json.loads(journal.read_text())["state"].get("records", 0)
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.005)
        assert proc.poll() is None and records >= 6, proc.stderr.read().decode()[-2000:] if proc.poll() else ""
        for extra in ([], ["--resume"]):  # a second run, and a --resume of the live run: both refused
            assert annotate_cli(tiny_model_dir, [src], out, *opts, *extra) == 2
            one_error_line(capsys, str(out), f"PID {proc.pid}", "another bioprune run")
        assert proc.poll() is None  # the live run was not disturbed
    finally:
        proc.send_signal(signal.SIGKILL)  # no cleanup, no finally blocks
        proc.communicate()
    assert (tmp_path / "out.jsonl.lock").exists() and not out.exists()  # killed: the lock file stays behind
    assert json.loads(journal.read_text())["state"]["records"] < len(rows)  # killed midway, before the end
    assert annotate_cli(tiny_model_dir, [src], out, *opts) == 2  # without --resume: the journal, not the lock
    assert "pass --resume" in one_error_line(capsys)
    assert annotate_cli(tiny_model_dir, [src], out, *opts, "--resume") == 0  # the stale lock does not block
    assert annotate_cli(tiny_model_dir, [src], full, *opts) == 0
    assert out.read_bytes() == full.read_bytes()  # as an uninterrupted run
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [r["id"] for r in rows]
    assert not (tmp_path / "out.jsonl.lock").exists()


# --- 7. size limit and progress within a long document ---------------------------------------------

def test_documents_over_the_size_limit_are_failed_records(tmp_path, tiny_model_dir, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "Aspirin overdose."},
                                               {"id": "huge", "text": "delirium " * 300},
                                               {"id": "b", "text": "Renal failure."}])
    out = tmp_path / "out.jsonl"
    assert annotate_cli(tiny_model_dir, [src], out, "--format", "jsonl", "--max-doc-chars", 1000) == 1
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b"]
    (error,) = [json.loads(line) for line in (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()]
    assert error["record_id"] == "huge" and "longer than the limit of 1,000" in error["reason"]
    assert "(1 failed, 0 deleted)" in capsys.readouterr().err
    assert annotate_cli(tiny_model_dir, [src], tmp_path / "all.jsonl", "--format", "jsonl", "--max-doc-chars", 0) == 0


def test_default_size_limit_stops_a_pathological_line(tmp_path, tiny_model_dir):
    line = tmp_path / "one-line.txt"
    line.write_text("Aspirin. " * (DEFAULT_MAX_DOC_CHARS // 9 + 1) + "\nRenal failure.\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert annotate_cli(tiny_model_dir, [line], out, "--format", "jsonl") == 1
    assert [json.loads(r)["id"] for r in out.read_text().splitlines()] == ["2"]


def test_progress_moves_within_one_long_document(tiny_engine):
    doc = Document("long", " ".join(["famotidine induced delirium in patients with renal failure."] * 300))
    (encoded,) = tiny_engine.encode([doc.text])
    assert len(encoded.windows) >= 4
    seen: list[int] = []
    chunk = annotate_chunk(tiny_engine, [doc], 0, batch_size=1, on_tokens=seen.append)
    assert len(seen) == len(encoded.windows)  # one step per window batch, all within this one document
    assert sum(seen) == sum(end - start + 2 for start, end in encoded.windows)  # [CLS] and [SEP] included
    assert chunk.stats.documents == 1 and [a.id for a, _ in chunk.pairs] == ["long"]


def test_progress_bar_counts_tokens_and_documents(tmp_path, src, tiny_model_dir, capsys):
    assert main(["annotate", str(src), "--output", str(tmp_path / "out.jsonl"), "--format", "jsonl",
                 "--model", str(tiny_model_dir)]) == 0
    err = capsys.readouterr().err
    assert "tok" in err and "docs=1" in err and "failed=0" in err


# --- 16. the summary line tells the configured pruning ---------------------------------------------

def test_summary_line_of_a_pruned_run_that_read_no_document(tmp_path, pruning_model_dir, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n", encoding="utf-8")
    assert annotate_cli(pruning_model_dir, [bad], tmp_path / "out.pubtator", "--controller", "rule",
                     "--prune-layers", 1, 2) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("annotated 0 documents (1 failed, 0 deleted)")
    assert "dense" not in line and "rule controller" in line


def test_summary_line_says_only_what_it_knows():
    empty = RunStats()
    assert "dense" not in empty.summary_line() and "dense" not in empty.summary_line(controller="mlp")
    assert empty.summary_line(controller="none").endswith("; dense (no pruning)")
    pruned = RunStats(documents=2, tokens=100, tokens_pruned=40, flops=60.0, dense_flops=100.0)
    assert pruned.summary_line(controller="rule").endswith("; tokens pruned 40.0%, FLOPs saved 40.0%")
    costly = RunStats(documents=1, tokens=100, flops=100.018, dense_flops=100.0)  # nothing left: the heads cost
    assert costly.summary_line().endswith("FLOPs saved -0.018% (the exit heads cost more than pruning saved)")
