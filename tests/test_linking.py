"""The concept linker (bioprune/linking.py) and its index builder, on tiny hand-written vocabularies.

Each index is built by training/build_linker_index.py from files written here, so the tests also
cover the build script's format round trip. One test uses the real data and the shipped index.
"""
from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import pytest

from bioprune.identifiers import NO_ID, format_ids
from bioprune.io.pubtator import read_pubtator
from bioprune.linking import (Linker, LinkerIndexError, LinkerSettings, NameRow, Neighbours, SortedTable, TypeIndex,
                              TABLES, _best_ids, bag_key, chemical_variants, composite_readings, link_documents, lookup,
                              normalized_key, one_edit, read_names, table_lines, type_tables)
from training.build_linker_index import main as build_main

REPO = Path(__file__).resolve().parents[1]
MESH_HEADER = ("DescriptorUI\tDescriptorName\tConceptUI\tTermUI\tTermName\tConceptPreferredTermYN\t"
               "IsPermutedTermYN\tLexicalTag\tRecordPreferredTermYN")
MESH_TERMS = [  # descriptor, term, record-preferred
    ("D002945", "Cisplatin", "Y"), ("D002945", "cis-Diamminedichloroplatinum", "N"),
    ("D001943", "Breast Neoplasms", "Y"), ("D001943", "Breast Cancer", "N"),
    ("D010051", "Ovarian Neoplasms", "Y"), ("D010051", "Ovarian Cancer", "N"),
    ("D010300", "Parkinson Disease", "Y"), ("D010300", "Parkinson's Disease", "N"),
    ("D016584", "Panic Disorder", "Y"), ("D008668", "Metallothionein", "Y"), ("D006220", "Haloperidol", "Y"),
    ("D010640", "Phenothiazines", "Y"), ("D014284", "Triiodothyronine", "Y"), ("D005442", "Flumazenil", "Y"),
    ("D005442", "Ro 15-1788", "N"), ("D000666", "Amphotericin B", "Y"), ("D013874", "Thiopental Sodium", "N"),
    ("D001285", "Atropine", "Y"), ("D001285", "Atropine Sulfate", "N"), ("D013015", "Sotalol", "Y"),
    ("D011189", "Potassium Chloride", "Y"), ("D002712", "Chlorides", "Y"),
]
TREES = {"D002945": "D01.710.100", "D001943": "C04.588.180", "D010051": "C04.588.322",
         "D010300": "C10.228.140", "D016584": "F03.080.725", "D008668": "D12.776.548",  # a protein
         "D006220": "D03.383.663", "D010640": "D03.633.100", "D014284": "D06.472.931", "D005442": "D03.633.100",
         "D000666": "D02.540.576", "D013874": "D03.383.742", "D001285": "D03.132.436", "D013015": "D02.092.063",
         "D011189": "D01.210.375", "D002712": "D01.210.375"}
# BC5CDR-style training pairs: "PD" is panic disorder in this abstract
TRAIN = ("111|t|Panic disorder (PD) after treatment.\n111|a|PD was seen.\n"
         "111\t0\t14\tPanic disorder\tDisease\tD016584\n111\t16\t18\tPD\tDisease\tD016584\n"
         "111\t37\t39\tPD\tDisease\tD016584\n\n")


def _gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(text)


def write_data(root: Path, mesh_header: str = MESH_HEADER) -> Path:
    """A miniature of the shared data folder: MeSH terms and trees, MEDIC, BC5CDR train and dev."""
    _gz(root / "vocab/mesh2024_descriptor_terms.tsv.gz", "\n".join(
        [mesh_header] + [f"{d}\t{t}\tM1\tT1\t{t}\tY\tN\tNON\t{p}" for d, t, p in MESH_TERMS]) + "\n")
    _gz(root / "vocab/mesh2024_descriptor_trees.tsv.gz", "\n".join(
        ["DescriptorUI\tDescriptorName\ttree_location\tcode\tcats"]
        + [f"{d}\tx\t{tree}\t{tree[0]}\tx" for d, tree in TREES.items()]) + "\n")
    _gz(root / "vocab/CTD_diseases_2017.tsv.gz",
        "# CTD\n# Fields:\n# DiseaseName\tDiseaseID\tAltDiseaseIDs\tDefinition\tParentIDs\tTreeNumbers\t"
        "ParentTreeNumbers\tSynonyms\tSlimMappings\n#\n"
        "Tumors of the Breast\tMESH:D001943\t\t\t\t\t\tMammary Cancer|Breast Tumors\t\n"
        "Some OMIM Disease\tOMIM:123456\t\t\t\t\t\tBreast thing\t\n")
    (root / "bc5cdr").mkdir(parents=True, exist_ok=True)
    (root / "bc5cdr/CDR_TrainingSet.PubTator.txt").write_text(TRAIN)
    (root / "bc5cdr/CDR_DevelopmentSet.PubTator.txt").write_text(
        "222|t|Cisplatin.\n222|a|x\n222\t0\t9\tCisplatin\tChemical\tD002945\n\n"
        "223|t|A phenothiazine.\n223|a|x\n223\t2\t15\tphenothiazine\tChemical\tC031637\n\n")
    return root


@pytest.fixture(scope="module")
def linker(tmp_path_factory) -> Linker:
    root = write_data(tmp_path_factory.mktemp("data"))
    out = root / "index"
    assert build_main(["--data", str(root), "--output", str(out), "--no-corpora"]) == 0
    return Linker.load(out, LinkerSettings(chemical_min_similarity=0.6, disease_min_similarity=0.6))


def ids(linker: Linker, mention: str, label: str, text: str = "") -> str:
    [link] = linker.link(text or mention, [(mention, label)])
    return format_ids(link.ids, prefix="")  # "D1|D2", "-" for none


@pytest.mark.parametrize("mention, label, expected", [
    ("Cisplatin", "Chemical", "D002945"), ("CISPLATINS", "Chemical", "D002945"),  # exact; case and plural
    ("breast cancers", "Disease", "D001943"), ("mammary cancer", "Disease", "D001943"),  # a MEDIC synonym
    ("Parkinsons disease", "Disease", "D010300"),  # possessive
    ("cisplatin", "Disease", NO_ID),  # types do not mix
    ("cisplatinum", "Chemical", "D002945"),  # a near miss, by TF-IDF
    ("zzyzx", "Chemical", NO_ID), ("zzyzx", "Disease", NO_ID),  # no match
    ("Cisplatin-", "Chemical", NO_ID),  # a fragment ("Cisplatin-induced" cut off) names nothing
])
def test_one_mention(linker, mention, label, expected):
    assert ids(linker, mention, label) == expected


@pytest.mark.parametrize("mention, method, expected", [
    ("phenothiazines", "caseless", "D010640"),  # MeSH's class, not the compound the normalised key conflates
    ("phenothiazine", "normalized", "C031637"),  # the compound, by its training pair
    ("tri-iodo-thyronine", "compact", "D014284"), ("Ro15-1788", "compact", "D005442"),  # spaces and hyphens aside
    ("Cisplatin", "normalized", "D002945"),  # an exact hit the thinned exact and lower-case tables leave to it
])
def test_lookups_past_the_normalised_key(linker, mention, method, expected):
    found = lookup(linker.index["Chemical"], mention)
    assert (found.method, "|".join(found.ids)) == (method, expected)


@pytest.mark.parametrize("mention, letters, expected", [
    ("amphothericin B", 10, "D000666"),  # one letter inserted into a long word
    ("amphothericin B", 0, NO_ID),  # off
    ("amphothericin B", 13, NO_ID),  # "amphotericin" is shorter than asked
    ("amphothericine B", 10, NO_ID),  # two letters
    ("Ro 15-1789", 10, NO_ID),  # words with digits are never respelled
])
def test_a_long_word_misspelled_by_one_letter_links(linker, mention, letters, expected):
    strict = Linker(linker.index, LinkerSettings(respelled_min_letters=letters))  # shipped thresholds
    [found] = strict.link(mention, [(mention, "Chemical")])
    assert format_ids(found.ids, prefix="") == expected
    assert found.method == ("respelled" if found.ids else "none") and found.score < 0.9


@pytest.mark.parametrize("mention, variants", [
    ("Atropine sulphate", ["Atropine sulfate", "Atropine"]),  # British spelling, then the parent
    ("ritodrin-HCl", ["ritodrin-hydrochloride", "ritodrin"]), ("disodium edetate", ["edetate"]),
    ("d,l-sotalol", ["sotalol"]), ("(+/-)-Sotalol hydrochloride", ["Sotalol"]),  # racemate and salt
    ("beta-adrenergic blocking drugs", ["beta-adrenergic blocking agents"]),  # MeSH's word for a drug class
    ("potassium chloride", []), ("sodium", []), ("cisplatin", []),  # salt words alone are a name; nothing to try
])
def test_chemical_variants(mention, variants):
    assert chemical_variants(mention) == variants


@pytest.mark.parametrize("mention", ["atropine sulphate", "Atropine sulphate monohydrate"])
def test_an_unlinked_chemical_links_by_its_variants(linker, mention):
    strict = {v: Linker(linker.index, LinkerSettings(chemical_variants=v)) for v in (True, False)}  # shipped thresholds
    found = {v: strict[v].link(mention, [(mention, "Chemical")])[0] for v in strict}
    assert (format_ids(found[True].ids, prefix=""), format_ids(found[False].ids, prefix="")) == ("D001285", NO_ID)
    assert strict[True].link(mention, [(mention, "Disease")])[0].ids == ()  # chemicals only


def test_one_edit():
    assert one_edit("apomophine", "apomorphine") and one_edit("apomorphine", "apomophine")
    assert one_edit("lactid", "lactic") and one_edit("ab", "b") and one_edit("a", "")
    assert not one_edit("abc", "abc") and not one_edit("abc", "acb") and not one_edit("ab", "abcd")


def test_thinned_tables_answer_as_whole_ones():
    """Each look-up table but the normalised one keeps only the answers the tables after it do not
    give (type_tables); look-ups must answer as over whole tables, collisions of case, order and
    spacing included."""
    rows = [NameRow("Chemical", n, i, p, v) for n, i, p, v in [
        ("CsA", "D016572", 60.0, 0), ("CSA", "C549543", 2.7, 0), ("cyclosporin A", "D016572", 5.0, 2),
        ("Phenothiazines", "D010640", 0, 2), ("phenothiazine", "C031637", 0.2, 2), ("PHENOTHIAZINE", "D010640", 0, 1),
        ("Ro 15-1788", "D005442", 0, 1), ("Ro15 1788", "C000001", 0, 1), ("acid, folic", "D005492", 0, 1),
        ("folic acid", "D005492", 0, 2), ("acid folic", "C000002", 0.5, 0), ("tri-iodo-thyronine", "D014284", 0, 1),
        ("triiodothyronine", "C000003", 1.0, 0), ("+", "C000004", 1.0, 0)]]
    index = TypeIndex.from_tables(type_tables(rows))
    whole = {"exact": lambda r: r.name, "caseless": lambda r: r.name.lower(),
             "normalized": lambda r: normalized_key(r.name), "bag": lambda r: bag_key(r.name),
             "compact": lambda r: normalized_key(r.name).replace(" ", "")}
    whole = {table: _best_ids((key(r), r) for r in rows) for table, key in whole.items()}

    def expected(name: str) -> tuple[str, ...]:
        key = normalized_key(name)
        for table, probe in zip(whole, (name, name.lower(), key, bag_key(name), key.replace(" ", ""))):
            if probe and probe in whole[table]:
                return tuple(whole[table][probe][0].split("|"))
        return ()

    queries = [r.name for r in rows] + ["csa", "Csa", "Phenothiazine", "phenothiazines", "Ro-15-1788", "ro151788",
                                        "folic, acid", "Tri-iodothyronine", "triiodo thyronine", "++", "zzyzx"]
    assert [lookup(index, q).ids for q in queries] == [expected(q) for q in queries]
    assert len(SortedTable(type_tables(rows)["exact"])) < len(rows) // 2  # the exact table is thinned


def test_abbreviation_expanded_from_the_document(linker):
    text = "Patients with Parkinson's disease (PD) were treated. PD worsened."
    assert ids(linker, "PD", "Disease", text) == "D010300"  # the document's definition wins
    assert ids(linker, "PD", "Disease", "PD worsened.") == "D016584"  # the training pair otherwise


def test_composite_mention_gets_each_id(linker):
    assert ids(linker, "breast and ovarian cancer", "Disease") == "D001943|D010051"
    assert composite_readings("hepatitis B and C")[-1] == ["hepatitis B", "hepatitis C"]
    assert composite_readings("1,2-dichloroethane") == []


@pytest.mark.parametrize("mention, parts", [
    ("cisplatin haloperidol", [("cisplatin", "D002945"), ("haloperidol", "D006220")]),
    ("Haloperidol-cisplatin", [("Haloperidol", "D006220"), ("cisplatin", "D002945")]),
    ("cisplatin metallothionein", [("cisplatin", "D002945")]),  # the protein part is a gene product
    ("cisplatin + haloperidol", [("cisplatin", "D002945"), ("haloperidol", "D006220")]),
    ("sustained release liposomal cisplatin", []),  # words no name matches: one entity, unlinked
    ("cisplatin-2,3-haloperidol", []),  # a systematic name is one compound
])
def test_an_unlinked_entity_made_of_names_is_split_into_them(linker, mention, parts):
    from bioprune.types import Entity

    text = f"After {mention} dosing."
    entity = Entity(6, 6 + len(mention), "Chemical", mention, score=0.9)
    shipped_thresholds = Linker(linker.index, LinkerSettings(), linker.gene_products)  # the fixture's TF-IDF is lax
    found = shipped_thresholds.linked_entities(text, [entity])
    assert [(e.text, "|".join(e.ids)) for e in found] == (parts or [(mention, "")])
    assert all(text[e.start:e.end] == e.text and e.label == "Chemical" and e.score == 0.9 for e in found)


def test_a_chemical_linked_only_to_proteins_or_enzymes_is_a_gene_product(linker):
    [protein, drug] = linker.link("", [("metallothionein", "Chemical"), ("cisplatin", "Chemical")])
    assert protein.ids == ("D008668",) and linker.gene_product("Chemical", protein)
    assert not linker.gene_product("Chemical", drug) and not linker.gene_product("Disease", protein)


def test_index_round_trip(linker, tmp_path):
    root = write_data(tmp_path)
    assert build_main(["--data", str(root), "--output", str(tmp_path / "a"), "--no-corpora"]) == 0
    assert build_main(["--data", str(root), "--output", str(tmp_path / "b"), "--no-corpora"]) == 0
    files = sorted(f.name for f in (tmp_path / "a").iterdir())
    assert "Chemical.exact.tsv.gz" in files and "Disease.tfidf.tsv.gz" in files and "names.tsv.gz" in files
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)  # reproducible
    rows = read_names(tmp_path / "a")
    assert {r.id for r in rows} == set(TREES) | {"C031637"}  # the OMIM-only disease is left out
    assert ("Disease", "PD", "D016584") in {(r.type, r.name, r.id) for r in rows}
    held_out = build_main(["--data", str(root), "--output", str(tmp_path / "c"), "--no-corpora",
                           "--bc5cdr", "train"])
    assert held_out == 0 and not any(r.pair_weight for r in read_names(tmp_path / "c") if r.type == "Chemical")


@pytest.mark.parametrize("damage", ["missing", "wrong shape"])
def test_bad_vocabulary_is_one_line(tmp_path, capsys, damage):
    root = write_data(tmp_path, mesh_header="UI\tName")
    if damage == "missing":
        (root / "vocab/mesh2024_descriptor_trees.tsv.gz").unlink()
    assert build_main(["--data", str(root), "--output", str(tmp_path / "out"), "--no-corpora"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "mesh2024_descriptor_t" in err and "python -m training.build_linker_index" in err
    with pytest.raises(LinkerIndexError, match="no linker index here"):
        Linker.load(tmp_path / "nowhere")


SUPP_XML = """<?xml version="1.0"?>
<SupplementalRecordSet>
<SupplementalRecord SCRClass="1"><SupplementalRecordUI>C042288</SupplementalRecordUI>
 <SupplementalRecordName><String>pilsicainide</String></SupplementalRecordName>
 <HeadingMappedToList><HeadingMappedTo><DescriptorReferredTo><DescriptorUI>*D002945</DescriptorUI>
 </DescriptorReferredTo></HeadingMappedTo></HeadingMappedToList>
 <ConceptList><Concept><TermList><Term><String>pilsicainide</String></Term><Term><String>SUN 1165</String></Term>
 </TermList></Concept></ConceptList></SupplementalRecord>
<SupplementalRecord SCRClass="1"><SupplementalRecordUI>C483025</SupplementalRecordUI>
 <SupplementalRecordName><String>Zyxq protein, mouse</String></SupplementalRecordName>
 <HeadingMappedToList><HeadingMappedTo><DescriptorReferredTo><DescriptorUI>D002945</DescriptorUI>
 </DescriptorReferredTo></HeadingMappedTo></HeadingMappedToList></SupplementalRecord>
<SupplementalRecord SCRClass="4"><SupplementalRecordUI>C000999</SupplementalRecordUI>
 <SupplementalRecordName><String>Qwerty virus</String></SupplementalRecordName>
 <HeadingMappedToList><HeadingMappedTo><DescriptorReferredTo><DescriptorUI>D002945</DescriptorUI>
 </DescriptorReferredTo></HeadingMappedTo></HeadingMappedToList></SupplementalRecord>
<SupplementalRecord SCRClass="3"><SupplementalRecordUI>C535600</SupplementalRecordUI>
 <SupplementalRecordName><String>Perry syndrome</String></SupplementalRecordName>
 <HeadingMappedToList><HeadingMappedTo><DescriptorReferredTo><DescriptorUI>*D010300</DescriptorUI>
 </DescriptorReferredTo></HeadingMappedTo></HeadingMappedToList></SupplementalRecord>
</SupplementalRecordSet>
"""
SUPP_TSV = ("C042288\tpilsicainide\tSUN 1165\tD002945\n"
            "C483025\tZyxq protein, mouse\t\tD002945\n"
            "C000999\tQwerty virus\t\tD999999\n"  # mapped to no Chemical/Disease descriptor
            "C535600\tPerry syndrome\t\tD010300\n")


@pytest.mark.parametrize("form", ["supp.xml", "supp.xml.gz", "supp.tsv.gz"])
def test_supplementary_records(tmp_path, form):
    """MeSH supplementary records give C-ids, typed by their mapped descriptors; gene products,
    organisms and protocols stay out. NLM's XML (plain or gzipped) and the TSV layout both read."""
    root = write_data(tmp_path)
    text = SUPP_TSV if form.endswith("tsv.gz") else SUPP_XML
    path = tmp_path / form
    _gz(path, text) if form.endswith(".gz") else path.write_text(text)
    out = tmp_path / "index"
    assert build_main(["--data", str(root), "--output", str(out), "--no-corpora", "--supplementary", str(path)]) == 0
    rows = {(r.type, r.name, r.id) for r in read_names(out)}
    assert ("Chemical", "SUN 1165", "C042288") in rows and ("Disease", "Perry syndrome", "C535600") in rows
    assert not {r for r in rows if r[2] in ("C483025", "C000999")}
    strict = Linker.load(out)
    assert ids(strict, "Pilsicainide", "Chemical") == "C042288"
    assert ids(strict, "Perry syndrome", "Disease") == "C535600"
    assert ids(strict, "Perry syndrome", "Chemical") == NO_ID
    loose = Linker.load(out, LinkerSettings(chemical_min_similarity=0.5, disease_min_similarity=0.5))
    assert ids(loose, "pilsicainid", "Chemical") == NO_ID  # look-ups only: no TF-IDF neighbour
    assert ids(loose, "cisplatinum", "Chemical") == "D002945"  # descriptors still are


def test_bad_supplementary_file_is_one_line(tmp_path, capsys):
    root = write_data(tmp_path)
    bad = tmp_path / "supp.tsv.gz"
    _gz(bad, "pilsicainide\tC042288\n")
    assert build_main(["--data", str(root), "--output", str(tmp_path / "out"), "--no-corpora",
                       "--supplementary", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "supp.tsv.gz" in err and "wrong shape" in err
    assert not (tmp_path / "out").exists()


def test_shipped_index_on_real_test_abstracts():
    """The shipped index links the gold mentions of 40 BC5CDR test abstracts (never indexed)."""
    data = Path(os.environ.get("BIOPRUNE_DATA", REPO.parent / "shared" / "data"))
    gold_file = data / "bc5cdr" / "CDR_TestSet.PubTator.txt"
    if not gold_file.is_file():
        pytest.skip(f"no BC5CDR test file at {gold_file} (set BIOPRUNE_DATA)")
    linker = Linker.load()
    hit = total = 0
    for doc in read_pubtator(gold_file)[:40]:
        mentions = [m for m in doc.mentions if m.type in ("Chemical", "Disease")]
        for m, link in zip(mentions, linker.link(doc.text, [(m.text, m.type) for m in mentions])):
            if m.ids not in ("-1", ""):
                hit += set(link.ids) == set(m.ids.split("|"))
                total += 1
    assert total > 300 and hit / total > 0.8


def test_tfidf_answers_are_memoised_per_query_and_forgettable():
    """A name the look-ups miss is asked of the TF-IDF once per process (a corpus repeats such
    names); the same top-k comes back from the memo; forget() empties it."""
    names = ["aspirin", "acetylsalicylic acid", "ibuprofen", "paracetamol", "aspartame"]
    neighbours = Neighbours(names)
    first = neighbours.similar(["asprin", "ibuprofin"], 2)
    assert first[0][0][0] == names.index("aspirin") and first[1][0][0] == names.index("ibuprofen")
    assert len(neighbours._memo) == 2
    calls = []
    real = neighbours._similar_now
    neighbours._similar_now = lambda queries, k: calls.append(list(queries)) or real(queries, k)
    assert neighbours.similar(["ibuprofin", "asprin", "paracetamole"], 2)[:2] == first[::-1]
    assert calls == [["paracetamole"]]  # only the new query went to scikit-learn
    neighbours.forget()
    assert neighbours._memo == {}


def test_candidates_are_the_concepts_scored_best_first(linker):
    """A dictionary hit is its own only candidate; a TF-IDF answer lists its nearest concepts, the
    link first; an unlinked mention keeps the near misses, all under the threshold."""
    [hit] = linker.link("Cisplatin", [("Cisplatin", "Chemical")])
    assert hit.candidates == (("D002945", 1.0),)
    [near] = linker.link("cisplatinum", [("cisplatinum", "Chemical")])  # the fixture's lax TF-IDF links it
    assert near.method == "tfidf" and near.candidates[0] == ("D002945", near.score)
    scores = [score for _, score in near.candidates]
    assert scores == sorted(scores, reverse=True) and 1 < len(near.candidates) <= 5
    assert len({concept for concept, _ in near.candidates}) == len(near.candidates)  # each concept once
    strict = Linker(linker.index, LinkerSettings())  # shipped thresholds: 0.9 for chemicals
    [missed] = strict.link("cis-platin analogue", [("cis-platin analogue", "Chemical")])
    assert missed.ids == () and missed.candidates[0][0] == "D002945"
    assert all(score < 0.9 for _, score in missed.candidates)
    [breast] = linker.link("breast and ovarian cancer", [("breast and ovarian cancer", "Disease")])
    assert breast.candidates == (("D001943|D010051", breast.score),)  # a composite: one candidate, both IDs


def test_a_memoised_tfidf_answer_is_compact():
    """A long batch run keeps up to MEMO_QUERIES answers per type: each must stay small (80
    neighbours as Python pairs held ~9 KB, 1.8 GB per type at the cap)."""
    names = [f"compound {i} acid" for i in range(500)]
    neighbours = Neighbours(names)
    [hits] = neighbours.similar(["compound 7 acid"], 80)
    assert len(hits) == 80 and hits[0] == (names.index("compound 7 acid"), pytest.approx(1.0))
    assert all(isinstance(j, int) and isinstance(sim, float) for j, sim in hits)
    [entry] = neighbours._memo.values()
    assert sum(sys.getsizeof(part) for part in entry) < 1500  # bytes, the arrays' data included


def test_documents_linked_together_ask_the_tfidf_once_per_type_and_link_as_alone(linker):
    """The engine links a batch of documents at once: the names the look-ups miss in all of them go
    to scikit-learn in one call per type, and each document gets the links it gets alone."""
    docs = [("Cisplatinum and PD. Panic disorder (PD).", [("Cisplatinum", "Chemical"), ("PD", "Disease")]),
            ("atropine sulphate in breast and ovarian cancers", [("atropine sulphate", "Chemical"),
                                                                 ("breast and ovarian cancers", "Disease")]),
            ("Nothing to link.", [])]
    alone = [linker.link(text, mentions) for text, mentions in docs]
    linker.forget_answers()
    calls = []
    for type_index in linker.index.values():
        real = type_index.neighbours._similar_now
        type_index.neighbours._similar_now = (lambda real: lambda queries, k: calls.append(len(queries))
                                              or real(queries, k))(real)
    together = link_documents(linker.index, docs, linker.settings)
    for type_index in linker.index.values():
        del type_index.neighbours._similar_now  # the class's method again
    assert together == alone and [format_ids(lk.ids, prefix="") for lk in together[0]] == ["D002945", "D016584"]
    assert len(calls) == 2 and all(calls)  # one call per type, each with several names
    assert linker.index["Chemical"].looked_up  # the look-ups are memoised too ...
    linker.forget_answers()
    assert not linker.index["Chemical"].looked_up  # ... and forgotten with the TF-IDF answers


def test_sorted_table_finds_each_key_and_only_its_keys():
    """Binary search over sorted ``key<TAB>ID`` lines: a key that is a prefix of another, non-ASCII
    keys, the first and last lines, and misses on either side and in between."""
    entries = {"ab": "D1", "abc": "D2", "a b": "D3", "β-carotene": "D4", "zz": "D5", "a": "D6", "ä": "D7"}
    table = SortedTable(table_lines({k: (v, 1.0) for k, v in entries.items()}))
    assert len(table) == len(entries)
    assert {k: table.get(k) for k in entries} == entries
    assert [table.get(k) for k in ("", "aa", "abcd", "b", "zzz", "\t", "β")] == [None] * 7
    empty = SortedTable(b"")
    assert len(empty) == 0 and empty.get("ab") is None


@pytest.mark.parametrize("removed", [TABLES, ("caseless", "compact")])  # format 1; format 2
def test_index_written_before_tables_still_loads(tmp_path, removed):
    """An index folder of format 1 (names only: a model saved by an older bioprune) or 2 (without
    the lower-case and compact tables) links as the same index with its tables does; they are
    computed at load instead of read."""
    root = write_data(tmp_path)
    out = tmp_path / "index"
    assert build_main(["--data", str(root), "--output", str(out), "--no-corpora"]) == 0
    settings = LinkerSettings(chemical_min_similarity=0.6, disease_min_similarity=0.6)
    mentions = [("Cisplatin", "Chemical"), ("CISPLATINS", "Chemical"), ("breast and ovarian cancer", "Disease"),
                ("cisplatinum", "Chemical"), ("PD", "Disease"), ("zzyzx", "Disease")]
    with_tables = Linker.load(out, settings).link("PD worsened.", mentions)
    for table in removed:
        for path in out.glob(f"*.{table}.tsv.gz"):
            path.unlink()
    assert Linker.load(out, settings).link("PD worsened.", mentions) == with_tables
    assert [format_ids(lk.ids, prefix="") for lk in with_tables] == [
        "D002945", "D002945", "D001943|D010051", "D002945", "D016584", NO_ID]
