"""The architecture diagram: the whole decoder-only model and one block, a tensor shape on every arrow (SVG).

    from IPython.display import SVG
    SVG(architecture_svg(ModelConfig.from_preset("gpt2-small")))

Drawn from the config, so the boxes follow it (LayerNorm or RMSNorm, GELU or SwiGLU, Pre- or Post-LN, where
the positions enter, GQA's smaller K and V) and the arrows carry the config's sizes, with B (batch) and T
(sequence length) left symbolic. `model_panel` and `block_panel` are the diagram as data — boxes top to
bottom, arrows with shapes — which the tests compare with a traced forward pass (`course.trace`);
`architecture_svg` only lays them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from ..config import ModelConfig

Shape = tuple  # of ints and the symbols "B", "T"


@dataclass(frozen=True)
class Box:
    key: str
    label: str
    note: str = ""  # the weights it holds, e.g. "768 × 3072"


@dataclass(frozen=True)
class Arrow:
    src: str
    dst: str
    shape: Shape
    name: str = ""  # which tensor, when an arrow carries several ("Q", "K, V")
    skip: bool = False  # a residual connection, drawn around the boxes it skips


@dataclass(frozen=True)
class Panel:
    title: str
    boxes: tuple[Box, ...]
    arrows: tuple[Arrow, ...]


def shape_text(shape: Shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _chain(keys: list[str], shapes: list[Shape]) -> list[Arrow]:
    return [Arrow(a, b, s) for a, b, s in zip(keys, keys[1:], shapes, strict=False)]


def model_panel(config: ModelConfig) -> Panel:
    """ids -> embeddings -> n_layers blocks -> final norm (Pre-LN) -> LM head -> logits."""
    c = _checked(config)
    D, V = c.d_model, c.vocab_size
    boxes = [Box("ids", "token ids"), Box("tok", "token embedding", f"{V} × {D}")]
    if c.positional == "learned":
        boxes.append(Box("pos", "+ position embedding", f"{c.context_length} × {D}"))
    elif c.positional == "sinusoidal":
        boxes.append(Box("pos", "+ sinusoidal positions", "fixed, no weights"))
    boxes.append(Box("blocks", f"{c.n_layers} × decoder block", "right →"))
    if c.norm_placement == "pre":
        boxes.append(Box("ln_f", f"final {_norm(c)}", _norm_note(c)))
    head_note = f"{D} × {V}" + (" (tied to the embedding)" if c.tie_weights else "")
    boxes += [Box("head", "LM head", head_note), Box("logits", "logits")]
    keys = [b.key for b in boxes]
    shapes = [("B", "T")] + [("B", "T", D)] * (len(keys) - 3) + [("B", "T", V)]
    return Panel("decoder-only model", tuple(boxes), tuple(_chain(keys, shapes)))


def block_panel(config: ModelConfig) -> Panel:
    """One block: attention and MLP sub-layers, each with its norm and residual addition."""
    c = _checked(config)
    D, H, H_kv, d, F = c.d_model, c.n_heads, c.n_kv_heads, c.d_head, c.d_ff
    stream = ("B", "T", D)
    scores = {"rope": "QKᵀ/√d_head, RoPE on Q, K", "alibi": "QKᵀ/√d_head + ALiBi bias"}.get(
        c.positional, "QKᵀ/√d_head" + (" + relative bias" if c.positional == "relative" else "")
    )
    kv_note = f"{D} × {H_kv * d}" + (f" ({H_kv} KV heads)" if H_kv != H else "")
    attention = [
        Box("qkv", "Q, K, V projections", f"{D} × {D}; K, V {kv_note}"),
        Box("scores", "scores " + scores, "causal mask: −∞ above the diagonal"),
        Box("softmax", "softmax over keys"),
        Box("av", "weights · V"),
        Box("merge", "merge heads"),
        Box("o", "output projection W_O", f"{D} × {D}"),
    ]
    attention_arrows = [
        Arrow("qkv", "scores", ("B", H, "T", d), "Q"),
        Arrow("qkv", "scores", ("B", H_kv, "T", d), "K, V"),
        Arrow("scores", "softmax", ("B", H, "T", "T")),
        Arrow("softmax", "av", ("B", H, "T", "T")),
        Arrow("av", "merge", ("B", H, "T", d)),
        Arrow("merge", "o", stream),
    ]
    if c.mlp == "swiglu":
        mlp = [
            Box("up", "gate and up projections", f"2 × {D} × {F}"),
            Box("act", "SiLU(gate) ⊙ up"),
        ]
    else:
        act = {"gelu_tanh": "GELU (tanh)", "gelu": "GELU", "relu": "ReLU", "silu": "SiLU"}[c.mlp]
        mlp = [Box("up", "up projection", f"{D} × {F}"), Box("act", act)]
    mlp.append(Box("down", "down projection", f"{F} × {D}"))
    mlp_arrows = [Arrow("up", "act", ("B", "T", F)), Arrow("act", "down", ("B", "T", F))]
    ln1, ln2 = Box("ln1", f"{_norm(c)} 1", _norm_note(c)), Box("ln2", f"{_norm(c)} 2", _norm_note(c))
    add1, add2 = Box("add1", "⊕ add to the stream"), Box("add2", "⊕ add to the stream")
    x_in, x_out = Box("in", "x: residual stream in"), Box("out", "x: to the next block")
    if c.norm_placement == "pre":  # x + F(LN(x))
        boxes = [x_in, ln1, *attention, add1, ln2, *mlp, add2, x_out]
        skips = [Arrow("in", "add1", stream, skip=True), Arrow("add1", "add2", stream, skip=True)]
    else:  # LN(x + F(x))
        boxes = [x_in, *attention, add1, ln1, *mlp, add2, ln2, x_out]
        skips = [Arrow("in", "add1", stream, skip=True), Arrow("ln1", "add2", stream, skip=True)]
    inside = attention_arrows + mlp_arrows
    covered = {(a.src, a.dst) for a in inside}
    keys = [b.key for b in boxes]  # every other step between consecutive boxes carries the stream
    links = [Arrow(a, b, stream) for a, b in zip(keys, keys[1:], strict=False) if (a, b) not in covered]
    arrows = links + inside + skips
    title = f"one decoder block ({c.norm_placement}-LN)"
    return Panel(title, tuple(boxes), tuple(arrows))


def _checked(config) -> ModelConfig:
    if not isinstance(config, ModelConfig):
        raise TypeError(f"expected a course ModelConfig, got {type(config).__name__}")
    return config


def _norm(c: ModelConfig) -> str:
    return "RMSNorm" if c.norm == "rmsnorm" else "LayerNorm"


def _norm_note(c: ModelConfig) -> str:
    return f"γ, β: {c.d_model} each" if c.norm == "layernorm" and c.bias else f"γ: {c.d_model}"


# --- layout -------------------------------------------------------------------------------------------------
PITCH, BOX_W, BOX_H, TOP = 52, 250, 30, 70  # row pitch, box size, first row (px)
COLUMNS = {"model": 190, "block": 700}  # box centres (x)
STYLE = (
    "text{font-family:DejaVu Sans,Arial,sans-serif;font-size:12px;fill:#222}"
    ".note{font-size:10px;fill:#555}"
    ".shape{font-family:DejaVu Sans Mono,monospace;font-size:11px;fill:#1f5fa8}"
    ".title{font-size:14px;font-weight:bold}rect.box{fill:#f4f6fb;stroke:#4a5a80}"
    "rect.blocks{fill:#fff3d6;stroke:#b07d00}path,line{stroke:#333;fill:none;marker-end:url(#head)}"
    ".frame{fill:none;stroke:#b07d00;stroke-dasharray:5 4;marker-end:none}"
)


def architecture_svg(config: ModelConfig) -> str:
    """The whole model (left) and one block (right) as an SVG document; one config, always the same bytes."""
    c = _checked(config)
    model, block = model_panel(c), block_panel(c)
    block_y = _rows(block)
    bottom = max(block_y.values()) + BOX_H
    height = bottom + 60
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" style="max-width:1000px" '
        f'viewBox="0 0 1000 {height}">',  # scales down to a narrow notebook, never up
        f"<style>{STYLE}</style>",
        '<defs><marker id="head" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" style="fill:#333;stroke:none;marker-end:none"/></marker></defs>',
    ]
    step = (bottom - BOX_H - TOP) / (len(model.boxes) - 1)  # the model column spans the block's height
    model_y = {b.key: TOP + i * step for i, b in enumerate(model.boxes)}
    parts += _panel(model, COLUMNS["model"], model_y)
    parts += _panel(block, COLUMNS["block"], block_y)
    left = COLUMNS["block"] - BOX_W / 2 - 130  # the frame around the block, room for the residual paths
    parts.append(
        f'<rect class="frame" x="{left}" y="{TOP - 45}" width="{1000 - left - 10}" '
        f'height="{bottom - TOP + 55}" rx="10"/>'
    )
    y, x = model_y["blocks"] + BOX_H / 2, COLUMNS["model"] + BOX_W / 2
    parts.append(f'<line class="frame" x1="{x}" y1="{y}" x2="{left}" y2="{y}"/>')
    legend = (
        f"B batch, T sequence length · d_model {c.d_model}, {c.n_heads} heads"
        + (f" ({c.n_kv_heads} KV heads)" if c.n_kv_heads != c.n_heads else "")
        + f", d_head {c.d_head}, d_ff {c.d_ff}, vocabulary {c.vocab_size}, {c.n_layers} layers"
    )
    parts.append(f'<text x="20" y="{height - 20}">{escape(legend)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _rows(panel: Panel) -> dict[str, float]:
    """Top y of each box: one pitch per row, 12 px more per extra label on the arrow that enters it."""
    extra = {}
    for a in panel.arrows:
        if not a.skip:
            extra[a.dst] = extra.get(a.dst, -1) + 1
    ys, y = {}, TOP
    for b in panel.boxes:
        y += 12 * extra.get(b.key, 0)
        ys[b.key] = y
        y += PITCH
    return ys


def _panel(panel: Panel, cx: float, ys: dict[str, float]) -> list[str]:
    x0 = cx - BOX_W / 2
    out = [f'<text class="title" x="{x0}" y="{TOP - 20}">{escape(panel.title)}</text>']
    for b in panel.boxes:
        y = ys[b.key]
        kind = "blocks" if b.key == "blocks" else "box"
        out.append(f'<rect class="{kind}" x="{x0}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="5"/>')
        text_y = y + (13 if b.note else 19)
        out.append(f'<text x="{cx}" y="{text_y}" text-anchor="middle">{escape(b.label)}</text>')
        if b.note:
            out.append(
                f'<text class="note" x="{cx}" y="{y + 25}" text-anchor="middle">{escape(b.note)}</text>'
            )
    labels: dict[tuple[str, str], list[str]] = {}
    for a in panel.arrows:
        label = (f"{a.name} " if a.name else "") + shape_text(a.shape)
        labels.setdefault((a.src, a.dst, a.skip), []).append(label)
    for n, ((src, dst, skip), texts) in enumerate(labels.items()):
        y1, y2 = ys[src] + BOX_H, ys[dst]
        if skip:  # around the left of the boxes it skips, into the left side of the ⊕
            xs = x0 - 40 - 16 * (n % 2)  # alternate, so two residual paths that meet at one ⊕ stay apart
            y1, y2 = ys[src] + BOX_H / 2, ys[dst] + BOX_H / 2
            out.append(f'<path d="M{x0},{y1} H{xs} V{y2} H{x0}"/>')
            ty = (y1 + y2) / 2
            out.append(
                f'<text class="shape" x="{xs - 6}" y="{ty}" text-anchor="end">{escape(texts[0])}</text>'
            )
            continue
        out.append(f'<line x1="{cx}" y1="{y1}" x2="{cx}" y2="{y2}"/>')
        for i, text in enumerate(texts):
            ty = (y1 + y2) / 2 + 4 + (i - (len(texts) - 1) / 2) * 12
            out.append(f'<text class="shape" x="{cx + 8}" y="{ty}">{escape(text)}</text>')
    return out
