"""Document-level consistency passes over character spans."""
import json
from dataclasses import replace
import shutil

import pytest

from bioprune.config import DENSE
from bioprune.engine import PruningEngine
from bioprune.labels import Decoding
from bioprune.postprocess import (Gazetteer, Postprocess, abbreviations, build_gazetteer, expand_abbreviations, tagged_as,
                                  propagate_mentions, repair_brackets)
from bioprune.types import Entity

TEXT = "Famotidine-associated delirium in Parkinson disease (PD). PD patients took famotidine and Famotidine."


def _e(text, start, end, label, score=0.9):
    return Entity(start=start, end=end, label=label, text=text[start:end], score=score)


def test_propagate_tags_other_whole_word_occurrences_with_the_same_type():
    out = propagate_mentions(TEXT, [_e(TEXT, 0, 10, "Chemical")])
    assert [(e.start, e.end, e.label) for e in out] == [(0, 10, "Chemical"), (90, 100, "Chemical")]
    assert out[1].text == TEXT[90:100] and out[1].score == 0.9  # case-sensitive: "famotidine" is left


def test_propagate_skips_ambiguous_short_and_overlapping_names():
    text = "NO and NO. Iron (Fe) and iron oxide; iron."
    ambiguous = [_e(text, 0, 2, "Chemical"), _e(text, 7, 9, "Disease")]
    assert propagate_mentions(text, ambiguous, min_chars=2) == sorted(ambiguous, key=lambda e: e.start)
    assert propagate_mentions(text, [_e(text, 0, 2, "Chemical")]) == [_e(text, 0, 2, "Chemical")]  # < 3 chars
    oxide, iron = _e(text, 25, 35, "Chemical"), _e(text, 37, 41, "Chemical")  # "iron oxide", last "iron"
    out = propagate_mentions(text, [oxide, iron])
    assert [(e.start, e.end) for e in out] == [(25, 35), (37, 41)]  # the "iron" inside "iron oxide" is left


def test_abbreviation_pairs_follow_schwartz_hearst():
    assert abbreviations(TEXT) == [((34, 51), (53, 55))]
    assert abbreviations("was given (p < 0.05) and (2010)") == []  # spaces / no letters: not short forms
    assert abbreviations("tumour necrosis factor (TNF) rose") == [((0, 22), (24, 27))]
    assert abbreviations("a random phrase (XYZ)") == []  # letters not found in order


def test_short_forms_get_the_long_forms_type_everywhere():
    out = expand_abbreviations(TEXT, [_e(TEXT, 34, 51, "Disease")])
    assert [(e.start, e.end, e.label, e.text) for e in out] == [
        (34, 51, "Disease", "Parkinson disease"), (53, 55, "Disease", "PD"), (58, 60, "Disease", "PD")]
    assert expand_abbreviations(TEXT, [_e(TEXT, 44, 51, "Disease")]) == [_e(TEXT, 44, 51, "Disease")]  # not the long form


def test_offsets_stay_true_to_the_text():
    out = expand_abbreviations(TEXT, propagate_mentions(TEXT, [_e(TEXT, 0, 10, "Chemical"), _e(TEXT, 34, 51, "Disease")]))
    assert all(TEXT[e.start:e.end] == e.text for e in out)


@pytest.mark.parametrize("text, spans, expected", [  # spans: (start, end, label) the tagger gave; expected: texts
    ("Induction of MT by ZnSO(4) was studied.", [(19, 24, "C")], ["ZnSO(4)"]),  # closed, where the text closes it
    ("in N-(2-hydroxypropyl)methacrylamide form", [(3, 21, "C")], ["N-(2-hydroxypropyl)methacrylamide"]),  # word runs on
    ("type (insulin-dependent) diabetes mellitus", [(6, 42, "D")], ["(insulin-dependent) diabetes mellitus"]),  # opened
    ("on [omega-I-131]heptadecanoic acid", [(3, 4, "C"), (4, 34, "C")], ["[omega-I-131]heptadecanoic acid"]),  # joined
    ("gastrointestinal (GI) toxicity", [(0, 18, "D"), (18, 30, "D")], ["gastrointestinal (GI) toxicity"]),
    ("gastrointestinal ( toxicity", [(0, 18, "D")], ["gastrointestinal"]),  # never closed: cut off its edge
    ("oral d,l-sotalol for", [(5, 6, "C"), (7, 16, "C")], ["d,l-sotalol"]),  # a racemate prefix joins
    ("oral d,l-sotalol for", [(7, 16, "C")], ["d,l-sotalol"]),
    ("the (Na,K)-ATPase", [(5, 7, "C"), (8, 9, "C")], ["Na", "K"]),  # balanced, or a list: left alone
    ("ZnSO(4) hepatitis", [(0, 5, "C"), (8, 17, "D")], ["ZnSO(4)", "hepatitis"]),
    ("ZnSO(4 hepatitis)", [(0, 5, "C"), (7, 16, "D")], ["ZnSO(", "hepatitis"]),  # would overlap the other type
])
def test_brackets_are_balanced_where_the_text_balances_them(text, spans, expected):
    labels = {"C": "Chemical", "D": "Disease"}
    out = repair_brackets(text, [_e(text, s, e, labels[t]) for s, e, t in spans])
    assert [e.text for e in out] == expected
    assert all(text[e.start:e.end] == e.text for e in out)
    assert Postprocess(("brackets",)).apply(text, [_e(text, s, e, labels[t]) for s, e, t in spans]) == out


def test_model_directory_names_its_passes_and_decoding(tmp_path):
    assert Postprocess.load(tmp_path) == Postprocess()  # no postprocess.json: argmax, no passes
    (tmp_path / "postprocess.json").write_text(json.dumps({"passes": ["abbreviations"]}))
    assert Postprocess.load(tmp_path) == Postprocess(("abbreviations",))
    chosen = Postprocess(["abbreviations"], Decoding(viterbi=True, outside_log_bias=0.5), unlinked_min_score={"Chemical": 0.99})
    (tmp_path / "postprocess.json").write_text(json.dumps(chosen.settings()))
    assert Postprocess.load(tmp_path) == chosen and chosen.passes == ("abbreviations",)
    assert Postprocess.load(tmp_path).unlinked_min_score == {"Chemical": 0.99}
    assert Postprocess().settings() == {"passes": []}  # today's files stay as they are


def test_a_malformed_postprocess_file_names_the_file_and_what_it_needs(tmp_path):
    path = tmp_path / "postprocess.json"
    for given, expected in [({"passes": [], "decoding": {"beam": 3}}, "viterbi, outside_log_bias"),
                            ({"passes": ["spellcheck"]}, "unknown postprocess pass"),
                            ({"passes": ["gazetteer"]}, "needs a gazetteer"),
                            ({"passes": [], "gazetteer": {"names": {"x": "Gene"}}}, "Chemical, Disease"),
                            ({"passes": [], "unlinked_min_score": {"Gene": 0.5}}, "unlinked_min_score"),
                            ({"passes": [], "unlinked_min_score": {"Chemical": "high"}}, "unlinked_min_score")]:
        path.write_text(json.dumps(given))
        with pytest.raises(ValueError, match=f"postprocess.json.*{expected}"):
            Postprocess.load(tmp_path)
    with pytest.raises(ValueError, match="unlinked_min_score"):  # built in code, checked the same way
        Postprocess(unlinked_min_score={"Chemical": True})


def test_vocabulary_names_stay_unless_annotated_text_leaves_them_untagged():
    """tagged_as: a vocabulary name passes when the texts tag it (as the label asked) on at least
    min_ratio of its whole-word occurrences, or never contain it; "element" left untagged, or
    tagged as a Disease, does not."""
    text = "thiopental and element; element, thiopental-induced; Element"
    t1, t2 = text.index("thiopental"), text.rindex("thiopental")
    e1 = text.index("element")
    names = {"thiopental", "element", "daunorubicin"}
    # thiopental: 2 of 2 ("thiopental-induced" counts); element: 1 of 2 ("Element" is another name)
    tagged = [(t1, t1 + 10, "Chemical"), (t2, t2 + 10, "Chemical"), (e1, e1 + 7, "Chemical")]
    assert tagged_as(names, [(text, tagged)], "Chemical", 0.5) == {"thiopental", "element", "daunorubicin"}
    assert tagged_as(names, [(text, tagged)], "Chemical", 0.6) == {"thiopental", "daunorubicin"}
    assert tagged_as(names, [(text, [(t1, t1 + 10, "Disease")])], "Chemical", 0.3) == {"daunorubicin"}


def test_the_gazetteer_keeps_names_training_text_tags_reliably():
    text = "cocaine and lead; cocaine abuse. lead pipes, lead. NO and NO; cocaine-induced seizures"

    def at(name, label, nth=0):  # the nth occurrence of name
        start = -1
        for _ in range(nth + 1):
            start = text.index(name, start + 1)
        return start, start + len(name), label

    mentions = [at("cocaine", "Chemical"), at("cocaine", "Chemical", 1), at("lead", "Chemical"),
                at("abuse", "Disease"), at("seizures", "Disease"), at("NO", "Chemical")]
    # cocaine: 2 of its 3 whole-word occurrences ("cocaine-induced" counts); lead: 1 of 3; NO: 1 of 2
    assert build_gazetteer([(text, mentions)], min_ratio=0.5) == {"cocaine": "Chemical", "abuse": "Disease",
                                                                  "seizures": "Disease"}
    assert build_gazetteer([(text, mentions)], min_ratio=0.3) == {"cocaine": "Chemical", "lead": "Chemical",
                                                                  "abuse": "Disease", "seizures": "Disease"}
    assert build_gazetteer([(text, mentions)], min_ratio=0.5, min_chars=2)["NO"] == "Chemical"
    assert build_gazetteer([(text, mentions)], min_ratio=0.5, min_count=2) == {"cocaine": "Chemical"}
    defined = "sodium nitroprusside (SNP) and cocaine; SNP again"  # SNP is this abstract's own short form
    snp = [(defined.index("SNP"), defined.index("SNP") + 3, "Chemical"), (40, 43, "Chemical")]
    assert build_gazetteer([(defined, snp)], 0.5) == {"SNP": "Chemical"}
    assert build_gazetteer([(defined, snp)], 0.5, skip_short_forms=True) == {}
    pipes = mentions + [at("pipes", "Disease")]
    assert "pipes" in build_gazetteer([(text, pipes)], 0.5)
    assert "pipes" not in build_gazetteer([(text, pipes + [at("pipes", "Chemical")])], 0.5)  # two types: left out


def test_the_gazetteer_tags_whole_words_longest_first_and_leaves_predictions_alone():
    gazetteer = Gazetteer({"iron": "Chemical", "iron oxide": "Chemical", "anemia": "Disease", "(+)-catechin": "Chemical"})
    text = "Iron oxide, iron, irony; anemia and (+)-catechin. iron"
    predicted = [_e(text, 50, 54, "Disease", score=0.6)]  # the model's own call wins where they overlap
    out = gazetteer.tag(text, predicted)
    assert [(text[e.start:e.end], e.label, e.score) for e in out] == [
        ("iron", "Chemical", 1.0), ("anemia", "Disease", 1.0), ("(+)-catechin", "Chemical", 1.0), ("iron", "Disease", 0.6)]
    assert Gazetteer({"Iron oxide": "Chemical"}).tag(text, [])[0].text == "Iron oxide"  # case-sensitive, longest
    assert [e.text for e in Gazetteer({"iron": "Chemical", "iron oxide": "Chemical"}).tag("iron oxide", [])] == ["iron oxide"]


def test_a_model_folder_carries_its_gazetteer_and_the_engine_applies_it(tiny_model_dir, tmp_path):
    tiny_model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")  # the fixture is shared: edit a copy
    settings = Postprocess(("gazetteer",), gazetteer=Gazetteer({"zebrafishin": "Chemical"})).settings({"gazetteer": {"min_ratio": 0.5}})
    assert settings["gazetteer"]["min_ratio"] == 0.5
    (tiny_model_dir / "postprocess.json").write_text(json.dumps(settings))
    engine = PruningEngine.from_pretrained(tiny_model_dir, config=DENSE.with_(link=False))
    text = "Rose; zebrafishin rose; zebrafishins did not."
    [annotation] = engine.annotate(text)
    [without] = PruningEngine.from_pretrained(tiny_model_dir, config=DENSE.with_(link=False), postprocess=Postprocess()).annotate(text)
    assert ("zebrafishin", "Chemical", 6) in [(e.text, e.label, e.start) for e in annotation.entities] or any(
        e.start < 17 and 6 < e.end for e in without.entities)  # (unless the random model tagged it already)
    assert list(annotation.entities) == Gazetteer({"zebrafishin": "Chemical"}).tag(text, without.entities)
    engine.save_pretrained(tmp_path / "copy")
    assert Postprocess.load(tmp_path / "copy").gazetteer.names == {"zebrafishin": "Chemical"}
    assert json.loads((tmp_path / "copy" / "postprocess.json").read_text())["gazetteer"]["min_ratio"] == 0.5  # kept
    (tiny_model_dir / "postprocess.json").write_text(json.dumps({"passes": ["gazetteer"]}))
    with pytest.raises(ValueError, match="needs a gazetteer"):
        PruningEngine.from_pretrained(tiny_model_dir)


def test_an_unlinked_entity_stays_only_if_the_model_is_sure_enough_and_only_when_linking_runs(per_word_engine):
    """``unlinked_min_score``: each word is a Disease at p ~ 0.9998; "Delirium" links (the tiny index),
    "and" and "zebrafishin" do not."""
    def words(unlinked: dict, link: bool = True) -> list[str]:
        bundle = replace(per_word_engine.bundle, postprocess=Postprocess(unlinked_min_score=unlinked))
        [annotation] = PruningEngine(bundle, DENSE.with_(link=link)).annotate("Delirium and zebrafishin")
        return [e.text for e in annotation.entities]

    assert words({}) == words({"Disease": 0.99}) == words({"Chemical": 1.01}) == ["Delirium", "and", "zebrafishin"]
    assert words({"Disease": 1.01}) == ["Delirium"]  # above any score: every unlinked Disease goes
    assert words({"Disease": 1.01}, link=False) == ["Delirium", "and", "zebrafishin"]  # no IDs known: all kept
    entity = Entity(0, 3, "Chemical", "x", 0.95)
    assert Postprocess(unlinked_min_score={"Chemical": 0.9}).keeps(entity)
    assert not Postprocess(unlinked_min_score={"Chemical": 0.99}).keeps(entity)
    assert Postprocess(unlinked_min_score={"Chemical": 0.99}).keeps(replace(entity, ids=("D1",)))
