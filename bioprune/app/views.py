"""Pure functions turning annotations and traces into what the Annotate tab shows.

No Gradio here: HighlightedText values are lists of ``(segment, category)`` pairs cut from the
original text at character offsets (the segments concatenate to the text exactly, spacing and all),
tables are (headers, rows) lists, the heat-map and summary are HTML/Markdown strings, so everything
is testable without a browser. Text from the user is HTML-escaped wherever it enters HTML.
"""
from __future__ import annotations

import bisect
import html
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from bioprune.types import Annotation, Trace

from bioprune.app.annotate import Comparison

ENTITY_COLORS = {"Chemical": "#7cc6fe", "Disease": "#ffa69e"}
# one hue per pruning point (the layer count after which tokens left); more layers reuse the last
LAYER_RGB = ((157, 78, 221), (231, 111, 81), (233, 196, 106), (42, 157, 143), (144, 190, 109), (67, 97, 238),
             (255, 0, 110), (131, 56, 236), (58, 134, 255), (251, 86, 7), (255, 190, 11))

DIFF_HEADERS = ["text", "start", "end", "dense", "pruned", "MeSH", "difference"]
DIFF_TYPES = ["str", "number", "number", "str", "str", "markdown", "str"]  # MeSH: links to the MeSH browser
MESH_RECORD_URL = "https://meshb.nlm.nih.gov/record/ui?ui={}"
LAYER_HEADERS = ["layer", "tokens (dense)", "tokens (pruned)", "kept"]
RECOVERY_HEADERS = ["trigger", "from layer", "tokens re-inserted", "labels before", "labels after"]

# a word as BERT's pre-tokenizer cuts text: a run of letters/digits, or one punctuation character;
# subword tokens never cross these boundaries, so a pruned piece widens to the word it belongs to
WORD_PATTERN = re.compile(r"\w+|[^\w\s]")

# the recovery table's one row when there is no event: why (short), and what that means in "tokens re-inserted"
NOT_PRUNED_ROW = ["dense model", "–", "none: nothing was pruned", "–", "–"]
RECOVERY_OFF_ROW = ["recovery off", "–", "none: tick Recovery to allow it", "–", "–"]
NOT_TRIGGERED_ROW = ["not triggered", "–", "none: no trigger fired on this text", "–", "–"]

SAME, LABEL_DIFFERS, DENSE_ONLY, PRUNED_ONLY = ("✓ same", "✗ label differs", "✗ only dense (lost when pruned)",
                                                "✗ only pruned (added when pruned)")


def pruned_label(layer: int) -> str:
    """The HighlightedText category of a token pruned after ``layer`` layers."""
    return f"pruned after layer {layer}"


def layer_rgb(layer: int) -> tuple[int, int, int]:
    return LAYER_RGB[min(max(layer, 1), len(LAYER_RGB)) - 1]


def pruned_color_map(layers: Sequence[int]) -> dict[str, str]:
    """Colours for the given pruning points (layer counts after which tokens leave), for HighlightedText."""
    return {pruned_label(k): "#%02x%02x%02x" % layer_rgb(k) for k in sorted(layers)}


def pruned_legend(config) -> dict[str, str]:
    """The pruned-tokens legend for a ``PruningConfig``: one entry per layer it prunes after; none when dense.

    Derived from the active config, so the legend never lists a layer the controller cannot prune after.
    """
    return pruned_color_map(config.prune_layers) if config.enabled else {}


def highlight_segments(text: str, marks: Iterable[tuple[int, int, str]]) -> list[tuple[str, str | None]]:
    """``text`` cut into (segment, category) pairs at the marks' character offsets.

    Unmarked stretches get category None; touching marks of the same category become one segment;
    a mark overlapping an earlier one is dropped. The segments concatenate to ``text`` exactly, so
    the view keeps the original spacing and never invents or drops a character.
    """
    segments: list[tuple[str, str | None]] = []
    cursor = 0
    for start, end, category in sorted(marks, key=lambda m: (m[0], m[1])):
        if start < cursor or end <= start:  # overlapping or empty: keep the text exact
            continue
        if start > cursor:
            segments.append((text[cursor:start], None))
        if segments and segments[-1][1] == category and start == cursor:
            segments[-1] = (segments[-1][0] + text[start:end], category)
        else:
            segments.append((text[start:end], category))
        cursor = end
    if cursor < len(text) or not segments:
        segments.append((text[cursor:], None))
    return segments


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the words of ``text`` (:data:`WORD_PATTERN`), in order."""
    return [m.span() for m in WORD_PATTERN.finditer(text)]


def widen_to_words(text: str, spans: Iterable[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """(start, end, layer) of every word that holds part of a span, with the smallest layer among its spans.

    A pruned subword piece ("##raphy") is shown on its whole word ("Electroencephalography"): a word
    is marked when any of its pieces left, with the earliest layer one of them left after.
    """
    words = word_spans(text)
    starts = [start for start, _ in words]
    layer_of: dict[int, int] = {}
    for start, end, layer in spans:
        i = max(bisect.bisect_right(starts, start) - 1, 0)
        while i < len(words) and words[i][0] < end:
            if words[i][1] > start:
                layer_of[i] = min(layer, layer_of.get(i, layer))
            i += 1
    return [(*words[i], layer_of[i]) for i in sorted(layer_of)]


def entity_highlights(annotation: Annotation | None) -> list[tuple[str, str | None]] | None:
    """HighlightedText value: the text of ``annotation`` in segments, each entity labelled with its type."""
    if annotation is None:
        return None
    return highlight_segments(annotation.text, ((e.start, e.end, e.label) for e in annotation.entities))


def pruned_highlights(annotation: Annotation | None) -> list[tuple[str, str | None]] | None:
    """HighlightedText value: each word with a pruned token, labelled with the earliest layer one left after."""
    if annotation is None:
        return None
    tokens = annotation.trace.pruned_tokens if annotation.trace is not None else ()
    words = widen_to_words(annotation.text, ((p.start, p.end, p.layer) for p in tokens))
    return highlight_segments(annotation.text, ((start, end, pruned_label(layer)) for start, end, layer in words))


def _importance_alpha(score: float, low: float, high: float) -> float:
    """Opacity for a pruned token: log-scaled importance within this document, 0.25 (least) .. 1 (most)."""
    if high <= low:
        return 0.6
    s, lo, hi = (math.log(max(x, 1e-12)) for x in (score, low, high))
    return round(0.25 + 0.75 * min(max((s - lo) / (hi - lo), 0.0), 1.0), 3)


def importance_heatmap_html(annotation: Annotation | None) -> str:
    """The text with every pruned token shaded: hue = the layer it left after, depth = its importance.

    Importance is the controller's score when the token left (higher = the deep layers needed it
    more), log-scaled between this document's least and most important pruned tokens; kept tokens
    are plain text. Each pruned token has a tooltip with its layer, score and final label.
    """
    if annotation is None:
        return ""
    text, trace = annotation.text, annotation.trace
    if trace is None:
        return ('<div class="bp-heatmap"><p><em>Dense model: every token runs every layer, nothing is '
                'pruned.</em></p></div>')
    tokens = sorted(trace.pruned_tokens, key=lambda p: p.start)
    if not tokens:
        return '<div class="bp-heatmap"><p><em>No token was pruned in this text.</em></p></div>'
    scores = [p.score for p in tokens if p.score > 0]
    low, high = (min(scores), max(scores)) if scores else (0.0, 0.0)
    layers = sorted({p.layer for p in tokens})
    legend = " ".join(
        f'<span style="background: rgba({",".join(map(str, layer_rgb(k)))},0.8); padding: 1px 6px; '
        f'border-radius: 4px; margin-right: 6px">{html.escape(pruned_label(k))}</span>' for k in layers)
    parts, cursor = [], 0
    for p in tokens:
        if p.start < cursor:  # overlapping offsets never happen for subword tokens; skip defensively
            continue
        parts.append(html.escape(text[cursor:p.start]))
        r, g, b = layer_rgb(p.layer)
        alpha = _importance_alpha(p.score, low, high)
        tip = f"{pruned_label(p.layer)} · importance {p.score:.3g} · label {p.label}"
        parts.append(f'<span class="bp-pruned" data-layer="{p.layer}" title="{html.escape(tip)}" '
                     f'style="background: rgba({r},{g},{b},{alpha}); border-radius: 3px">'
                     f'{html.escape(text[p.start:p.end])}</span>')
        cursor = p.end
    parts.append(html.escape(text[cursor:]))
    return ('<div class="bp-heatmap">'
            f'<p style="margin: 0 0 6px 0; font-size: 0.9em">{legend} lighter = less important '
            '(pruned more confidently); hover a token for its score. Unshaded text ran every layer.</p>'
            f'<p style="line-height: 1.9; white-space: pre-wrap">{"".join(parts)}</p></div>')


def mesh_links(ids: Sequence[str]) -> str:
    """Markdown links to each ID's MeSH browser page (``D003924`` -> its record), "" when none."""
    return ", ".join(f"[{i}]({MESH_RECORD_URL.format(i)})" for i in ids)


def diff_rows(dense: Annotation, pruned: Annotation | None) -> list[list]:
    """Dense and pruned entities side by side, matched by span, with each difference marked.

    One row per distinct span: [text, start, end, dense label, pruned label, MeSH links (of the
    chosen setting's entity where it has one), difference].
    """
    other = pruned if pruned is not None else dense
    left = {(e.start, e.end): e for e in dense.entities}
    right = {(e.start, e.end): e for e in other.entities}
    rows = []
    for key in sorted(set(left) | set(right)):
        d, p = left.get(key), right.get(key)
        if d is not None and p is not None:
            status = SAME if d.label == p.label else LABEL_DIFFERS
        else:
            status = DENSE_ONLY if p is None else PRUNED_ONLY
        entity = p or d
        rows.append([entity.text, entity.start, entity.end, d.label if d else "", p.label if p else "",
                     mesh_links(entity.ids), status])
    return rows


def count_differences(rows: Sequence[Sequence]) -> int:
    return sum(row[-1] != SAME for row in rows)


def layer_rows(trace: Trace | None, dense_tokens: int, n_layers: int) -> list[list]:
    """Tokens each layer ran on, dense vs pruned: [layer, dense, pruned, kept fraction]."""
    per_layer = trace.tokens_per_layer if trace is not None and trace.tokens_per_layer else (dense_tokens,) * n_layers
    return [[layer, dense_tokens, int(n), f"{n / dense_tokens if dense_tokens else 1.0:.0%}"]
            for layer, n in enumerate(per_layer, start=1)]


def words_text(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """The whole words holding ``spans``, as they read in ``text``: neighbours keep their gap, skips become " … "."""
    parts, last_end = [], None
    for start, end, _ in widen_to_words(text, ((s, e, 0) for s, e in spans)):
        if last_end is not None:
            gap = text[last_end:start]
            parts.append(gap if not gap.strip() and len(gap) <= 2 else " … ")
        parts.append(text[start:end])
        last_end = end
    return "".join(parts)


def label_counts(labels: Sequence[str]) -> str:
    """Tags with their counts, most frequent first: ``("O", "O", "B-Chemical")`` -> "O ×2, B-Chemical"."""
    ordered = sorted(Counter(labels).items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(label if n == 1 else f"{label} ×{n}" for label, n in ordered)


def recovery_rows(trace: Trace | None, text: str, token_offsets: Sequence[tuple[int, int]],
                  recovery: bool = True) -> list[list]:
    """One row per recovery event: trigger, layer, the words it re-inserted, their tags before and after.

    The re-inserted tokens are shown on whole words, as the text has them (not subword pieces with
    spaces between); the tags are counted ("O ×98, B-Chemical ×2"). When there is no event the table
    says why in one row: the dense model, recovery off, or no trigger fired (never bare headers).
    """
    if trace is None:
        return [list(NOT_PRUNED_ROW)]
    if not trace.recovery_events:
        return [list(NOT_TRIGGERED_ROW if recovery else RECOVERY_OFF_ROW)]
    rows = []
    for event in trace.recovery_events:
        spans = [token_offsets[i] for i in sorted(event.positions) if 0 <= i < len(token_offsets)]
        n = len(event.positions)
        rows.append([event.trigger, event.layer, f"{n} token{'s' if n != 1 else ''}: {words_text(text, spans)}",
                     label_counts(event.labels_before), label_counts(event.labels_after)])
    return rows


def trace_summary(trace: Trace | None, n_tokens: int) -> dict:
    """What pruning did, in JSON types: tokens pruned, tokens per layer, FLOPs saved, recovery events.

    ``n_tokens`` is the document's subword token count; a dense run (``trace`` None) prunes nothing.
    """
    if trace is None:
        return {"pruned": False, "tokens": n_tokens, "tokens_pruned": 0, "flops_saved_ratio": 0.0,
                "recovery_events": []}
    return {"pruned": True, "tokens": n_tokens, "tokens_pruned": len(trace.pruned_tokens),
            "pruned_tokens_per_layer": {str(k): sum(p.layer == k for p in trace.pruned_tokens)
                                        for k in sorted({p.layer for p in trace.pruned_tokens})},
            "tokens_per_layer": list(trace.tokens_per_layer), "flops": trace.flops,
            "dense_flops": trace.dense_flops, "flops_saved_ratio": trace.flops_saved_ratio,
            "keep_ratio": trace.keep_ratio,
            "recovery_events": [{"trigger": e.trigger, "layer": e.layer, "tokens_reinserted": len(e.positions),
                                 "positions": list(e.positions)} for e in trace.recovery_events]}


def entities_json(annotation: Annotation, n_tokens: int, setting: str) -> dict:
    """The ``/entities`` API answer: entities with character offsets, scores and MeSH IDs (bare,
    ``[]`` when none or linking is off), and the trace summary."""
    return {"text_length": len(annotation.text), "setting": setting,
            "entities": [{"start": e.start, "end": e.end, "label": e.label, "text": e.text,
                          "score": round(float(e.score), 4), "ids": list(e.ids)} for e in annotation.entities],
            "trace": trace_summary(annotation.trace, n_tokens)}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def summary_markdown(comparison: Comparison) -> str:
    """A short Markdown report: the setting, latency vs dense, tokens, FLOPs, entities, recovery."""
    c = comparison
    if c.pruned is None:
        return (f"**{c.choice.describe()}** · {len(c.dense.entities)} entities · latency {_ms(c.dense_s)} "
                f"· every layer ran on all {c.dense_tokens} tokens. Pick the rule or MLP controller to see "
                "pruning.")
    trace = c.pruned.trace
    speedup = c.dense_s / c.pruned_s if c.pruned_s else float("nan")
    n_diff = count_differences(diff_rows(c.dense, c.pruned))
    differ = "no differences" if n_diff == 0 else f"{n_diff} differ"
    if trace is None:  # the dense model at another precision: nothing pruned, every token ran every layer
        return (f"**{c.choice.describe()}** · {len(c.pruned.entities)} entities ({differ} from dense fp32) · latency "
                f"{_ms(c.pruned_s)} ({speedup:.2f}× dense fp32) · every layer ran on all {c.dense_tokens} tokens.")
    faster = "faster" if speedup > 1 else "slower"
    last = trace.tokens_per_layer[-1] if trace.tokens_per_layer else c.dense_tokens
    recovery = ", ".join(f"{e.trigger} ({len(e.positions)} tokens)" for e in trace.recovery_events)
    r = trace.flops_saved_ratio
    saved = f"**{r:.1%} saved**" if r >= 0 else f"**{-r:.1%} more** than dense: recovery re-ran the later layers"
    lines = [
        f"**{c.choice.describe()}** — {len(trace.pruned_tokens)} of {len(c.token_offsets)} tokens pruned",
        "",
        "| | dense | pruned |",
        "|---|---|---|",
        f"| latency (this request) | {_ms(c.dense_s)} | {_ms(c.pruned_s)} ({speedup:.2f}× dense: {faster}) |",
        f"| tokens at the last layer | {c.dense_tokens} | {last} ({last / c.dense_tokens:.0%}) |",
        f"| FLOPs | {trace.dense_flops / 1e9:,.2f} GFLOPs | {trace.flops / 1e9:,.2f} GFLOPs ({saved}) |",
        f"| entities | {len(c.dense.entities)} | {len(c.pruned.entities)} ({differ}) |",
        f"| recovery | – | {recovery or 'not triggered'} |",
    ]
    return "\n".join(lines)
