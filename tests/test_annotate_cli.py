"""``bioprune annotate`` end to end on the tiny models: every format in and out, nothing lost, the
error report and exit status, duplicates, and resuming an interrupted run to identical output."""
from __future__ import annotations

import csv
import gzip
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from bioprune.batch_run import limit_malloc_growth
from bioprune.cli import main
from bioprune.io.checkpoint import CheckpointedOutput, journal_path
from bioprune.io.inputs import iter_records
from bioprune.linking import load_linker

from conftest import FIXTURES, annotate_cli, docs_in, one_error_line, write_jsonl

LEGACY = FIXTURES / "medline_legacy.xml"
ALL_INPUTS = [LEGACY, FIXTURES / "pubmed_current.xml", FIXTURES / "sample.bioc.xml", FIXTURES / "sample.bioc.json",
              FIXTURES / "sample.jsonl", FIXTURES / "sample.pubtator"]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_input_format_every_document_once_in_order(tmp_path, tiny_model_dir, capsys):
    gz = tmp_path / "current.xml.gz"
    gz.write_bytes(gzip.compress(ALL_INPUTS[1].read_bytes()))
    text = tmp_path / "notes.txt"
    text.write_text("Aspirin overdose.\n\nCisplatin nephrotoxicity.\n", encoding="utf-8")
    inputs = [ALL_INPUTS[0], gz, *ALL_INPUTS[2:], text]
    out = tmp_path / "out.jsonl"
    assert annotate_cli(tiny_model_dir, inputs, out, "--format", "jsonl", "--chunk-size", 4) == 0
    rows = _jsonl(out)
    expected = docs_in(r for p in inputs for r in iter_records(p))
    assert [(r["id"], r["text"]) for r in rows] == [(d.id, d.text) for d in expected]
    assert len(rows) == 4 + 3 + 2 + 2 + 4 + 3 + 2
    for row in rows:
        assert all(row["text"][e["start"]:e["end"]] == e["text"] for e in row["entities"])
    deleted = _jsonl(tmp_path / "out.jsonl.deleted.jsonl")
    assert [d["record_id"] for d in deleted] == ["90000001", "90000002", "90000003"]
    assert not (tmp_path / "out.jsonl.errors.jsonl").exists()
    state = json.loads((tmp_path / "out.jsonl.summary.json").read_text())["state"]
    assert (state["documents"], state["deleted"], state["errors"], state["records"]) == (20, 3, 0, 23)
    assert sum(state["entities"].values()) == sum(len(r["entities"]) for r in rows)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("annotated 20 documents (0 failed, 3 deleted)") and "docs/s" in line


@pytest.mark.parametrize("fmt", ["pubtator", "jsonl", "csv", "bioc"])
def test_each_output_format_lists_every_document_once(tmp_path, tiny_model_dir, fmt):
    src = write_jsonl(tmp_path / "in.jsonl", [
        {"id": "a", "text": "Famotidine-associated delirium."}, {"id": "empty", "text": ""},
        {"pmid": "b", "title": "Cisplatin nephrotoxicity.", "abstract": "Renal failure in rats."},
        {"pmid": "c", "title": "Title only."}])
    out = tmp_path / f"out.{fmt}"
    assert annotate_cli(tiny_model_dir, [src], out, "--format", fmt, "--chunk-size", 3) == 0
    ids = ["a", "empty", "b", "c"]
    texts = dict((d.id, d.text) for d in docs_in(iter_records(src)))
    if fmt == "pubtator":
        assert [line.split("|t|")[0] for line in out.read_text().splitlines() if "|t|" in line] == ids
        assert [d.id for d in docs_in(iter_records(out))] == ids
    elif fmt == "jsonl":
        assert [r["id"] for r in _jsonl(out)] == ids
    elif fmt == "csv":
        with open(out, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert list(dict.fromkeys(r["id"] for r in rows)) == ids
        assert [r for r in rows if r["id"] == "empty"] == [
            {"id": "empty", "start": "", "end": "", "label": "", "text": "", "score": "", "ids": ""}]
        for r in rows:
            if r["start"]:
                assert texts[r["id"]][int(r["start"]):int(r["end"])] == r["text"]
    else:
        collection = json.loads(out.read_text())
        assert [d["id"] for d in collection["documents"]] == ids
        for doc in collection["documents"]:
            for passage in doc["passages"]:
                for a in passage["annotations"]:
                    loc = a["locations"][0]
                    assert texts[doc["id"]][loc["offset"]:loc["offset"] + loc["length"]] == a["text"]


def test_ids_by_default_and_none_with_no_link(tmp_path, tiny_model_dir):
    """--link (the default) writes each entity's MeSH IDs from the model's linker/ index; --no-link
    writes the same entities without IDs (PubTator's sixth column "-")."""
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "Famotidine-associated delirium and seizures."},
                                              {"id": "b", "text": "Cisplatin nephrotoxicity. Renal failure."}])
    linked, plain = tmp_path / "linked.jsonl", tmp_path / "plain.jsonl"
    assert annotate_cli(tiny_model_dir, [src], linked, "--format", "jsonl") == 0
    assert annotate_cli(tiny_model_dir, [src], plain, "--format", "jsonl", "--no-link") == 0
    linker = load_linker(str(tiny_model_dir / "linker"))
    for with_ids, without in zip(_jsonl(linked), _jsonl(plain)):
        entities = with_ids["entities"]
        assert [{**e, "ids": []} for e in entities] == without["entities"]
        want = linker.link(with_ids["text"], [(e["text"], e["label"]) for e in entities])
        assert [e["ids"] for e in entities] == [list(lk.ids) for lk in want]
    out = tmp_path / "plain.pubtator"
    assert annotate_cli(tiny_model_dir, [src], out, "--no-link") == 0
    mention_lines = [line.split("\t") for line in out.read_text().splitlines() if "\t" in line]
    assert mention_lines and all(len(cols) == 6 and cols[5] == "-" for cols in mention_lines)


def _malformed_inputs(tmp_path) -> list[Path]:
    pubtator = tmp_path / "bad.pubtator"
    pubtator.write_text("1|t|Aspirin.\n1|a|Overdose.\n\n2|t|Cisplatin.\n2|a|x\n2\t0\t99\tCisplatin\tChemical\n\n"
                        "3|t|Haloperidol.\n3|a|Seizures.\n", encoding="utf-8")
    text = tmp_path / "bytes.txt"
    text.write_bytes(b"Famotidine.\nCaf\xff\xfe.\nDelirium.\n")
    truncated = tmp_path / "cut.xml"
    data = LEGACY.read_bytes()
    truncated.write_bytes(data[: data.index(b"90000103")])
    jsonl = write_jsonl(tmp_path / "x.jsonl", [{"id": "dup", "text": "First dup."}, {"id": "long", "text": "x"},
                                                {"id": "dup", "text": "Second dup."}])
    long_text = ("Famotidine induced delirium in patients with renal failure. " * 850).strip()
    assert len(long_text) > 50_000
    jsonl.write_text(jsonl.read_text().replace('"x"', json.dumps(long_text)) + "{not json\n", encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    return [pubtator, text, truncated, jsonl, empty]


def test_malformed_records_go_to_the_error_report_and_the_run_goes_on(tmp_path, tiny_model_dir, capsys):
    inputs = _malformed_inputs(tmp_path)
    out = tmp_path / "out.jsonl"
    assert annotate_cli(tiny_model_dir, inputs, out, "--format", "jsonl", "--chunk-size", 2) == 1
    rows = _jsonl(out)
    assert [r["id"] for r in rows] == ["1", "3", "1", "3", "90000101", "90000102", "dup", "long", "dup"]
    assert [r["text"] for r in rows if r["id"] == "dup"] == ["First dup.", "Second dup."]  # duplicates kept, in order
    (long_row,) = [r for r in rows if r["id"] == "long"]
    assert len(long_row["text"]) > 50_000
    assert all(long_row["text"][e["start"]:e["end"]] == e["text"] for e in long_row["entities"])
    errors = _jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert [(Path(e["file"]).name, e["record_id"], e["line"]) for e in errors] == [
        ("bad.pubtator", "2", 6), ("bytes.txt", "2", 2), ("cut.xml", None, errors[2]["line"]),
        ("x.jsonl", None, 4), ("empty.txt", None, None)]
    assert all(e["reason"] for e in errors) and "outside the text" in errors[0]["reason"]
    assert "malformed XML" in errors[2]["reason"] and errors[2]["line"] is not None
    state = json.loads((tmp_path / "out.jsonl.summary.json").read_text())["state"]
    assert state["documents"] + state["errors"] + state["deleted"] == state["records"] == 9 + 5
    assert "(5 failed, 0 deleted)" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["annotate", "missing.txt", "--output", "o.pubtator"], "missing.txt: no such file"),
    (["annotate", "IN", "--output", "o.pubtator", "--chunk-size", "0"], "--chunk-size: must be >= 1"),
    (["annotate", "IN", "--output", "-", "--resume"], "need an output path"),
    (["annotate", "IN", "--output", "o.pubtator", "--model", "no-such-model"], "no-such-model: no such model directory"),
    (["annotate", "IN", "--output", "o.pubtator", "--batch-size", "0"], "--batch-size must be >= 1"),
])
def test_fatal_errors_exit_2_with_one_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "IN").write_text("Aspirin.\n", encoding="utf-8")
    assert main(argv) == 2
    one_error_line(capsys, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["IN"]


class _Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in the CLI catches it or cleans up."""


def _crash_after(monkeypatch, commits: int) -> None:
    """Kill the run inside the commit after ``commits`` chunks: that chunk's bytes are written, its
    journal entry is not (the torn state a real kill can leave)."""
    original = CheckpointedOutput._write_journal
    calls = {"n": 0}

    def write_journal(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > commits + 1:  # the first call is the start of the run
            raise _Killed()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CheckpointedOutput, "_write_journal", write_journal)


@pytest.mark.parametrize("fmt", ["pubtator", "bioc", "csv"])
def test_interrupted_run_resumes_to_identical_output(tmp_path, tiny_model_dir, monkeypatch, capsys, fmt):
    inputs = [LEGACY, *_malformed_inputs(tmp_path)[:2], FIXTURES / "sample.jsonl"]
    opts = ["--format", fmt, "--chunk-size", 2]
    full, cut = tmp_path / "full", tmp_path / "cut"
    rc_full = annotate_cli(tiny_model_dir, inputs, full, *opts)
    assert rc_full == 1  # the malformed inputs
    with monkeypatch.context() as patch:
        _crash_after(patch, commits=3)
        with pytest.raises(_Killed):
            annotate_cli(tiny_model_dir, inputs, cut, *opts)
    assert not cut.exists() and journal_path(cut).exists()
    assert (tmp_path / "cut.partial").stat().st_size > json.loads(journal_path(cut).read_text())["sizes"]["output"]
    capsys.readouterr()
    assert annotate_cli(tiny_model_dir, inputs, cut, *opts) == 2  # without --resume: refused, nothing touched
    assert "pass --resume" in capsys.readouterr().err
    assert annotate_cli(tiny_model_dir, inputs, cut, *opts, "--batch-size", 3, "--resume") == 2
    err = capsys.readouterr().err
    assert "cannot resume another job" in err and "batch_size was 16, now 3" in err
    assert annotate_cli(tiny_model_dir, inputs, cut, *opts, "--resume") == rc_full
    assert cut.read_bytes() == full.read_bytes()
    for side in ("errors", "deleted"):
        assert (tmp_path / f"cut.{side}.jsonl").read_bytes() == (tmp_path / f"full.{side}.jsonl").read_bytes()
    states = [json.loads((tmp_path / f"{n}.summary.json").read_text())["state"] for n in ("full", "cut")]
    for state in states:
        state.pop("wall_s")
    assert states[0] == states[1]
    assert not journal_path(cut).exists() and not (tmp_path / "cut.partial").exists()
    before = cut.stat().st_mtime_ns
    assert annotate_cli(tiny_model_dir, inputs, cut, *opts, "--resume") == rc_full  # finished: nothing to do
    assert cut.stat().st_mtime_ns == before


def test_standard_output_and_error_lines_on_stderr(tmp_path, tiny_model_dir, capsys):
    src = tmp_path / "in.txt"
    src.write_bytes(b"Aspirin overdose.\nCaf\xff\n")
    assert annotate_cli(tiny_model_dir, [src], "-") == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("1|t|Aspirin overdose.\n1|a|\n")
    assert '"record_id": "2"' in captured.err and "not valid UTF-8" in captured.err


GLIBC_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                                reason="glibc only")


@GLIBC_ONLY
def test_malloc_growth_limits_are_accepted_by_glibc():
    # mallopt answers 0 for a parameter it does not know: this fails if any constant is wrong
    assert limit_malloc_growth("flat") is True
    assert limit_malloc_growth("fast") is True
    with pytest.raises(ValueError, match="memory mode"):
        limit_malloc_growth("small")


_FAULTS = """
import resource, sys
from bioprune.batch_run import limit_malloc_growth
assert limit_malloc_growth(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    block = b"x" * (64 << 20)  # a 64 MiB buffer written through, then freed: a forward's big tensor
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@GLIBC_ONLY
def test_fast_memory_faults_a_big_buffer_in_once_and_flat_every_time():
    faults = {mode: int(subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True,
                                       check=True).stdout) for mode in ("fast", "flat")}
    pages = (64 << 20) // 4096
    assert faults["fast"] < 2 * pages  # the freed heap served the next nine
    assert faults["flat"] > 8 * pages  # mapped afresh each time
