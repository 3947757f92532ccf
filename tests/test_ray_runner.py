"""The Ray Data runner in local mode: the same bytes per file as a single-process run, and resume.

Skipped when Ray is not installed (``pip install "bioprune[ray]"``; the ``test`` extra includes it).
Ray starts once for the module (``num_cpus=2``), so these tests are few and small.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bioprune.cli import main
from bioprune.errors import InputError
from bioprune.io.output_target import OutputLock
from bioprune.ray import RayJob, init_local_ray, shard_name, shard_outputs

from conftest import FIXTURES, one_error_line


def test_shard_names_and_collisions():
    assert shard_name("/data/medline16n0902.xml.gz") == "medline16n0902"
    assert shard_name("a/b.pubtator") == "b" and shard_name("notes") == "notes"
    job = RayJob(inputs=("x/a.xml.gz", "y/a.xml"), output_dir="out")
    with pytest.raises(InputError, match="same shard a.pubtator"):
        shard_outputs(job, ".pubtator")


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason='Ray is not installed: pip install "bioprune[ray]"')
    init_local_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def _args(model_dir, inputs, output, *extra) -> list[str]:
    return ["annotate", *map(str, inputs), "--output", str(output), "--model", str(model_dir), "--quiet",
            "--chunk-size", "2", *map(str, extra)]


def test_ray_output_equals_single_process_per_file_and_resume_skips_done_files(tmp_path, tiny_model_dir,
                                                                                local_ray, capsys):
    bad = tmp_path / "bad.pubtator"
    bad.write_text("1|t|Aspirin.\n1|a|Overdose.\n\n2|t|Cisplatin.\n2\t0\t99\tCisplatin\tChemical\n", encoding="utf-8")
    inputs = [FIXTURES / "medline_legacy.xml", FIXTURES / "sample.jsonl", bad]
    out = tmp_path / "ray-out"
    assert main(_args(tiny_model_dir, inputs, out, "--ray", "--num-actors", 2)) == 1  # bad.pubtator has an error
    assert "on Ray (actors: 2)" in capsys.readouterr().err
    for source in inputs:
        single = tmp_path / f"single-{source.name}"
        main(_args(tiny_model_dir, [source], single))
        shard = out / f"{shard_name(source)}.pubtator"
        assert shard.read_bytes() == single.read_bytes(), source.name
    assert (out / "bad.pubtator.errors.jsonl").read_text() == (tmp_path / "single-bad.pubtator.errors.jsonl").read_text()
    assert (out / "medline_legacy.pubtator.deleted.jsonl").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert [Path(s["input"]).name for s in summary["shards"]] == [p.name for p in inputs]
    assert summary["totals"]["documents"] == 4 + 4 + 1 and summary["totals"]["errors"] == 1
    assert summary["totals"]["deleted"] == 2 and all(s["peak_rss_mb"] > 0 for s in summary["shards"])
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*.pubtator")}
    assert main(_args(tiny_model_dir, inputs, out, "--ray", "--resume")) == 1  # all done: read back, not redone
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.pubtator")} == mtimes
    assert json.loads((out / "summary.json").read_text())["totals"]["documents"] == 9


def test_ray_driver_refuses_a_shard_output_that_is_an_input_before_writing(tmp_path, tiny_model_dir, capsys):
    pytest.importorskip("ray", reason='Ray is not installed: pip install "bioprune[ray]"')
    out = tmp_path / "out"
    out.mkdir()
    gold = out / "a.pubtator"  # the shard of a.pubtator in out/ is out/a.pubtator: the input itself
    gold.write_bytes((FIXTURES / "sample.pubtator").read_bytes())
    (out / "a.pubtator.summary.json").write_text("{}\n")  # a fresh run would clear it: not when refused
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(_args(tiny_model_dir, [gold], out, "--ray")) == 2
    one_error_line(capsys, "is the input file")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_second_ray_job_on_a_claimed_output_directory_is_refused(tmp_path, tiny_model_dir, capsys):
    pytest.importorskip("ray", reason='Ray is not installed: pip install "bioprune[ray]"')
    out = tmp_path / "out"
    out.mkdir()
    with OutputLock(out / "summary.json"):  # what a live job's driver holds
        assert main(_args(tiny_model_dir, [FIXTURES / "sample.jsonl"], out, "--ray")) == 2
    one_error_line(capsys, "another bioprune run", f"PID {os.getpid()}")
    assert list(out.iterdir()) == []
