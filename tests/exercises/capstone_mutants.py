"""The capstone's mutation catalogue (exercises 11-14), as `mutants.py` is the ten exercises': known-wrong
answers with the catalogue key their diagnosis must name (None: only the score matters), alternative right
answers, and right answers that call what the exercise asks the learner to write. Each snippet runs right
after the exercise's answer cell; a snippet that patches one method (`Attention.forward = ...`) keeps the
rest."""

_ATTENTION_FORWARD = """
def _forward(self, x, rope=None, past=None):
    q = split_heads(self.q_proj(x), self.n_heads)
    k = split_heads(self.k_proj(x), self.n_kv_heads)
    v = split_heads(self.v_proj(x), self.n_kv_heads)
    if rope is not None:
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    if past is not None:
        k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
    group = self.n_heads // self.n_kv_heads
    T, T_k = x.shape[1], k.shape[2]
    {body}
    return self.o_proj(merge_heads(out)), (k, v)


Attention.forward = _forward
"""


def _attention(body: str) -> str:
    return _ATTENTION_FORWARD.format(body=body.strip().replace("\n", "\n    "))


_GPT_FORWARD = """
def _forward(self, idx, cache=None):
    c, T = self.config, idx.shape[1]
    offset = {offset}
    x = self.tok_emb(idx)
    rope = None
    if self.pos_emb is not None:
        x = x + self.pos_emb(torch.arange(offset, offset + T))
    else:
        rope = rope_tables(T, c.d_model // c.n_heads, c.rope_theta, offset)
    new_cache = []
    for i, block in enumerate(self.blocks):
        x, kv = block(x, rope, None if cache is None else cache[i])
        new_cache.append(kv)
    {final}
    return self.lm_head(x), new_cache


GPT.forward = _forward
"""
_OFFSET = "0 if cache is None else cache[0][0].shape[2]"
_FINAL = "if self.ln_f is not None:\n        x = self.ln_f(x)"

_PROBS = """
def next_token_probs(logits, temperature=1.0, top_k=None, top_p=None):
    if temperature == 0:
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    {body}
"""


def _probs(body: str) -> str:
    return _PROBS.format(body=body.strip().replace("\n", "\n    "))


_TOP_P = """
if top_p is not None:
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    p = sorted_logits.softmax(-1)
    drop = p.cumsum(-1) - p >= top_p
    logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
"""

WRONG = {
    "ex11": [
        (
            "kv_groups_interleaved",
            _attention("""
keys, values = k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1)
mask = torch.ones(T, T_k, dtype=torch.bool).tril(T_k - T)
scores = q @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1])
out = masked_softmax(scores, mask) @ values
"""),
        ),
        (
            "causal_missing",
            _attention("""
keys, values = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
out = torch.softmax(q @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ values
"""),
        ),
        (
            "cache_mask_top_left",
            _attention("""
keys, values = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
mask = torch.ones(T, T_k, dtype=torch.bool).tril()
out = masked_softmax(q @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1]), mask) @ values
"""),
        ),
    ],
    "ex12": [
        (
            "pre_post_swapped",
            """
_init = Block.__init__


def _swapped(self, config):
    _init(self, config)
    self.pre = config.norm_placement == "post"


Block.__init__ = _swapped
""",
        ),
        (
            "norm_twice",
            """
def _forward(self, x, rope=None, past=None):
    if not self.pre:
        return post_ln_block(x, self.ln1, lambda h: self.attn(h, rope, past)[0], self.ln2, self.mlp), None
    x = self.ln1(x)
    x = x + self.attn(x, rope, past)[0]
    return x + self.mlp(self.ln2(x)), None


Block.forward = _forward
""",
        ),
        (
            "gelu_exact",
            """
MLP.forward = lambda self, x: self.down(F.gelu(self.up(x)))
""",
        ),
    ],
    "ex13": [
        ("final_norm_missing", _GPT_FORWARD.format(offset=_OFFSET, final="pass")),
        ("positions_not_offset", _GPT_FORWARD.format(offset="0", final=_FINAL)),
        (
            "head_not_tied",
            """
_init = GPT.__init__


def _untied(self, config):
    _init(self, config)
    self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)


GPT.__init__ = _untied
""",
        ),
        (
            "tied_when_untied",
            """
_init = GPT.__init__


def _tied(self, config):
    _init(self, config)
    self.lm_head.weight = self.tok_emb.weight


GPT.__init__ = _tied
""",
        ),
    ],
    "ex14": [
        (
            "temperature_after_softmax",
            _probs("""
probs = logits.softmax(-1)
if top_k is not None:
    kth = probs.topk(min(top_k, probs.shape[-1]), dim=-1).values[..., -1:]
    probs = probs.masked_fill(probs < kth, 0.0)
    probs = probs / probs.sum(-1, keepdim=True)
return probs / temperature
"""),
        ),
        (
            "top_k_ties",
            _probs(
                """
logits = logits / temperature
if top_k is not None:
    top = logits.topk(min(top_k, logits.shape[-1]), dim=-1)
    logits = torch.full_like(logits, float("-inf")).scatter(-1, top.indices, top.values)
"""
                + _TOP_P
                + "return logits.softmax(-1)"
            ),
        ),
        (
            "top_p_boundary",
            _probs("""
logits = logits / temperature
if top_k is not None:
    kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
    logits = logits.masked_fill(logits < kth, float("-inf"))
if top_p is not None:
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    drop = sorted_logits.softmax(-1).cumsum(-1) > top_p
    logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
return logits.softmax(-1)
"""),
        ),
        (
            "not_renormalised",
            _probs("""
probs = (logits / temperature).softmax(-1)
if top_k is not None:
    kth = probs.topk(min(top_k, probs.shape[-1]), dim=-1).values[..., -1:]
    probs = probs * (probs >= kth)
if top_p is not None:
    sorted_p, order = probs.sort(dim=-1, descending=True)
    drop = sorted_p.cumsum(-1) - sorted_p >= top_p
    probs = probs.masked_fill(drop.scatter(-1, order, drop), 0.0)
return probs
"""),
        ),
        (
            None,
            """  # not seeded: a different draw on every call
def sample_next(logits, temperature=1.0, top_k=None, top_p=None, seed=0):
    return torch.multinomial(next_token_probs(logits, temperature, top_k, top_p), 1)
""",
        ),
    ],
}

RIGHT = {
    "ex11": [
        _attention("""  # GQA by grouping the queries instead of repeating the keys
B, H, _, d = q.shape
mask = torch.arange(T_k)[None, :] <= torch.arange(T_k - T, T_k)[:, None]  # (T, T_k)
qg = q.view(B, self.n_kv_heads, group, T, d)  # (B, H_kv, g, T, d): the group of each KV head
scores = qg @ k[:, :, None].transpose(-2, -1) / d**0.5  # (B, H_kv, g, T, T_k)
weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
out = (weights @ v[:, :, None]).reshape(B, H, T, d)
"""),
        _attention("""  # expand (no copy) and an additive mask
B, H_kv, _, d = k.shape
keys = k[:, :, None].expand(B, H_kv, group, T_k, d).reshape(B, H_kv * group, T_k, d)
values = v[:, :, None].expand(B, H_kv, group, T_k, d).reshape(B, H_kv * group, T_k, d)
bias = torch.zeros(T, T_k).masked_fill(torch.ones(T, T_k).triu(T_k - T + 1).bool(), float("-inf"))
out = torch.softmax(q @ keys.transpose(-2, -1) * d**-0.5 + bias, dim=-1) @ values
"""),
    ],
    "ex12": [
        """  # residuals written out, nn.GELU and F.layer_norm
def _forward(self, x, rope=None, past=None):
    if self.pre:
        out, kv = self.attn(self.ln1(x), rope, past)
        x = x + out
        return x + self.mlp(self.ln2(x)), kv
    out, kv = self.attn(x, rope, past)
    x = self.ln1(x + out)
    return self.ln2(x + self.mlp(x)), kv


Block.forward = _forward
MLP.forward = lambda self, x: self.down(torch.nn.GELU(approximate="tanh")(self.up(x)))
LayerNorm.forward = lambda self, x: F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)
""",
        """  # RMSNorm through rsqrt
RMSNorm.forward = lambda self, x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight
""",
    ],
    "ex13": [
        """  # no lm_head module when tied: the logits read the embedding matrix directly
_init = GPT.__init__


def _init_untied_only(self, config):
    _init(self, config)
    if config.tie_weights:
        del self.lm_head
        self.lm_head = lambda x: F.linear(x, self.tok_emb.weight)


GPT.__init__ = _init_untied_only
""",
        """  # the cache as a dict that counts positions itself
_forward = GPT.forward


def _counting(self, idx, cache=None):
    logits, layers = _forward(self, idx, None if cache is None else cache["layers"])
    return logits, {"layers": layers, "length": idx.shape[1] + (0 if cache is None else cache["length"])}


GPT.forward = _counting
""",
    ],
    "ex14": [
        _probs("""  # kthvalue for top-k, a mask of the nucleus built with searchsorted
logits = logits / temperature
if top_k is not None:
    kth = -(-logits).kthvalue(min(top_k, logits.shape[-1]), dim=-1, keepdim=True).values
    logits = torch.where(logits >= kth, logits, torch.tensor(float("-inf")))
if top_p is not None:
    probs = logits.softmax(-1)
    sorted_p, order = probs.sort(dim=-1, descending=True)
    above = sorted_p.cumsum(-1) - sorted_p
    keep_sorted = above < top_p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    probs = probs * keep
    return probs / probs.sum(-1, keepdim=True)
return logits.softmax(-1)
"""),
        """  # inverse-CDF sampling with its own generator
def sample_next(logits, temperature=1.0, top_k=None, top_p=None, seed=0):
    probs = next_token_probs(logits, temperature, top_k, top_p)
    u = torch.rand(probs.shape[0], 1, generator=torch.Generator().manual_seed(seed), dtype=probs.dtype)
    return (probs.cumsum(-1) < u).sum(-1, keepdim=True).clamp(max=probs.shape[-1] - 1)
""",
    ],
}

_SDPA = _attention("""
mask = torch.ones(T, T_k, dtype=torch.bool).tril(T_k - T)
k_all, v_all = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
out = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask)
""")
LIBRARY = {
    ex: [("called torch.nn.functional.scaled_dot_product_attention", _SDPA)] for ex in ("ex11", "ex13")
}
