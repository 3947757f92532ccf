"""Input readers and output writers of the batch annotator: every format in and out, the documented
text layouts, and malformed input turning into error records while reading goes on."""
from __future__ import annotations

import gzip
import io
import json

import pytest

from bioprune.errors import InputError
from bioprune.io.bioc import BioCJsonOutput, _JsonStream, bioc_document, iter_bioc_json_records
from bioprune.io.compression import Utf8Repaired
from bioprune.io.inputs import detect_format, iter_records
from bioprune.io.outputs import output_format
from bioprune.io.pubmed_xml import iter_pubmed_records, iter_pubmed_xml
from bioprune.io.pubtator import iter_pubtator_records, read_pubtator
from bioprune.io.records import DeletedRecord, RecordError
from bioprune.types import Annotation, Document, Entity

from conftest import FIXTURES, docs_in, errors_in

LEGACY = FIXTURES / "medline_legacy.xml"
CURRENT = FIXTURES / "pubmed_current.xml"
BIOC_XML = FIXTURES / "sample.bioc.xml"
BIOC_JSON = FIXTURES / "sample.bioc.json"
JSONL = FIXTURES / "sample.jsonl"


def _write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(gzip.compress(content, mtime=0) if name.endswith(".gz") else content)
    return path


# --- PubMed XML ------------------------------------------------------------------------------------

def test_legacy_medline_layout_structured_title_only_markup_and_deletions():
    records = list(iter_records(LEGACY))
    docs = docs_in(records)
    assert [d.id for d in docs] == ["90000101", "90000102", "90000103", "90000104"]
    title = "Famotidine-associated delirium."
    assert docs[0].text == (f"{title} BACKGROUND: A man developed delirium after treatment with famotidine. "
                            "RESULTS: Symptoms resolved after famotidine was stopped.")
    assert docs[0].title_end == len(title) and docs[0].text[docs[0].title_end] == " "
    assert docs[1].text == "Cisplatin and acute kidney injury." and docs[1].title_end == len(docs[1].text)
    assert docs[2].text == "Magnesium sulfate in rats."  # inline <i> flattened, empty AbstractText dropped
    # <sup>/<b> flattened, &#160; is whitespace, &lt; decoded, OtherAbstract not read
    assert docs[3].text == "Haloperidol and seizures. Rats treated with Mg2+ and haloperidol developed seizures (<5%)."
    assert [r.record_id for r in records if isinstance(r, DeletedRecord)] == ["90000001", "90000002"]
    assert not errors_in(records)


def test_pubmed_article_set_books_and_empty_labels():  # gzipped: test_detect_format_and_read_gzipped
    plain = list(iter_records(CURRENT))
    docs = docs_in(plain)
    assert docs[0].text == "Renal failure after cisplatin. OBJECTIVE: To study renal failure. Two patients were treated."
    assert docs[1].id == "90000202" and docs[1].text == "A book on delirium. Delirium is common."
    assert docs[2].text == "Indented title with markup."  # line break and indentation collapsed
    assert [r.record_id for r in plain if isinstance(r, DeletedRecord)] == ["90000003"]


def test_truncated_xml_keeps_records_before_and_reports_the_rest(tmp_path):
    data = LEGACY.read_bytes()
    cut = data.index(b"<PMID Version=\"1\">90000103")
    records = list(iter_records(_write(tmp_path, "cut.xml", data[:cut])))
    assert [d.id for d in docs_in(records)] == ["90000101", "90000102"]
    (err,) = errors_in(records)
    assert "malformed XML" in err.reason and "90000102" in err.reason and err.line is not None


def test_non_utf8_bytes_in_xml_become_a_replacement_character_and_nothing_is_lost(tmp_path, caplog):
    """PubMed XML is UTF-8: a bad byte is read as U+FFFD in its own record, with a warning; libxml2
    (lxml 6) would otherwise drop the whole chunk around it, complete records before it included."""
    data = LEGACY.read_bytes().replace(b"Cisplatin and", b"Cisplatin \xff and")
    with caplog.at_level("WARNING"):
        records = list(iter_records(_write(tmp_path, "bad.xml", data)))
    assert [d.id for d in docs_in(records)] == [d.id for d in docs_in(list(iter_records(LEGACY)))]
    assert [d.id for d in docs_in(records) if "Cisplatin \ufffd and" in d.text] == ["90000102"]
    assert not errors_in(records) and "bad.xml: 1 byte sequence(s) that are not UTF-8" in caplog.text


def test_utf8_repair_keeps_characters_split_across_reads_and_counts_only_real_replacements():
    class OneByteAtATime(io.BytesIO):  # the worst chunking a reader can meet
        def read(self, size=-1):
            return super().read(1)

    source = "α-tocopherol \ufffd, β\xff".encode("utf-8").replace(b"\xc3\xbf", b"\xff")  # one bad byte at the end
    repaired = Utf8Repaired(OneByteAtATime(source), "x.xml")
    out = b"".join(iter(lambda: repaired.read(32), b""))
    assert out.decode("utf-8") == "α-tocopherol \ufffd, β\ufffd" and repaired.replaced == 1


def test_xml_declaring_another_encoding_is_decoded_by_it(tmp_path):
    data = LEGACY.read_bytes().replace(b"Cisplatin and", "Cisplatin é and".encode("latin-1"))
    data = data.replace(b'encoding="UTF-8"', b'encoding="ISO-8859-1"', 1)
    assert data.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>')
    records = list(iter_records(_write(tmp_path, "latin.xml", data)))
    assert not errors_in(records) and any("Cisplatin é and" in d.text for d in docs_in(records))


def test_citation_without_pmid_is_one_error_and_reading_goes_on(tmp_path):
    data = LEGACY.read_text().replace('<PMID Version="1">90000102</PMID>', "")
    records = list(iter_records(_write(tmp_path, "nopmid.xml", data)))
    assert [d.id for d in docs_in(records)] == ["90000101", "90000103", "90000104"]
    (err,) = errors_in(records)
    assert "without a PMID" in err.reason and err.line == 21  # where the <MedlineCitation> starts


def test_50k_character_abstract(tmp_path):
    body = ("Famotidine induced delirium in patients with renal failure. " * 900).strip()
    assert len(body) > 50_000
    xml = (f"<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>7</PMID><Article><ArticleTitle>Long."
           f"</ArticleTitle><Abstract><AbstractText>{body}</AbstractText></Abstract></Article></MedlineCitation>"
           "</PubmedArticle></PubmedArticleSet>")
    (doc,) = list(iter_records(_write(tmp_path, "long.xml", xml)))
    assert doc.text == "Long. " + body and doc.title_end == 5


def test_strict_pubmed_reader_raises_on_truncation(tmp_path):
    assert len(list(iter_pubmed_xml(LEGACY))) == 4
    assert sum(isinstance(r, DeletedRecord) for r in iter_pubmed_records(LEGACY)) == 2
    path = _write(tmp_path, "cut.xml", LEGACY.read_bytes()[:900])
    with pytest.raises(InputError, match="malformed XML"):
        list(iter_pubmed_xml(path))


# --- detection ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, fmt", [(LEGACY, "pubmed"), (CURRENT, "pubmed"), (BIOC_XML, "bioc"),
                                       (BIOC_JSON, "bioc"), (JSONL, "jsonl"),
                                       (FIXTURES / "sample.pubtator", "pubtator")])
def test_detect_format_and_read_gzipped(path, fmt, tmp_path):
    assert detect_format(path) == fmt
    gz = _write(tmp_path, "x.gz", path.read_bytes())
    assert detect_format(gz) == fmt
    assert docs_in(iter_records(gz)) == docs_in(iter_records(path)) != []


@pytest.mark.parametrize("name, content, reason", [
    ("other.xml", "<?xml version='1.0'?><html><body/></html>", "<html>"),
    ("empty.txt", b"", "empty file"), ("blank.txt", "\n  \n", "no documents")])
def test_unknown_xml_empty_and_blank_files_are_one_error_each(tmp_path, name, content, reason):
    (err,) = list(iter_records(_write(tmp_path, name, content)))
    assert isinstance(err, RecordError) and reason in err.reason


# --- PubTator, text and JSONL: lenient readers ---------------------------------------------------

GOOD = "1|t|Famotidine and delirium.\n1|a|Delirium followed famotidine.\n1\t0\t10\tFamotidine\tChemical\tD015738\n"


def test_pubtator_bad_offsets_and_bytes_are_reported_and_reading_goes_on(tmp_path):
    bad_offsets = "2|t|Aspirin.\n2|a|Overdose.\n2\t0\t99\tAspirin\tChemical\n"
    bad_bytes = b"3|t|Caf\xff.\n3|a|x\n"
    last = "4|t|Haloperidol.\n4|a|Seizures.\n"
    content = (GOOD + "\n" + bad_offsets + "\n").encode() + bad_bytes + b"\n" + last.encode()
    path = _write(tmp_path, "mixed.pubtator", content)
    records = list(iter_records(path))
    assert [type(r).__name__ for r in records] == ["Document", "RecordError", "RecordError", "Document"]
    assert records[1].record_id == "2" and records[1].line == 7 and "outside the text" in records[1].reason
    assert records[2].record_id == "3" and records[2].line == 9 and "UTF-8" in records[2].reason
    assert [r.pmid for r in iter_pubtator_records(path) if not isinstance(r, RecordError)] == ["1", "4"]
    with pytest.raises(InputError):  # evaluation keeps the strict reader
        read_pubtator(path)


def test_text_non_utf8_line(tmp_path):
    path = _write(tmp_path, "t.txt", b"Aspirin.\n\nCaf\xe9\xff\nDelirium.\n")
    assert detect_format(path) == "text"
    records = list(iter_records(path))
    assert [(type(r).__name__, getattr(r, "id", None) or r.record_id) for r in records] == [
        ("Document", "1"), ("RecordError", "3"), ("Document", "4")]


def test_jsonl_shapes():
    docs = docs_in(iter_records(JSONL))
    assert [(d.id, d.text, d.title_end) for d in docs] == [
        ("doc-1", "Famotidine-associated delirium.", None),
        ("90000501", "Cisplatin nephrotoxicity. Renal failure followed.", len("Cisplatin nephrotoxicity.")),
        ("90000502", "Title only.", len("Title only.")),
        ("90000503", "A BioC line.", len("A BioC line."))]


@pytest.mark.parametrize("line, reason", [
    (b'{"id": "x", "text": ', "not valid JSON"),
    (b'["id", "text"]', "expected a JSON object"),
    (b'{"text": "no id"}', '"id"'),
    (b'{"id": true, "text": "bool id"}', '"id"'),
    (b'{"id": "x", "text": 5}', '"text" must be a string'),
    (b'{"pmid": "x", "title": "t", "abstract": 3}', '"abstract"'),
    (b'{"id": "x", "body": "?"}', "expected"),
    (b'{"id": "x", "text": "caf\xff"}', "UTF-8"),
])
def test_jsonl_malformed_lines(tmp_path, line, reason):
    path = _write(tmp_path, "x.jsonl", b'{"id": "a", "text": "A."}\n' + line + b'\n{"id": "b", "text": "B."}\n')
    records = list(iter_records(path, "jsonl"))
    assert [d.id for d in docs_in(records)] == ["a", "b"]
    (err,) = errors_in(records)
    assert err.line == 2 and reason in err.reason


# --- BioC ------------------------------------------------------------------------------------------

def test_bioc_xml_passages_and_sentences_at_their_offsets():
    docs = docs_in(iter_records(BIOC_XML))
    assert docs[0] == Document("90000301", "Famotidine and delirium. Delirium followed famotidine.", 24)
    assert docs[0].text[25:33] == "Delirium"  # the fixture's own annotation offset still holds
    assert docs[1] == Document("90000302", "Cisplatin was given.  Renal failure followed.", None)


def test_bioc_json_streams_documents_past_decoy_keys():
    docs = docs_in(iter_records(BIOC_JSON))
    assert docs == [Document("90000401", "Haloperidol and seizures. Seizures were reported.", 25),
                    Document("90000402", "Title only.", 11)]


def test_bioc_json_stream_in_tiny_chunks_gives_the_same_items():
    text = BIOC_JSON.read_text()
    full = [item for item, _ in _JsonStream(io.StringIO(text)).array_items("documents")]
    small = [(item, line) for item, line in _JsonStream(io.StringIO(text), chunk_chars=3).array_items("documents")]
    assert [item for item, _ in small] == full and [line for _, line in small] == [7, 12]
    nums = '{"documents": [1234567, 89]}'
    assert [v for v, _ in _JsonStream(io.StringIO(nums), chunk_chars=2).array_items("documents")] == [1234567, 89]


def test_bioc_json_malformed_midway(tmp_path):
    text = BIOC_JSON.read_text()
    cut = text.index('{"id": 90000402')
    records = list(iter_records(_write(tmp_path, "cut.json", text[:cut] + '{"id": 9, "passages": [}')))
    assert [d.id for d in docs_in(records)] == ["90000401"]
    (err,) = errors_in(records)
    assert "malformed BioC JSON" in err.reason and err.line == 12


def test_bioc_bad_documents_are_errors_and_the_next_is_read(tmp_path):
    bad = [{"passages": []},
           {"id": "o", "passages": [{"offset": 5, "text": "abcdef"}, {"offset": 7, "text": "overlap"}]},
           {"id": "n", "passages": [{"offset": -1, "text": "negative"}]},
           {"id": "g", "passages": [{"offset": 10 ** 9, "text": "far"}]},
           {"id": "ok", "passages": [{"offset": 3, "text": "late start"}]}]
    path = _write(tmp_path, "bad.json", json.dumps({"documents": bad}))
    records = list(iter_bioc_json_records(path))
    assert [type(r).__name__ for r in records] == ["RecordError"] * 4 + ["Document"]
    assert "without an id" in records[0].reason and "overlaps" in records[1].reason
    assert "gap" in records[3].reason and records[4].text == "   late start"
    assert isinstance(bioc_document([], "x"), RecordError)


# --- writers ---------------------------------------------------------------------------------------

TEXT = "Famotidine and delirium. Delirium followed famotidine."
DOC = Document("9", TEXT, title_end=24)
ANN = Annotation("9", TEXT, entities=(Entity(0, 10, "Chemical", "Famotidine", 0.9, ids=("D015738",)),
                                      Entity(25, 33, "Disease", "Delirium", 0.8),  # no ID
                                      Entity(43, 53, "Chemical", "famotidine", 0.7, ids=("D1", "D2"))))
EMPTY_DOC = Document("10", "")
EMPTY_ANN = Annotation("10", "")


def _whole(fmt, pairs, chunk: int) -> str:
    out, done = fmt.header(), 0
    for i in range(0, len(pairs), chunk):
        out += fmt.format(pairs[i:i + chunk], done)
        done += len(pairs[i:i + chunk])
    return out + fmt.footer()


@pytest.mark.parametrize("name", ["pubtator", "jsonl", "bioc", "csv"])
def test_chunked_output_equals_one_chunk(name):
    fmt = output_format(name)
    pairs = [(ANN, DOC), (EMPTY_ANN, EMPTY_DOC), (ANN, DOC)]
    assert _whole(fmt, pairs, 1) == _whole(fmt, pairs, 3) == _whole(fmt, pairs, 2)


def test_bioc_json_output_reads_back(tmp_path):
    fmt = BioCJsonOutput()
    path = _write(tmp_path, "out.json", _whole(fmt, [(ANN, DOC), (EMPTY_ANN, EMPTY_DOC)], 1))
    collection = json.loads(path.read_text())
    title, abstract = collection["documents"][0]["passages"]
    assert (title["infons"]["type"], title["offset"], abstract["offset"]) == ("title", 0, 25)
    assert [a["text"] for a in title["annotations"]] == ["Famotidine"]
    assert title["annotations"][0]["infons"]["identifier"] == "MESH:D015738"
    annotation, composite = abstract["annotations"]
    loc = annotation["locations"][0]
    assert TEXT[loc["offset"]:loc["offset"] + loc["length"]] == annotation["text"] == "Delirium"
    assert annotation["infons"] == {"type": "Disease", "identifier": "-", "score": "0.8000"}
    assert composite["infons"]["identifier"] == "MESH:D1|MESH:D2"
    assert docs_in(iter_records(path)) == [DOC, Document("10", "", None)]


def test_ids_round_trip_through_pubtator_and_jsonl(tmp_path):
    """Our PubTator reader reads our six columns back; JSONL keeps the bare IDs; both read back as input."""
    for name in ("jsonl", "pubtator"):
        path = _write(tmp_path, f"out.{name}", _whole(output_format(name), [(ANN, DOC)], 1))
        (doc,) = docs_in(iter_records(path))
        assert (doc.id, doc.text) == ("9", TEXT)
    columns = [line.split("\t") for line in path.read_text().splitlines()[2:] if line]  # path: the PubTator file
    assert [c[5] for c in columns] == ["MESH:D015738", "-", "MESH:D1|MESH:D2"]
    (doc,) = read_pubtator(path)
    assert [(m.start, m.end, m.type, m.concept_ids) for m in doc.mentions] == \
        [(e.start, e.end, e.label, e.ids) for e in ANN.entities]
    (row,) = [json.loads(line) for line in _whole(output_format("jsonl"), [(ANN, DOC)], 1).splitlines()]
    assert [tuple(e["ids"]) for e in row["entities"]] == [e.ids for e in ANN.entities]


def test_the_bioc_package_reads_our_pubtator_annotations():
    """PubTator tools take a five-column line for a relation; ours has PubTator3's six."""
    pubtator = pytest.importorskip("bioc.pubtator", reason="pip install '.[test]' (the bioc package)")
    (doc,) = pubtator.loads(_whole(output_format("pubtator"), [(ANN, DOC)], 1))
    assert not doc.relations
    assert [(a.start, a.end, a.text, a.type, a.id) for a in doc.annotations] == [
        (0, 10, "Famotidine", "Chemical", "MESH:D015738"), (25, 33, "Delirium", "Disease", "-"),
        (43, 53, "famotidine", "Chemical", "MESH:D1|MESH:D2")]


def test_csv_rows_one_per_entity_and_one_for_an_empty_document():
    pd = pytest.importorskip("pandas")  # the reader a user would use
    text = _whole(output_format("csv"), [(ANN, DOC), (EMPTY_ANN, EMPTY_DOC)], 1)
    table = pd.read_csv(io.StringIO(text), dtype={"id": str})
    assert list(table.columns) == ["id", "start", "end", "label", "text", "score", "ids"]
    assert table["id"].tolist() == ["9", "9", "9", "10"]
    assert table.iloc[0].to_dict() == {"id": "9", "start": 0, "end": 10, "label": "Chemical", "text": "Famotidine",
                                       "score": 0.9, "ids": "MESH:D015738"}
    assert table.iloc[1][["label", "text", "score"]].tolist() == ["Disease", "Delirium", 0.8]
    assert pd.isna(table.iloc[1]["ids"]) and table.iloc[2]["ids"] == "MESH:D1|MESH:D2"
    assert table.iloc[3][["start", "end", "label", "text", "score", "ids"]].isna().all()
