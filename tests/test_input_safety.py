"""Input and output data safety (issue 15): a UTF-8 BOM in any text format, identifiers PubTator
cannot hold, and truncated gzip keeping every complete record before the damage."""
from __future__ import annotations

import csv
import gzip
import json
import zlib

import pytest

from bioprune.io.inputs import iter_records
from bioprune.io.outputs import output_format
from bioprune.io.pubtator import format_pubtator, read_pubtator
from bioprune.types import Annotation, Document

from conftest import FIXTURES, annotate_cli, docs_in, errors_in, write_jsonl

BOM = "\ufeff".encode("utf-8")


# --- 4. a leading UTF-8 BOM ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sample.pubtator", "sample.jsonl", "sample.bioc.json", "sample.bioc.xml",
                                  "medline_legacy.xml", "notes.txt"])
@pytest.mark.parametrize("gzipped", [False, True])
def test_leading_bom_is_not_part_of_the_first_record(tmp_path, name, gzipped):
    content = (FIXTURES / name).read_bytes() if name != "notes.txt" else "Aspirin overdose.\nDelirium.\n".encode()
    plain = tmp_path / f"plain-{name}"
    plain.write_bytes(content)
    with_bom = tmp_path / f"bom-{name}{'.gz' if gzipped else ''}"
    with_bom.write_bytes(gzip.compress(BOM + content, mtime=0) if gzipped else BOM + content)
    expected = list(iter_records(plain))
    got = list(iter_records(with_bom))
    assert not errors_in(got)
    assert [(d.id, d.text, d.title_end) for d in docs_in(got)] == \
        [(d.id, d.text, d.title_end) for d in docs_in(expected)]
    assert docs_in(got) and not docs_in(got)[0].text.startswith("\ufeff")


def test_bom_in_the_strict_pubtator_reader(tmp_path):
    path = tmp_path / "gold.pubtator"
    path.write_bytes(BOM + (FIXTURES / "sample.pubtator").read_bytes())
    assert read_pubtator(path) == read_pubtator(FIXTURES / "sample.pubtator")


def test_bom_keeps_plain_text_offsets(tmp_path, tiny_model_dir):
    src = tmp_path / "notes.txt"
    src.write_bytes(BOM + b"Famotidine induced delirium.\n")
    out = tmp_path / "out.jsonl"
    assert annotate_cli(tiny_model_dir, [src], out, "--format", "jsonl") == 0
    (row,) = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert row["text"] == "Famotidine induced delirium."
    assert all(row["text"][e["start"]:e["end"]] == e["text"] for e in row["entities"])


# --- 5. identifiers PubTator cannot hold ------------------------------------------------------------

IDS = ["ok-1", "pipe|id", "tab\tid", "line\nbreak", "cr\rid", "ok-2"]


@pytest.mark.parametrize("fmt", ["pubtator", "jsonl", "csv", "bioc"])
def test_awkward_ids_round_trip_through_every_writer(tmp_path, tiny_model_dir, capsys, fmt):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": f"Aspirin overdose {n}."} for n, i in enumerate(IDS)])
    out = tmp_path / f"out.{fmt}"
    rc = annotate_cli(tiny_model_dir, [src], out, "--format", fmt)
    if fmt == "pubtator":  # no escape exists in PubTator: refused per record, the run goes on
        assert rc == 1
        back = list(iter_records(out))
        assert not errors_in(back) and [d.id for d in docs_in(back)] == ["ok-1", "ok-2"]
        errors = [json.loads(line) for line in (tmp_path / "out.pubtator.errors.jsonl").read_text().splitlines()]
        assert [e["record_id"] for e in errors] == IDS[1:5]
        assert all("PubTator cannot represent" in e["reason"] for e in errors)
        return
    assert rc == 0
    if fmt == "csv":
        with open(out, newline="", encoding="utf-8") as handle:
            ids = [row["id"] for row in csv.DictReader(handle)]
        assert list(dict.fromkeys(ids)) == IDS
    elif fmt == "jsonl":
        assert [d.id for d in docs_in(iter_records(out))] == IDS
    else:
        assert [d["id"] for d in json.loads(out.read_text())["documents"]] == IDS
        assert [d.id for d in docs_in(iter_records(out))] == IDS


def test_pubtator_writer_never_writes_an_id_it_cannot_read_back():
    doc = Document("a|b", "Aspirin.")
    assert "PubTator cannot represent" in output_format("pubtator").problem(doc)
    assert output_format("jsonl").problem(doc) is None and output_format("bioc").problem(doc) is None
    with pytest.raises(ValueError, match="PubTator cannot represent"):
        format_pubtator(Annotation(doc.id, doc.text), doc)


# --- 6. truncated gzip ----------------------------------------------------------------------------------

def _citations(n: int) -> bytes:
    body = " ".join(["famotidine induced delirium in patients with renal failure"] * 12)
    items = "".join(f"<PubmedArticle><MedlineCitation><PMID>{i}</PMID><Article><ArticleTitle>Title {i}."
                    f"</ArticleTitle><Abstract><AbstractText>{body} {i}</AbstractText></Abstract></Article>"
                    "</MedlineCitation></PubmedArticle>\n" for i in range(1, n + 1))
    return f"<?xml version='1.0'?>\n<PubmedArticleSet>\n{items}</PubmedArticleSet>\n".encode()


def _bioc(n: int) -> bytes:
    body = " ".join(["cisplatin nephrotoxicity in rats"] * 20)
    docs = "".join(f"<document><id>{i}</id><passage><offset>0</offset><text>{body} {i}</text></passage></document>\n"
                   for i in range(1, n + 1))
    return f"<?xml version='1.0'?>\n<collection><source>x</source>\n{docs}</collection>\n".encode()


def _lines(n: int, fmt: str) -> bytes:
    body = " ".join(["haloperidol and seizures"] * 15)
    if fmt == "jsonl":
        return "".join(json.dumps({"id": str(i), "text": f"{body} {i}"}) + "\n" for i in range(1, n + 1)).encode()
    if fmt == "pubtator":
        return "".join(f"{i}|t|Title {i}.\n{i}|a|{body} {i}\n\n" for i in range(1, n + 1)).encode()
    return "".join(f"{body} {i}\n" for i in range(1, n + 1)).encode()


def _complete(readable: bytes, fmt: str) -> int:
    """Records complete in the bytes a truncated gzip still gives: the ends of records counted."""
    return readable.count({"pubmed": b"</PubmedArticle>", "bioc": b"</document>", "pubtator": b"\n\n"}.get(fmt, b"\n"))


@pytest.mark.parametrize("fmt", ["pubmed", "bioc", "jsonl", "pubtator", "text"])
def test_truncated_gzip_keeps_every_complete_record(tmp_path, fmt):
    data = {"pubmed": _citations, "bioc": _bioc}.get(fmt, lambda n: _lines(n, fmt))(400)
    blob = gzip.compress(data, mtime=0)
    for fraction in (0.2, 0.45, 0.7, 0.95):
        cut = blob[: int(len(blob) * fraction)]
        path = tmp_path / f"cut-{fraction}.gz"
        path.write_bytes(cut)
        readable = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(cut)
        records = list(iter_records(path))
        docs = docs_in(records)
        assert len(docs) == _complete(readable, fmt) > 0, fraction
        assert [d.id for d in docs] == [str(i) for i in range(1, len(docs) + 1)]
        (error,) = errors_in(records)
        assert "truncated or corrupt gzip" in error.reason and "the rest of the file is skipped" in error.reason
