"""BioC collections in (XML and JSON) and out (JSON), streamed one document at a time.

BioC (Comeau et al., Database 2013) nests ``collection > document > passage``; each passage has an
``offset`` into its document and a ``text`` (or ``sentence``s with their own offsets). The document
text is rebuilt by placing every passage at its offset, with spaces filling the gaps, so entity
offsets are the document offsets BioC itself uses::

    passages (0, "A title.") and (9, "An abstract.")  ->  "A title. An abstract."

A first passage whose ``type`` infon is ``title`` (or ``front``) ends the title (``title_end``).
Passages must come in offset order and must not overlap; a document that breaks this, or has no
id, is a :class:`~bioprune.io.records.RecordError` and reading goes on with the next document.
BioC JSON is parsed incrementally (only the current document is held in memory), BioC XML with lxml
``iterparse``; a syntax error ends that file with one RecordError, as in ``pubmed_xml`` (a truncated
gzip too: :func:`bioprune.io.inputs.iter_records` reports it for every reader).

Output (:class:`BioCJsonOutput`): a BioC JSON collection, one document per line, with a ``title``
and an ``abstract`` passage when the input had a title (else one ``text`` passage), and each
entity as an annotation (``type``, ``identifier`` and ``score`` infons, a location with document
offsets); ``identifier`` is PubTator3's: ``MESH:D003924``, ``MESH:D1|MESH:D2``, ``-`` for none.
"""
from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from bioprune.identifiers import format_ids
from bioprune.io.compression import open_binary, utf8_repaired
from bioprune.io.records import Record, RecordError
from bioprune.types import Annotation, Document

MAX_GAP_CHARS = 100_000  # a larger gap between passages is taken for a broken offset, not padding
MAX_JSON_ITEM_CHARS = 1 << 26  # one BioC JSON document larger than this is taken for malformed JSON
_TITLE_TYPES = ("title", "front")


def bioc_document(obj, source: str, line: int | None = None) -> Document | RecordError:
    """A Document from a BioC document (the JSON object, or the same shape built from XML)."""
    if not isinstance(obj, dict):
        return RecordError(source, f"expected a BioC document object, got {type(obj).__name__}", None, line)
    doc_id = obj.get("id")
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)) or not str(doc_id).strip():
        return RecordError(source, "BioC document without an id", None, line)
    doc_id = str(doc_id).strip()
    passages = obj.get("passages")
    if not isinstance(passages, list):
        return RecordError(source, '"passages" must be a list', doc_id, line)
    text, title_end = "", None
    for p_index, passage in enumerate(passages):
        if not isinstance(passage, dict):
            return RecordError(source, f"passage {p_index} is not an object", doc_id, line)
        pieces = [(passage.get("offset"), passage.get("text"))]
        if passage.get("text") is None:
            sentences = passage.get("sentences") or []
            if not isinstance(sentences, list) or not all(isinstance(s, dict) for s in sentences):
                return RecordError(source, f"passage {p_index}: \"sentences\" must be a list of objects",
                                   doc_id, line)
            pieces = [(s.get("offset"), s.get("text")) for s in sentences]
        for offset, piece in pieces:
            offset = _offset(offset)
            if offset is None or not isinstance(piece, str):
                return RecordError(source, f"passage {p_index}: needs an integer offset >= 0 and a text",
                                   doc_id, line)
            if offset < len(text):
                return RecordError(source, f"passage {p_index} at offset {offset} overlaps the text before "
                                   f"it (which ends at {len(text)}); passages must be in offset order",
                                   doc_id, line)
            if offset - len(text) > MAX_GAP_CHARS:
                return RecordError(source, f"passage {p_index} at offset {offset} leaves a gap of "
                                   f"{offset - len(text)} characters (at most {MAX_GAP_CHARS})", doc_id, line)
            text += " " * (offset - len(text)) + piece
        infons = passage.get("infons") or {}
        if p_index == 0 and isinstance(infons, dict) and str(infons.get("type", "")).lower() in _TITLE_TYPES:
            title_end = len(text)
    return Document(id=doc_id, text=text, title_end=title_end)


def _offset(value) -> int | None:
    """A passage offset (an int, or a string of digits from XML) as an int >= 0; None when it is not one."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


# --- BioC XML ------------------------------------------------------------------------------------

def iter_bioc_xml_records(path: str | Path) -> Iterator[Record]:
    from lxml import etree

    from bioprune.io.pubmed_xml import drop_element

    source = str(path)
    try:
        with open_binary(path) as raw:
            handle = utf8_repaired(raw, source)
            for _, element in etree.iterparse(handle, events=("end",), tag="document",
                                              resolve_entities=False, no_network=True, load_dtd=False):
                root = element.getroottree().getroot().tag
                if root != "collection":
                    yield RecordError(source, f"not a BioC XML file: root element <{root}>, expected "
                                      "<collection>", None, 1)
                    return
                yield bioc_document(_xml_to_dict(element), source, element.sourceline)
                drop_element(element)
    except etree.XMLSyntaxError as err:
        yield RecordError(source, f"malformed XML ({err.msg}); the rest of the file is skipped", None, err.lineno)


def _xml_to_dict(document) -> dict:
    """The JSON shape of a BioC XML ``<document>`` (offsets stay strings; ``bioc_document`` checks them)."""
    def infons(element) -> dict:
        return {i.get("key"): i.text or "" for i in element.iterfind("infon")}

    def text_of(element):
        node = element.find("text")
        return None if node is None else (node.text or "")

    return {"id": (document.findtext("id") or "").strip(), "infons": infons(document),
            "passages": [{"infons": infons(p), "offset": p.findtext("offset"), "text": text_of(p),
                          "sentences": [{"offset": s.findtext("offset"), "text": text_of(s)}
                                        for s in p.iterfind("sentence")]}
                         for p in document.iterfind("passage")]}


# --- BioC JSON -----------------------------------------------------------------------------------

def iter_bioc_json_records(path: str | Path) -> Iterator[Record]:
    """The documents of a BioC JSON collection, parsed one at a time from the ``documents`` array."""
    source = str(path)
    try:
        with open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8") as reader:
            stream = _JsonStream(reader)
            for item, line in stream.array_items("documents"):
                yield bioc_document(item, source, line)
    except _JsonSyntaxError as err:
        yield RecordError(source, f"malformed BioC JSON ({err.reason}); the rest of the file is skipped",
                          None, err.line)
    except UnicodeDecodeError as err:
        yield RecordError(source, f"not valid UTF-8 ({err.reason}); the rest of the file is skipped")


class _JsonSyntaxError(Exception):
    def __init__(self, reason: str, line: int):
        super().__init__(reason)
        self.reason, self.line = reason, line


class _JsonStream:
    """Walks one top-level JSON object and yields the items of one array-valued key as they are
    parsed, holding one item (plus a read-ahead chunk) in memory at a time."""

    def __init__(self, handle, chunk_chars: int = 1 << 16):
        self.handle = handle
        self.chunk_chars = chunk_chars
        self.buf = ""
        self.pos = 0
        self.line_base = 1  # line number of buf[0]
        self.eof = False
        self.decoder = json.JSONDecoder()

    def _line(self) -> int:
        return self.line_base + self.buf.count("\n", 0, self.pos)

    def _fill(self) -> bool:
        """Read more (dropping what is consumed); False at end of input."""
        if self.eof:
            return False
        self.line_base += self.buf.count("\n", 0, self.pos)
        self.buf, self.pos = self.buf[self.pos:], 0
        more = self.handle.read(max(self.chunk_chars, len(self.buf)))  # doubles for long items
        if not more:
            self.eof = True
            return False
        self.buf += more
        return True

    def _peek(self) -> str:
        """Next non-whitespace character (not consumed); "" at end of input."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def _expect(self, chars: str) -> str:
        c = self._peek()
        if not c or c not in chars:
            found = repr(c) if c else "end of file"
            raise _JsonSyntaxError(f"expected {' or '.join(map(repr, chars))}, found {found}", self._line())
        self.pos += 1
        return c

    def _value(self):
        self._peek()
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as err:
                if len(self.buf) - self.pos < MAX_JSON_ITEM_CHARS and self._fill():
                    continue  # the value goes on past the text read so far
                raise _JsonSyntaxError(err.msg, self.line_base + self.buf.count("\n", 0, err.pos)) from None
            if end == len(self.buf) and not self.eof and self._fill():
                continue  # a number cut by the chunk boundary: decode again with more text
            self.pos = end
            return value

    def array_items(self, key: str) -> Iterator[tuple[object, int]]:
        """(item, line it starts on) for each item of ``key``'s array; other keys are skipped."""
        self._expect("{")
        if self._peek() == "}":
            return
        while True:
            name = self._value()
            if not isinstance(name, str):
                raise _JsonSyntaxError("expected a key", self._line())
            self._expect(":")
            if name == key:
                self._expect("[")
                if self._peek() == "]":
                    self.pos += 1
                else:
                    while True:
                        self._peek()
                        line = self._line()
                        yield self._value(), line
                        if self._expect(",]") == "]":
                            break
            else:
                self._value()
            if self._expect(",}") == "}":
                return


# --- BioC JSON output ----------------------------------------------------------------------------

class BioCJsonOutput:
    """A BioC JSON collection written chunk by chunk: a header, documents joined by commas, a footer.

    The header carries no date, so the same input always gives the same bytes.
    """

    name = "bioc"
    extension = ".bioc.json"

    def problem(self, document: Document) -> str | None:
        return None  # JSON holds any id and text

    def header(self) -> str:
        return '{"source": "bioprune", "date": "", "key": "bioprune.key", "infons": {}, "documents": [\n'

    def format(self, pairs: Iterable[tuple[Annotation, Document]], first_index: int) -> str:
        return "".join(("" if i == 0 else ",\n") + json.dumps(bioc_json_document(annotation, document),
                                                                ensure_ascii=False)
                       for i, (annotation, document) in enumerate(pairs, start=first_index))

    def footer(self) -> str:
        return "\n]}\n"


def bioc_json_document(annotation: Annotation, document: Document) -> dict:
    """One BioC document: title/abstract passages (or one text passage) with the entities."""
    text, cut = document.text, document.title_end
    if cut is None:
        spans = [("text", 0, text)]
    else:
        spans = [("title", 0, text[:cut])]
        if len(text) > cut:
            spans.append(("abstract", cut + 1, text[cut + 1:]))
    passages = [{"infons": {"type": kind}, "offset": offset, "text": body, "sentences": [], "annotations": [],
                 "relations": []} for kind, offset, body in spans]
    for n, entity in enumerate(annotation.entities, start=1):
        home = max(i for i, (_, offset, _) in enumerate(spans) if offset <= entity.start or i == 0)
        passages[home]["annotations"].append({
            "id": str(n), "infons": {"type": entity.label, "identifier": format_ids(entity.ids),
                                     "score": f"{entity.score:.4f}"}, "text": entity.text,
            "locations": [{"offset": entity.start, "length": entity.end - entity.start}]})
    return {"id": document.id, "infons": {}, "passages": passages, "relations": []}
