"""The mutation catalogue: per exercise, known-wrong answers (each with the catalogue key the diagnosis must name,
or None where only the score matters) and alternative right answers. Each snippet runs right after the
exercise's solution cell, so it only redefines what it changes."""

MASKS_USED_WRONG = """
MASKS_USED = {"encoder-only": {"encoder_self"}, "decoder-only": {"decoder_self"},
              "encoder-decoder": {"decoder_self", "cross"}}
"""
# Wrong answers only the hidden tests can catch: a visible test that caught them would print the answer.
HIDDEN_ONLY = {MASKS_USED_WRONG}

WRONG = {
    "ex01": [
        ("softmax_axis", """
def attention(q, k, v):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-2)
    return weights @ v, weights
"""),
        ("no_scale", """
def attention(q, k, v):
    weights = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
    return weights @ v, weights
"""),
        ("scale_by_dk", """
def attention(q, k, v):
    weights = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1], dim=-1)
    return weights @ v, weights
"""),
        (None, """
def attention(q, k, v):  # returns (weights, output)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return weights, weights @ v
"""),
    ],
    "ex02": [
        ("mask_polarity", """
def causal_mask(T):
    return torch.ones(T, T, dtype=torch.bool).triu(1)
"""),
        ("diagonal_excluded", """
def causal_mask(T):
    return torch.ones(T, T, dtype=torch.bool).tril(-1)
"""),
        ("diagonal_leak", """
def causal_mask(T):
    return torch.ones(T, T, dtype=torch.bool).tril(1)
"""),
        ("mask_after_softmax", """
def masked_softmax(scores, mask):
    return torch.softmax(scores, dim=-1) * mask
"""),
        ("mask_zero_fill", """
def masked_softmax(scores, mask):
    return torch.softmax(scores * mask, dim=-1)
"""),
        ("nan_masked_rows", """
def masked_softmax(scores, mask):
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
"""),
        ("masked_rows_uniform", """
def masked_softmax(scores, mask):
    return torch.softmax(scores.masked_fill(~mask, -1e9), dim=-1)
"""),
        ("input_modified", """
def masked_softmax(scores, mask):
    return torch.softmax(scores.masked_fill_(~mask, float("-inf")), dim=-1).nan_to_num(0.0)
"""),
        ("mask_polarity", """
def masked_softmax(scores, mask):
    return torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1).nan_to_num(0.0)
"""),
    ],
    "ex03": [
        ("view_without_transpose", """
def split_heads(x, n_heads):
    B, T, D = x.shape
    return x.view(B, n_heads, T, D // n_heads)
"""),
        ("heads_interleaved", """
def split_heads(x, n_heads):
    B, T, D = x.shape
    return x.view(B, T, D // n_heads, n_heads).permute(0, 3, 1, 2)
"""),
        ("merge_without_transpose", """
def merge_heads(x):
    B, H, T, d = x.shape
    return x.reshape(B, T, H * d)
"""),
        (None, """
def merge_heads(x):  # view after the transpose raises on a contiguous input
    B, H, T, d = x.shape
    return x.transpose(1, 2).view(B, T, H * d)
"""),
    ],
    "ex04": [
        ("gqa_ignored", """
def attention_param_count(d_model, n_heads, n_kv_heads=None, bias=True):
    return 4 * d_model * d_model + (4 * d_model if bias else 0)
"""),
        ("biases_miscounted", """
def attention_param_count(d_model, n_heads, n_kv_heads=None, bias=True):
    d_kv = (n_heads if n_kv_heads is None else n_kv_heads) * (d_model // n_heads)
    return 2 * d_model * d_model + 2 * d_model * d_kv + (4 * d_model if bias else 0)
"""),
        ("kv_heads_times_dmodel", """
def attention_param_count(d_model, n_heads, n_kv_heads=None, bias=True):
    n_kv = n_heads if n_kv_heads is None else n_kv_heads
    d_kv = n_kv * d_model
    return 2 * d_model * d_model + 2 * d_model * d_kv + (2 * d_model + 2 * d_kv if bias else 0)
"""),
        ("biases_miscounted", """
def attention_param_count(d_model, n_heads, n_kv_heads=None, bias=True):
    d_kv = (n_heads if n_kv_heads is None else n_kv_heads) * (d_model // n_heads)
    return 2 * d_model * d_model + 2 * d_model * d_kv
"""),
    ],
    "ex05": [
        ("swiglu_two_matrices", """
def mlp_param_count(d_model, d_ff, kind="gelu", bias=True):
    return 2 * d_model * d_ff + (d_ff + d_model if bias else 0)
"""),
        ("biases_miscounted", """
def mlp_param_count(d_model, d_ff, kind="gelu", bias=True):
    n = 3 if kind == "swiglu" else 2
    return n * d_model * d_ff + (2 * d_ff + d_model if bias else 0)
"""),
        ("ratio_inverted", """
def mlp_attention_ratio(d_model, d_ff, kind="gelu"):
    return (4 * d_model * d_model) / mlp_param_count(d_model, d_ff, kind, bias=False)
"""),
        ("ratio_with_biases", """
def mlp_attention_ratio(d_model, d_ff, kind="gelu"):  # biases included
    return mlp_param_count(d_model, d_ff, kind, bias=True) / (4 * d_model * d_model + 4 * d_model)
"""),
    ],
    "ex06": [
        ("eps_outside_sqrt", """
def layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / (x.var(-1, keepdim=True, unbiased=False).sqrt() + eps) * weight + bias
"""),
        ("unbiased_variance", """
def layer_norm(x, weight, bias, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) * weight + bias
"""),
        ("rms_subtracts_mean", """
def rms_norm(x, weight, eps=1e-6):
    x = x - x.mean(-1, keepdim=True)
    return x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + eps) * weight
"""),
        ("eps_outside_sqrt", """
def rms_norm(x, weight, eps=1e-6):
    return x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * weight
"""),
        ("no_mean_subtraction", """
def layer_norm(x, weight, bias, eps=1e-5):
    return x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + eps) * weight + bias
"""),
    ],
    "ex07": [
        ("pre_post_swapped", """
def pre_ln_block(x, ln1, attn, ln2, mlp):
    x = ln1(x + attn(x))
    return ln2(x + mlp(x))
"""),
        ("pre_post_swapped", """
def post_ln_block(x, ln1, attn, ln2, mlp):
    x = x + attn(ln1(x))
    return x + mlp(ln2(x))
"""),
        ("norm_twice", """
def pre_ln_block(x, ln1, attn, ln2, mlp):
    x = ln1(x)
    x = x + attn(x)
    return x + mlp(ln2(x))
"""),
        ("placement_misread", """
def placement_of(block):
    return "pre"
"""),
        ("placement_misread", """
def placement_of(block):  # a fixed size: "a Post-LN output is about unit size"
    out = block(torch.randn(2, 5, block.d_model) * 100)
    return "post" if out.std() < 10 else "pre"
"""),
        ("placement_misread", """
def placement_of(block):  # "a Post-LN output has zero mean": not with a learned bias
    out = block(torch.randn(2, 5, block.d_model) * 100)
    return "post" if out.mean(-1).abs().max() < 1e-3 else "pre"
"""),
        ("placement_misread", """
def placement_of(block):  # the right probe, read backwards
    x = torch.randn(2, 5, block.d_model)
    return "post" if ((block(1e4 * x) / 1e4 - x).norm() / x.norm()) < 0.1 else "pre"
"""),
    ],
    "ex08": [
        ("kv_counted_once", """
def kv_cache_bytes(config, seq_len, batch_size, dtype):
    size = torch.tensor([], dtype=dtype).element_size()
    return config.n_layers * seq_len * batch_size * config.n_kv_heads * config.d_head * size
"""),
        ("bits_not_bytes", """
def kv_cache_bytes(config, seq_len, batch_size, dtype):
    bits = torch.finfo(dtype).bits if dtype.is_floating_point else torch.iinfo(dtype).bits
    return 2 * config.n_layers * seq_len * batch_size * config.n_kv_heads * config.d_head * bits
"""),
        ("bytes_per_dtype", """
def kv_cache_bytes(config, seq_len, batch_size, dtype):  # everything taken as fp32
    return 2 * config.n_layers * seq_len * batch_size * config.n_kv_heads * config.d_head * 4
"""),
        ("heads_not_kv_heads", """
def kv_cache_bytes(config, seq_len, batch_size, dtype):
    size = torch.tensor([], dtype=dtype).element_size()
    return 2 * config.n_layers * seq_len * batch_size * config.n_heads * config.d_head * size
"""),
        ("gqa_heads_tiled", """
def decode_step(q, k_new, v_new, k_cache, v_cache):
    k_cache, v_cache = torch.cat([k_cache, k_new], dim=2), torch.cat([v_cache, v_new], dim=2)
    group = q.shape[1] // k_cache.shape[1]
    k, v = k_cache.repeat(1, group, 1, 1), v_cache.repeat(1, group, 1, 1)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v, k_cache, v_cache
"""),
        ("decode_new_token_skipped", """
def decode_step(q, k_new, v_new, k_cache, v_cache):  # attends over the old cache, then appends
    group = q.shape[1] // k_cache.shape[1]
    k, v = k_cache.repeat_interleave(group, dim=1), v_cache.repeat_interleave(group, dim=1)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v, torch.cat([k_cache, k_new], dim=2), torch.cat([v_cache, v_new], dim=2)
"""),
        ("decode_causal_mask", """
def decode_step(q, k_new, v_new, k_cache, v_cache):
    k_cache, v_cache = torch.cat([k_cache, k_new], dim=2), torch.cat([v_cache, v_new], dim=2)
    group = q.shape[1] // k_cache.shape[1]
    k, v = k_cache.repeat_interleave(group, dim=1), v_cache.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, 1, T + 1)
    causal = torch.ones(scores.shape[-2:], dtype=torch.bool).tril()
    return torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1) @ v, k_cache, v_cache
"""),
        ("decode_cache_order", """
def decode_step(q, k_new, v_new, k_cache, v_cache):
    k_cache, v_cache = torch.cat([k_new, k_cache], dim=2), torch.cat([v_new, v_cache], dim=2)
    group = q.shape[1] // k_cache.shape[1]
    k, v = k_cache.repeat_interleave(group, dim=1), v_cache.repeat_interleave(group, dim=1)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v, k_cache, v_cache
"""),
        ("no_scale", """
def decode_step(q, k_new, v_new, k_cache, v_cache):
    k_cache, v_cache = torch.cat([k_cache, k_new], dim=2), torch.cat([v_cache, v_new], dim=2)
    group = q.shape[1] // k_cache.shape[1]
    k, v = k_cache.repeat_interleave(group, dim=1), v_cache.repeat_interleave(group, dim=1)
    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v, k_cache, v_cache
"""),
    ],
    "ex09": [
        ("causal_in_encoder", """
def encoder_self_mask(src_is_token):
    S = src_is_token.shape[1]
    return torch.ones(S, S, dtype=torch.bool).tril() & src_is_token[:, None, None, :]
"""),
        ("padding_on_queries", """
def encoder_self_mask(src_is_token):
    return src_is_token[:, None, :, None]
"""),
        ("padding_missing", """
def decoder_self_mask(tgt_is_token):
    T = tgt_is_token.shape[1]
    return torch.ones(T, T, dtype=torch.bool).tril()
"""),
        ("mask_polarity", """
def decoder_self_mask(tgt_is_token):
    T = tgt_is_token.shape[1]
    return ~(torch.ones(T, T, dtype=torch.bool).tril() & tgt_is_token[:, None, None, :])
"""),
        ("cross_uses_target_padding", """
def cross_attention_mask(src_is_token, tgt_is_token):
    return tgt_is_token[:, None, None, :].expand(-1, 1, tgt_is_token.shape[1], -1)
"""),
        ("causal_in_cross", """
def cross_attention_mask(src_is_token, tgt_is_token):
    T, S = tgt_is_token.shape[1], src_is_token.shape[1]
    return torch.ones(T, S, dtype=torch.bool).tril(S - T) & src_is_token[:, None, None, :]
"""),
        ("causal_in_cross", """
def cross_attention_mask(src_is_token, tgt_is_token):  # the decoder's causal mask, reused
    T, S = tgt_is_token.shape[1], src_is_token.shape[1]
    return torch.ones(T, S, dtype=torch.bool).tril() & src_is_token[:, None, None, :]
"""),
        (None, MASKS_USED_WRONG),
    ],
    "ex10": [
        (None, """
def check_scaling(model):  # never looks
    return True
"""),
        (None, """
def check_rows_sum_to_one(model):  # rejects everything
    return False
"""),
        (None, """
def check_causal(model):  # checker off by one: only looks two or more steps ahead
    weights = model.attention(torch.randn(1, 6, model.d_model))[1]
    return bool((weights[..., torch.ones(6, 6, dtype=torch.bool).triu(2)] == 0).all())
"""),
        (None, """
def check_norm_placement(model):  # expects Post-LN
    x = torch.randn(2, 5, model.d_model)
    return bool(torch.allclose(model(x), model.ln(x + model.attention(x)[0]), atol=1e-5))
"""),
        (None, """
def check_head_split(model):  # compares against a bare view
    x = torch.randn(2, 5, model.d_model)
    q = model.qkv(x)[0]
    return bool(torch.allclose(q, model.q_proj(x).reshape(q.shape), atol=1e-5))
"""),
        (None, """
def check_shapes(model):  # only the block's output
    x = torch.randn(2, 5, model.d_model)
    return tuple(model(x).shape) == tuple(x.shape)
"""),
    ],
}

RIGHT = {
    "ex01": ["""
def attention(q, k, v):
    scores = torch.einsum("...qd,...kd->...qk", q, k) / q.shape[-1] ** 0.5
    weights = scores.softmax(-1)
    return torch.einsum("...qk,...kd->...qd", weights, v), weights
""", """
def attention(q, k, v):  # in float64
    q, k, v = q.double(), k.double(), v.double()
    weights = torch.nn.functional.softmax(q @ k.mT * (1 / math.sqrt(k.size(-1))), dim=-1)
    return torch.matmul(weights, v), weights
"""],
    "ex02": ["""
def causal_mask(T):
    i = torch.arange(T)
    return i[:, None] >= i[None, :]


def masked_softmax(scores, mask):
    weights = torch.softmax(torch.where(mask, scores, torch.tensor(float("-inf"))), dim=-1)
    return torch.where(torch.isnan(weights), torch.zeros(()), weights)
""", """
def causal_mask(T):
    return torch.tril(torch.ones(T, T)).bool()


def masked_softmax(scores, mask):  # in float64, by hand
    s = scores.double()
    e = torch.exp(s - s.amax(-1, keepdim=True)) * mask
    total = e.sum(-1, keepdim=True)
    return torch.where(total > 0, e / total.clamp_min(1e-300), torch.zeros(()))
"""],
    "ex03": ["""
def split_heads(x, n_heads):
    B, T, D = x.shape
    return x.reshape(B, T, n_heads, D // n_heads).permute(0, 2, 1, 3)


def merge_heads(x):
    return torch.cat(x.unbind(1), dim=-1)
""", """
def split_heads(x, n_heads):
    return torch.stack(x.double().chunk(n_heads, dim=-1), dim=1)


def merge_heads(x):
    return x.transpose(1, 2).contiguous().flatten(2)
"""],
    "ex04": ["""
def attention_param_count(d_model, n_heads, n_kv_heads=None, bias=True):
    d_head = d_model // n_heads
    d_kv = (n_kv_heads or n_heads) * d_head
    layers = [torch.nn.Linear(d_model, d_model, bias=bias, device="meta"),
              torch.nn.Linear(d_model, d_kv, bias=bias, device="meta"),
              torch.nn.Linear(d_model, d_kv, bias=bias, device="meta"),
              torch.nn.Linear(d_model, d_model, bias=bias, device="meta")]
    return sum(p.numel() for layer in layers for p in layer.parameters())
""", """
def attention_param_count(d_model, n_heads, n_kv_heads=None, bias=True):
    kv = n_heads if n_kv_heads is None else n_kv_heads
    q_and_o = 2 * (d_model * d_model + bias * d_model)
    k_and_v = 2 * (d_model * kv * d_model // n_heads + bias * kv * d_model // n_heads)
    return int(q_and_o + k_and_v)
"""],
    "ex05": ["""
def mlp_param_count(d_model, d_ff, kind="gelu", bias=True):
    shapes = [(d_model, d_ff), (d_ff, d_model)] + ([(d_model, d_ff)] if kind == "swiglu" else [])
    layers = [torch.nn.Linear(i, o, bias=bias, device="meta") for i, o in shapes]
    return sum(p.numel() for layer in layers for p in layer.parameters())


def mlp_attention_ratio(d_model, d_ff, kind="gelu"):
    return mlp_param_count(d_model, d_ff, kind, False) / attention_param_count(d_model, 1, None, False)
""", """
def mlp_param_count(d_model, d_ff, kind="gelu", bias=True):
    matrices = {"gelu": 2, "swiglu": 3}[kind]
    return matrices * d_model * d_ff + bias * ((matrices - 1) * d_ff + d_model)


def mlp_attention_ratio(d_model, d_ff, kind="gelu"):
    from fractions import Fraction
    return float(Fraction(mlp_param_count(d_model, d_ff, kind, False), 4 * d_model ** 2))
"""],
    "ex06": ["""
def layer_norm(x, weight, bias, eps=1e-5):
    var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
    return torch.addcmul(bias, (x - mean) / (var + eps).sqrt(), weight)


def rms_norm(x, weight, eps=1e-6):
    rms = torch.sqrt(torch.linalg.vector_norm(x, dim=-1, keepdim=True) ** 2 / x.shape[-1] + eps)
    return weight * (x / rms)
""", """
def layer_norm(x, weight, bias, eps=1e-5):  # in float64, with rsqrt
    x = x.double()
    centred = x - x.mean(-1, keepdim=True)
    return centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + eps) * weight + bias


def rms_norm(x, weight, eps=1e-6):
    x = x.double()
    return weight * x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) / x.shape[-1] + eps)
"""],
    "ex07": ["""
def pre_ln_block(x, ln1, attn, ln2, mlp):
    for norm, sublayer in ((ln1, attn), (ln2, mlp)):
        x = x + sublayer(norm(x))
    return x


def post_ln_block(x, ln1, attn, ln2, mlp):
    for norm, sublayer in ((ln1, attn), (ln2, mlp)):
        x = norm(x + sublayer(x))
    return x
""", """
def pre_ln_block(x, ln1, attn, ln2, mlp):
    h = x + attn(ln1(x))
    update = mlp(ln2(h))
    return h + update


def post_ln_block(x, ln1, attn, ln2, mlp):
    h = ln1(attn(x) + x)
    return ln2(mlp(h) + h)


def placement_of(block):  # does the output grow with the input?
    x = torch.randn(3, 4, block.d_model)
    small, large = block(x).norm(), block(1000 * x).norm()
    return "pre" if large > 100 * small else "post"
""", """
def placement_of(block):  # a Pre-LN update does not depend on the input's scale
    x = torch.randn(1, 6, block.d_model)
    update_1, update_2 = block(1e3 * x) - 1e3 * x, block(1e4 * x) - 1e4 * x
    return "pre" if (update_1 - update_2).norm() < 0.1 * update_2.norm() else "post"
"""],
    "ex08": ["""
BYTES = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2, torch.int8: 1}


def kv_cache_bytes(config, seq_len, batch_size, dtype):
    per_token = 2 * config.n_layers * config.n_kv_heads * config.d_head * BYTES[dtype]
    return per_token * seq_len * batch_size
""", """
def kv_cache_bytes(config, seq_len, batch_size, dtype):
    d_head = config.d_model // config.n_heads
    return int(2 * config.n_layers * seq_len * batch_size * config.n_kv_heads * d_head * dtype.itemsize)


def decode_step(q, k_new, v_new, k_cache, v_cache):  # queries grouped per KV head: no copies of K and V
    keys, values = torch.cat((k_cache, k_new), -2), torch.cat((v_cache, v_new), -2)
    B, n_heads, _, d = q.shape
    n_kv = keys.shape[1]
    grouped = q.reshape(B, n_kv, n_heads // n_kv, d)  # (B, H_kv, g, d): consecutive query heads
    weights = torch.softmax(torch.einsum("bkgd,bktd->bkgt", grouped, keys) / d ** 0.5, dim=-1)
    return torch.einsum("bkgt,bktd->bkgd", weights, values).reshape(B, n_heads, 1, d), keys, values
""", """
def decode_step(q, k_new, v_new, k_cache, v_cache):  # in float64, expanded heads, a list back
    keys = torch.cat([k_cache, k_new], dim=-2).double()
    values = torch.cat([v_cache, v_new], dim=-2).double()
    B, n_kv, T, d = keys.shape
    g = q.shape[1] // n_kv
    k = keys[:, :, None].expand(B, n_kv, g, T, d).reshape(B, n_kv * g, T, d)
    v = values[:, :, None].expand(B, n_kv, g, T, d).reshape(B, n_kv * g, T, d)
    out = ((q.double() @ k.mT) * d ** -0.5).softmax(-1) @ v
    return [out, keys.float(), values.float()]
"""],
    "ex09": ["""
def encoder_self_mask(src_is_token):
    B, S = src_is_token.shape
    return src_is_token[:, None, None, :].expand(B, 1, S, S).clone()


def decoder_self_mask(tgt_is_token):
    T = tgt_is_token.shape[1]
    i = torch.arange(T)
    return (i[None, None, :, None] >= i[None, None, None, :]) & tgt_is_token[:, None, None, :]


def cross_attention_mask(src_is_token, tgt_is_token):
    return src_is_token.bool()[:, None, None, :]


MASKS_USED = {"encoder-decoder": ["cross", "decoder_self", "encoder_self"], "encoder-only": ["encoder_self"],
              "decoder-only": ["decoder_self"]}
""", """
def encoder_self_mask(src_is_token):
    return src_is_token.unsqueeze(1).unsqueeze(1)


def decoder_self_mask(tgt_is_token):
    T = tgt_is_token.shape[1]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    return torch.logical_and(causal[None, None], tgt_is_token[:, None, None, :])


def cross_attention_mask(src_is_token, tgt_is_token):
    B, T = tgt_is_token.shape
    return torch.stack([row.repeat(T, 1) for row in src_is_token])[:, None]
"""],
    "ex10": ["""
def check_causal(model):  # weights above the diagonal
    T = 6
    weights = model.attention(torch.randn(2, T, model.d_model))[1]
    return bool((weights[..., ~torch.ones(T, T, dtype=torch.bool).tril()] == 0).all())


def check_norm_placement(model):  # scale the input: a Pre-LN output keeps the scale, a Post-LN one loses it
    x = torch.randn(2, 5, model.d_model) * 100
    return bool(model(x).pow(2).mean().sqrt() > 10)


def check_rows_sum_to_one(model):
    weights = model.attention(torch.randn(3, 7, model.d_model)).__getitem__(1).double()
    return bool(((weights.sum(-1) - 1).abs() < 1e-4).all() and weights.min() >= 0)
""", """
def check_head_split(model):  # one position, one head at a time
    x = torch.randn(1, 4, model.d_model)
    q, full, d = model.qkv(x)[0], model.q_proj(x), model.d_head
    return all(torch.allclose(q[0, h, t], full[0, t, h * d:(h + 1) * d], atol=1e-5)
               for h in range(model.n_heads) for t in range(4))


def check_scaling(model):  # the scale that fits the weights best is 1/sqrt(d_head)
    x = torch.randn(1, 5, model.d_model)
    q, k, _ = model.qkv(x)
    mask = torch.ones(5, 5, dtype=torch.bool).tril()
    weights = model.attention(x)[1]
    def fit(scale):
        return (torch.softmax((q @ k.transpose(-2, -1) * scale).masked_fill(~mask, -math.inf), -1) - weights).abs().max()
    return bool(fit(model.d_head ** -0.5) < 1e-5)


def check_shapes(model):
    B, T = 3, 4
    x = torch.randn(B, T, model.d_model)
    expected = {"q": (B, model.n_heads, T, model.d_head), "weights": (B, model.n_heads, T, T), "out": (B, T, model.d_model)}
    q, k, v = model.qkv(x)
    out, weights = model.attention(x)
    got = {"q": tuple(q.shape), "weights": tuple(weights.shape), "out": tuple(out.shape)}
    return got == expected and k.shape == v.shape == q.shape and model(x).shape == x.shape
"""],
}

# Right answers that call what their exercise asks the learner to write: each must score below full, every lost
# point must name the call (the substring given), and with the guard switched off it must score full.
LIBRARY = {
    "ex01": [
        ("called course.attention.scaled_dot_product_attention", """
from course.attention import scaled_dot_product_attention as my_helper  # imported under another name


def attention(q, k, v):
    return my_helper(q, k, v)
"""),
        ("called torch.nn.functional.scaled_dot_product_attention", """
import torch.nn.functional as nnf


def attention(q, k, v):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return nnf.scaled_dot_product_attention(q, k, v), weights
"""),
        ("called course.attention.scaled_dot_product_attention", """
def attention(q, k, v):  # the grader's own reference
    return H.ref.scaled_dot_product_attention(q, k, v)
"""),
        ("called torch.ops.aten.scaled_dot_product_attention", """
@torch.jit.script
def _fused(q, k, v):  # TorchScript runs in C++, out of the Python profiler's sight
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def attention(q, k, v):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return _fused(q, k, v), weights
"""),
        ("called torch.ops.aten.scaled_dot_product_attention", """
def attention(q, k, v):  # a C function calling a C function: no profile event
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return next(map(torch.nn.functional.scaled_dot_product_attention, [q], [k], [v])), weights
"""),
        ("called course.attention.scaled_dot_product_attention", """
import threading

import course.attention


def attention(q, k, v):  # in another thread
    box = []
    worker = threading.Thread(target=lambda: box.append(course.attention.scaled_dot_product_attention(q, k, v)))
    worker.start()
    worker.join()
    return box[0]
"""),
        ("switched off the grader's check for library calls (sys.setprofile)", """
import sys

import course.attention


def attention(q, k, v):
    sys.setprofile(None)
    return course.attention.scaled_dot_product_attention(q, k, v)
"""),
    ],
    "ex02": [
        ("called course.masks.causal_mask", "from course.masks import causal_mask"),
        ("called torch.nn.modules.transformer.Transformer.generate_square_subsequent_mask", """
def causal_mask(T):
    return torch.nn.Transformer.generate_square_subsequent_mask(T) == 0
"""),
        ("called course.attention.softmax_rows", """
from course.attention import softmax_rows


def masked_softmax(scores, mask):
    return softmax_rows(scores.masked_fill(~mask, float("-inf")))
"""),
        ("called torch.nn.functional.scaled_dot_product_attention", """
def masked_softmax(scores, mask):  # attention with identity keys and values returns its weights
    eye = torch.eye(scores.shape[-1], dtype=scores.dtype).expand(*scores.shape[:-2], -1, -1)
    mask = mask.expand(scores.shape)
    out = torch.nn.functional.scaled_dot_product_attention(scores, eye, eye, attn_mask=mask, scale=1.0)
    return out.nan_to_num(0.0) * mask.any(-1, keepdim=True)
"""),
    ],
    "ex03": [
        ("called course.attention.", "from course.attention import merge_heads, split_heads"),
        ("called course.attention.merge_heads", """
def merge_heads(x):
    return H.ref.merge_heads(x)
"""),
    ],
    "ex04": [
        ("called course.costs.attention_params", "from course.costs import attention_params as attention_param_count"),
        ("called course.attention.MultiHeadAttention.__init__", """
from course.attention import MultiHeadAttention
from course.config import ModelConfig


def attention_param_count(d_model, n_heads, n_kv_heads=None, bias=True):
    with torch.device("meta"):
        mha = MultiHeadAttention(ModelConfig(d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv_heads, bias=bias))
    return sum(p.numel() for p in mha.parameters())
"""),
    ],
    "ex05": [
        ("called course.costs.", """
from course import costs


def mlp_param_count(d_model, d_ff, kind="gelu", bias=True):
    return costs.mlp_params(d_model, d_ff, kind, bias)


def mlp_attention_ratio(d_model, d_ff, kind="gelu"):
    return costs.mlp_params(d_model, d_ff, kind, False) / costs.attention_params(d_model, 1, None, False)
"""),
        ("called course.feedforward.", """
from course.feedforward import MLP, SwiGLU


def mlp_param_count(d_model, d_ff, kind="gelu", bias=True):
    with torch.device("meta"):
        mlp = SwiGLU(d_model, d_ff, bias) if kind == "swiglu" else MLP(d_model, d_ff, "gelu", bias)
    return sum(p.numel() for p in mlp.parameters())
"""),
    ],
    "ex06": [
        ("called torch.nn.functional.", """
def layer_norm(x, weight, bias, eps=1e-5):
    return torch.nn.functional.layer_norm(x, x.shape[-1:], weight, bias, eps)


def rms_norm(x, weight, eps=1e-6):
    return torch.nn.functional.rms_norm(x, x.shape[-1:], weight, eps)
"""),
        ("called course.norms.", "from course.norms import layer_norm, rms_norm"),
        ("called torch.nn.modules.normalization.RMSNorm", """
def rms_norm(x, weight, eps=1e-6):
    norm = torch.nn.RMSNorm(x.shape[-1], eps=eps)
    with torch.no_grad():
        norm.weight.copy_(weight)
    return norm(x).detach()
"""),
        ("called torch.batch_norm", """
def layer_norm(x, weight, bias, eps=1e-5):  # batch statistics over the features of each row
    rows = x.reshape(-1, x.shape[-1]).T
    normed = torch.batch_norm(rows, None, None, None, None, True, 0.0, eps, False)
    return normed.T.reshape(x.shape) * weight + bias
"""),
        ("called torch.ops.aten.layer_norm", """
@torch.jit.script
def _ln(x, weight, bias, eps: float):
    return torch.nn.functional.layer_norm(x, [x.shape[-1]], weight, bias, eps)


def layer_norm(x, weight, bias, eps=1e-5):
    return _ln(x, weight, bias, float(eps))
"""),
    ],
    "ex07": [
        ("called course.blocks.Block", """
from course.blocks import Block
from course.config import ModelConfig


def _library_block(x, ln1, attn, ln2, mlp, placement):
    block = Block(ModelConfig(d_model=x.shape[-1], n_heads=1, norm_placement=placement))
    block.ln1, block.attn, block.ln2, block.mlp = ln1, attn, ln2, mlp
    return block.to(x.dtype)(x)


def pre_ln_block(x, ln1, attn, ln2, mlp):
    return _library_block(x, ln1, attn, ln2, mlp, "pre")


def post_ln_block(x, ln1, attn, ln2, mlp):
    return _library_block(x, ln1, attn, ln2, mlp, "post")
"""),
    ],
    "ex08": [
        ("called course.costs.kv_cache_bytes_for", "from course.costs import kv_cache_bytes_for as kv_cache_bytes"),
        ("called course.kv_cache.KVCache", """
from course.kv_cache import KVCache


def kv_cache_bytes(config, seq_len, batch_size, dtype):
    return KVCache(config.n_layers, batch_size, config.n_kv_heads, seq_len, config.d_head, dtype, "meta").nbytes()
"""),
        ("called torch.nn.functional.scaled_dot_product_attention", """
def decode_step(q, k_new, v_new, k_cache, v_cache):
    k, v = torch.cat([k_cache, k_new], dim=2), torch.cat([v_cache, v_new], dim=2)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True), k, v
"""),
        ("called course.costs.bytes_per_element", """
from course.costs import bytes_per_element


def kv_cache_bytes(config, seq_len, batch_size, dtype):
    size = bytes_per_element(dtype)
    return int(2 * config.n_layers * seq_len * batch_size * config.n_kv_heads * config.d_head * size)
"""),
    ],
    "ex09": [
        ("called course.masks.", """
from course import masks


def encoder_self_mask(src_is_token):
    return masks.encoder_mask(src_is_token)


def decoder_self_mask(tgt_is_token):
    return masks.decoder_mask(tgt_is_token.shape[1], tgt_is_token)


def cross_attention_mask(src_is_token, tgt_is_token):
    return masks.cross_mask(src_is_token, tgt_is_token.shape[1])
"""),
        ("called course.masks.padding_mask", """
from course.masks import padding_mask as keys_of


def encoder_self_mask(src_is_token):
    return keys_of(src_is_token)
"""),
        ("called torch.nn.modules.transformer.Transformer.generate_square_subsequent_mask", """
def decoder_self_mask(tgt_is_token):
    causal = torch.nn.Transformer.generate_square_subsequent_mask(tgt_is_token.shape[1]) == 0
    return causal & tgt_is_token[:, None, None, :]
"""),
    ],
}
