"""Pure functions turning annotations and traces into what the Annotate tab shows.

No Gradio here: HighlightedText values are plain ``{"text", "entities"}`` dicts, tables are
(headers, rows) lists, the heat-map and summary are HTML/Markdown strings, so everything is
testable without a browser. Text from the user is HTML-escaped wherever it enters HTML.
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence

from bioprune.types import Annotation, Entity, Trace

from webapp.annotate import Comparison

ENTITY_COLORS = {"Chemical": "#7cc6fe", "Disease": "#ffa69e"}
# one hue per pruning point (the layer count after which tokens left); more layers reuse the last
LAYER_RGB = ((157, 78, 221), (231, 111, 81), (233, 196, 106), (42, 157, 143), (144, 190, 109), (67, 97, 238),
             (255, 0, 110), (131, 56, 236), (58, 134, 255), (251, 86, 7), (255, 190, 11))

DIFF_HEADERS = ["text", "start", "end", "dense", "pruned", "difference"]
LAYER_HEADERS = ["layer", "tokens (dense)", "tokens (pruned)", "kept"]
RECOVERY_HEADERS = ["trigger", "from layer", "tokens re-inserted", "labels before", "labels after"]

SAME, LABEL_DIFFERS, DENSE_ONLY, PRUNED_ONLY = ("✓ same", "✗ label differs", "✗ only dense (lost when pruned)",
                                                "✗ only pruned (added when pruned)")


def pruned_label(layer: int) -> str:
    """The HighlightedText category of a token pruned after ``layer`` layers."""
    return f"pruned after layer {layer}"


def layer_rgb(layer: int) -> tuple[int, int, int]:
    return LAYER_RGB[min(max(layer, 1), len(LAYER_RGB)) - 1]


def pruned_color_map(layers: Sequence[int]) -> dict[str, str]:
    """Colours for the possible pruning points (the layers with an exit head), for HighlightedText."""
    return {pruned_label(k): "#%02x%02x%02x" % layer_rgb(k) for k in sorted(layers)}


def entity_highlights(annotation: Annotation | None) -> dict | None:
    """HighlightedText value with the entities of ``annotation`` over its text."""
    if annotation is None:
        return None
    return {"text": annotation.text,
            "entities": [{"start": e.start, "end": e.end, "entity": e.label} for e in annotation.entities]}


def pruned_highlights(annotation: Annotation | None) -> dict | None:
    """HighlightedText value marking each pruned token with the layer after which it left."""
    if annotation is None:
        return None
    trace = annotation.trace
    tokens = trace.pruned_tokens if trace is not None else ()
    return {"text": annotation.text,
            "entities": [{"start": p.start, "end": p.end, "entity": pruned_label(p.layer)} for p in tokens]}


def _importance_alpha(score: float, low: float, high: float) -> float:
    """Opacity for a pruned token: log-scaled importance within this document, 0.25 (least) .. 1 (most)."""
    if high <= low:
        return 0.6
    value = (math.log(max(score, 1e-12)) - math.log(max(low, 1e-12))) / (
        math.log(max(high, 1e-12)) - math.log(max(low, 1e-12)))
    return round(0.25 + 0.75 * min(max(value, 0.0), 1.0), 3)


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


def _key(entity: Entity) -> tuple[int, int]:
    return entity.start, entity.end


def diff_rows(dense: Annotation, pruned: Annotation | None) -> list[list]:
    """Dense and pruned entities side by side, matched by span, with each difference marked.

    One row per distinct span: [text, start, end, dense label, pruned label, difference].
    """
    other = pruned if pruned is not None else dense
    left = {_key(e): e for e in dense.entities}
    right = {_key(e): e for e in other.entities}
    rows = []
    for key in sorted(set(left) | set(right)):
        d, p = left.get(key), right.get(key)
        if d is not None and p is not None:
            status = SAME if d.label == p.label else LABEL_DIFFERS
        else:
            status = DENSE_ONLY if p is None else PRUNED_ONLY
        entity = d or p
        rows.append([entity.text, entity.start, entity.end, d.label if d else "", p.label if p else "", status])
    return rows


def count_differences(rows: Sequence[Sequence]) -> int:
    return sum(row[-1] != SAME for row in rows)


def layer_rows(trace: Trace | None, dense_tokens: int, n_layers: int) -> list[list]:
    """Tokens each layer ran on, dense vs pruned: [layer, dense, pruned, kept fraction]."""
    per_layer = trace.tokens_per_layer if trace is not None and trace.tokens_per_layer else (dense_tokens,) * n_layers
    rows = []
    for layer, n in enumerate(per_layer, start=1):
        kept = n / dense_tokens if dense_tokens else 1.0
        rows.append([layer, dense_tokens, int(n), f"{kept:.0%}"])
    return rows


def recovery_rows(trace: Trace | None, text: str, token_offsets: Sequence[tuple[int, int]]) -> list[list]:
    """One row per recovery event: trigger, layer, the re-inserted tokens, their labels before and after."""
    if trace is None:
        return []
    rows = []
    for event in trace.recovery_events:
        tokens = [text[slice(*token_offsets[i])] if 0 <= i < len(token_offsets) else f"#{i}"
                  for i in event.positions]
        rows.append([event.trigger, event.layer, " ".join(tokens), " ".join(event.labels_before),
                     " ".join(event.labels_after)])
    return rows


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def _gflops(flops: float) -> str:
    return f"{flops / 1e9:,.2f} GFLOPs"


def _saved(ratio: float) -> str:
    if ratio >= 0:
        return f"**{ratio:.1%} saved**"
    return f"**{-ratio:.1%} more** than dense: recovery re-ran the later layers"


def summary_markdown(comparison: Comparison) -> str:
    """A short Markdown report: the setting, latency vs dense, tokens, FLOPs, entities, recovery."""
    c = comparison
    rows_diff = diff_rows(c.dense, c.pruned)
    if c.pruned is None:
        return (f"**{c.choice.describe()}** · {len(c.dense.entities)} entities · latency {_ms(c.dense_s)} "
                f"· every layer ran on all {c.dense_tokens} tokens. Pick the rule or MLP controller to see "
                "pruning.")
    trace = c.pruned.trace
    speedup = c.dense_s / c.pruned_s if c.pruned_s else float("nan")
    faster = "faster" if speedup > 1 else "slower"
    last = trace.tokens_per_layer[-1] if trace and trace.tokens_per_layer else c.dense_tokens
    n_diff = count_differences(rows_diff)
    recovery = ", ".join(f"{e.trigger} ({len(e.positions)} tokens)" for e in trace.recovery_events) if trace else ""
    lines = [
        f"**{c.choice.describe()}** — {len(trace.pruned_tokens) if trace else 0} of {len(c.token_offsets)} "
        f"tokens pruned",
        "",
        "| | dense | pruned |",
        "|---|---|---|",
        f"| latency (this request) | {_ms(c.dense_s)} | {_ms(c.pruned_s)} ({speedup:.2f}× dense: {faster}) |",
        f"| tokens at the last layer | {c.dense_tokens} | {last} ({last / c.dense_tokens:.0%}) |",
        f"| FLOPs | {_gflops(trace.dense_flops)} | {_gflops(trace.flops)} ({_saved(trace.flops_saved_ratio)}) |",
        f"| entities | {len(c.dense.entities)} | {len(c.pruned.entities)} "
        f"({'no differences' if n_diff == 0 else f'{n_diff} differ'}) |",
        f"| recovery | – | {recovery or 'not triggered'} |",
    ]
    return "\n".join(lines)
