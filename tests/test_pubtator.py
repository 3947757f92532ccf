"""PubTator reader and writer: parsing, error reporting with line numbers, and round trips."""
from __future__ import annotations

import pytest

from bioprune.errors import InputError
from bioprune.io.pubtator import (Mention, PubTatorDocument, Relation, format_pubtator, iter_pubtator,
                                  read_pubtator)
from bioprune.types import Annotation, Document, Entity

GOOD_BLOCK = (
    "1|t|Famotidine and delirium.\n"
    "1|a|Delirium followed famotidine.\n"
    "1\t0\t10\tFamotidine\tChemical\tD015738\n"
)


def _write(tmp_path, content: str | bytes, name: str = "x.pubtator"):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def _input_error(path) -> InputError:
    with pytest.raises(InputError) as info:
        read_pubtator(path)
    return info.value


# --- parsing the fixture -------------------------------------------------------------------------

def test_fixture_documents_titles_and_text(sample_path):
    docs = read_pubtator(sample_path)
    assert [d.pmid for d in docs] == ["90000001", "90000002", "90000003"]
    assert docs[0].title == "Famotidine-associated delirium in a patient with renal failure."
    assert docs[2].title == "Haloperidol and seizures."
    assert docs[2].abstract == "Seizures were reported in two patients receiving haloperidol."
    for d in docs:
        assert d.text == d.title + " " + d.abstract


def test_fixture_mentions_nested_ones_and_relations(sample_path):
    docs = read_pubtator(sample_path)
    assert [len(d.mentions) for d in docs] == [8, 9, 4]
    assert docs[2].mentions == (
        Mention(0, 11, "Haloperidol", "Chemical", "D006220"),
        Mention(16, 24, "seizures", "Disease", "D012640"),
        Mention(26, 34, "Seizures", "Disease", "D012640"),
        Mention(75, 86, "haloperidol", "Chemical", "D006220"),
    )
    for d in docs:
        for m in d.mentions:
            assert d.text[m.start:m.end] == m.text
            assert m.type in ("Chemical", "Disease")
    spans = {(m.start, m.end, m.text) for m in docs[1].mentions}
    assert (52, 71, "acute renal failure") in spans and (58, 71, "renal failure") in spans  # nested: both kept
    assert docs[0].relations == (Relation("CID", "D015738", "D003693"),)
    assert docs[1].relations == () and docs[2].relations == ()


def test_to_document_sets_title_end(sample_path):
    pdoc = read_pubtator(sample_path)[2]
    doc = pdoc.to_document()
    assert doc == Document(id="90000003", text=pdoc.text, title_end=len("Haloperidol and seizures."))
    assert doc.text[:doc.title_end] == pdoc.title and doc.text[doc.title_end] == " "


def test_iter_pubtator_streams_in_order(sample_path):
    it = iter_pubtator(sample_path)
    assert next(it).pmid == "90000001"
    assert [d.pmid for d in it] == ["90000002", "90000003"]


def test_block_without_abstract_uses_title_only(tmp_path):
    path = _write(tmp_path, "7|t|Aspirin overdose.\n7\t0\t7\tAspirin\tChemical\n")
    (doc,) = read_pubtator(path)
    assert doc.abstract is None and doc.text == "Aspirin overdose."
    assert doc.mentions == (Mention(0, 7, "Aspirin", "Chemical", ""),)


def test_crlf_line_endings_and_multiple_blank_lines(tmp_path):
    second = "2|t|Aspirin.\n2|a|Overdose.\n2\t0\t7\tAspirin\tChemical\n"
    content = GOOD_BLOCK.replace("\n", "\r\n") + "\r\n\r\n\r\n" + second
    docs = read_pubtator(_write(tmp_path, content))
    assert [d.pmid for d in docs] == ["1", "2"]
    assert docs[0].abstract == "Delirium followed famotidine."  # no stray "\r"


# --- errors carry the file and the line ---------------------------------------------------------

@pytest.mark.parametrize("content, line, reason", [
    (GOOD_BLOCK + "\n" + "2|a|Only an abstract.\n", 5, "|t|"),  # a block without its title line
    (GOOD_BLOCK + "1\t40\t55\tfamotidine\tChemical\n", 4, "outside the text"),  # the text has 54 characters
    (GOOD_BLOCK + "1\t-1\t3\tx\tChemical\n", 4, ""),  # negative, empty or reversed offsets
    (GOOD_BLOCK + "1\t5\t5\tx\tChemical\n", 4, ""),
    (GOOD_BLOCK + "1\t6\t2\tx\tChemical\n", 4, ""),
    (GOOD_BLOCK + "1\t15\t23\tdelirioum\tDisease\n", 4, "does not match the text at 15-23: 'delirium'"),
    (GOOD_BLOCK + "1\tzero\t10\tFamotidine\tChemical\n", 4, "not integers"),
    (GOOD_BLOCK + "1\t0\t10\n", 4, ""),  # a short mention line
    (GOOD_BLOCK + "2|t|Next title.\n", 4, "missing blank line"),
    (b"1|t|Caf\xff\n1|a|x\n", 1, "UTF-8"),
    (b"1|t|Title\n1|a|Abstract\n1\t0\t5\tTi\xffle\tChemical\n", 3, "UTF-8"),  # the line of the bad byte
])
def test_a_bad_line_is_an_error_naming_it(tmp_path, content, line, reason):
    path = _write(tmp_path, content)
    err = _input_error(path)
    assert err.line == line and reason in err.reason
    assert err.source == str(path) and str(err).startswith(f"{path}:{line}: ")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pubtator"
    err = _input_error(path)
    assert err.line is None and err.source == str(path) and "no such file" in err.reason
    with pytest.raises(InputError):
        list(iter_pubtator(path))
    with pytest.raises(InputError):  # a directory is not a file either
        read_pubtator(tmp_path)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path, content):
    path = _write(tmp_path, content)
    assert list(iter_pubtator(path)) == []
    err = _input_error(path)
    assert err.line is None and "empty" in err.reason


# --- writing ------------------------------------------------------------------------------------

def _round_trip(tmp_path, doc: Document, entities) -> PubTatorDocument:
    """``doc`` with ``entities`` written as one PubTator block and read back: the same mentions come back."""
    block = format_pubtator(Annotation(id=doc.id, text=doc.text, entities=entities), doc)
    assert block.endswith("\n\n")
    (back,) = read_pubtator(_write(tmp_path, block, "out.pubtator"))
    assert [(m.start, m.end, m.text, m.type) for m in back.mentions] == \
        [(e.start, e.end, e.text, e.label) for e in entities]
    return back


def test_format_roundtrip_with_title(tmp_path, sample_path):
    pdoc = read_pubtator(sample_path)[1]
    doc = pdoc.to_document()
    back = _round_trip(tmp_path, doc, tuple(Entity(m.start, m.end, m.type, m.text, 0.5) for m in pdoc.mentions))
    assert back.pmid == pdoc.pmid and back.title == pdoc.title and back.abstract == pdoc.abstract


def test_format_roundtrip_without_title_end(tmp_path):
    text = "Famotidine causes delirium\nin old patients."  # newline becomes a space, offsets kept
    entities = (Entity(0, 10, "Chemical", "Famotidine"), Entity(18, 26, "Disease", "delirium"))
    back = _round_trip(tmp_path, Document(id="doc-9", text=text), entities)
    assert back.pmid == "doc-9"
    assert back.text[:len(text)] == text.replace("\n", " ")


def test_format_without_entities(tmp_path):
    docs = [Document("a", "First text."), Document("b", "Title. Abstract.", title_end=6)]
    path = _write(tmp_path, "".join(format_pubtator(Annotation(d.id, d.text), d) for d in docs))
    back = read_pubtator(path)
    assert [d.pmid for d in back] == ["a", "b"]
    assert back[0].title == "First text." and back[0].mentions == ()
    assert back[1].title == "Title." and back[1].abstract == "Abstract."
    assert back[1].text == docs[1].text


@pytest.mark.parametrize("sep", ["\n", "\t"])
def test_format_roundtrip_entity_spanning_line_break_or_tab(tmp_path, sep):
    text = f"Patients with Parkinson's{sep}disease."
    doc = Document(id="5", text=text)
    entity = Entity(14, 33, "Disease", text[14:33])
    assert entity.text == f"Parkinson's{sep}disease"
    (back,) = read_pubtator(_write(tmp_path, format_pubtator(Annotation("5", text, entities=(entity,)), doc)))
    assert [(m.start, m.end) for m in back.mentions] == [(14, 33)]


def test_bioreds_five_column_relation_lines_are_relations(tmp_path):
    path = _write(tmp_path, GOOD_BLOCK + "1\tAssociation\tD015738\tD003693\tNovel\n")
    [doc] = read_pubtator(path)
    assert [m.text for m in doc.mentions] == ["Famotidine"]
    assert doc.relations == (Relation(type="Association", arg1="D015738", arg2="D003693"),)
