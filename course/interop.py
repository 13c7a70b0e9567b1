"""Hugging Face interop: convert a `GPT2LMHeadModel` or `LlamaForCausalLM` into a course `DecoderLM`.

GPT-2 stores its four projections as Conv1D with weights (in, out): they are transposed into nn.Linear, and
the fused `c_attn` [q | k | v] is split. Llama's RoPE is split-half (`rotate_half`), the course default.
"""

from __future__ import annotations

from .config import ModelConfig
from .models import DecoderLM

_GPT2_ACT = {
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu": "gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}


def _gpt2_config(hf) -> ModelConfig:
    if hf.activation_function not in _GPT2_ACT:
        raise ValueError(
            f"GPT-2 activation_function={hf.activation_function!r} is not one of {list(_GPT2_ACT)}"
        )
    return ModelConfig(
        vocab_size=hf.vocab_size,
        context_length=hf.n_positions,
        d_model=hf.n_embd,
        n_layers=hf.n_layer,
        n_heads=hf.n_head,
        d_ff=hf.n_inner or 4 * hf.n_embd,
        positional="learned",
        norm="layernorm",
        norm_eps=hf.layer_norm_epsilon,
        norm_placement="pre",
        mlp=_GPT2_ACT[hf.activation_function],
        bias=True,
        tie_weights=getattr(hf, "tie_word_embeddings", True),
    )


def _gpt2_state(sd: dict, config: ModelConfig) -> dict:
    out = {
        "transformer.tok_emb.weight": sd["transformer.wte.weight"],
        "transformer.pos_emb.weight": sd["transformer.wpe.weight"],
        "transformer.ln_f.weight": sd["transformer.ln_f.weight"],
        "transformer.ln_f.bias": sd["transformer.ln_f.bias"],
        "lm_head.weight": sd.get("lm_head.weight", sd["transformer.wte.weight"]),
    }
    for i in range(config.n_layers):
        h, b = f"transformer.h.{i}.", f"transformer.blocks.{i}."
        for src, dst in (("ln_1", "ln1"), ("ln_2", "ln2")):
            out[b + dst + ".weight"], out[b + dst + ".bias"] = sd[h + src + ".weight"], sd[h + src + ".bias"]
        for name, w in zip("qkv", sd[h + "attn.c_attn.weight"].t().chunk(3, dim=0), strict=True):
            out[b + f"attn.{name}_proj.weight"] = w
        for name, bias in zip("qkv", sd[h + "attn.c_attn.bias"].chunk(3), strict=True):
            out[b + f"attn.{name}_proj.bias"] = bias
        for src, dst in (("attn.c_proj", "attn.o_proj"), ("mlp.c_fc", "mlp.up"), ("mlp.c_proj", "mlp.down")):
            out[b + dst + ".weight"] = sd[h + src + ".weight"].t()
            out[b + dst + ".bias"] = sd[h + src + ".bias"]
    return out


def _llama_config(hf) -> ModelConfig:
    if getattr(hf, "hidden_act", "silu") != "silu":
        raise ValueError(f"Llama hidden_act={hf.hidden_act!r}; the course's SwiGLU uses 'silu'")
    attention_bias, mlp_bias = getattr(hf, "attention_bias", False), getattr(hf, "mlp_bias", False)
    if attention_bias != mlp_bias:
        raise ValueError(
            f"attention_bias={attention_bias} and mlp_bias={mlp_bias} differ; the course has one "
            f"`bias` switch for both"
        )
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    if head_dim * hf.num_attention_heads != hf.hidden_size:
        raise ValueError(
            f"head_dim={head_dim} x heads={hf.num_attention_heads} != hidden_size={hf.hidden_size}"
        )
    rope = getattr(hf, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"rope_type={rope['rope_type']!r} is not supported (only the default RoPE)")
    theta = rope.get("rope_theta", getattr(hf, "rope_theta", 10000.0))
    return ModelConfig(
        vocab_size=hf.vocab_size,
        context_length=hf.max_position_embeddings,
        d_model=hf.hidden_size,
        n_layers=hf.num_hidden_layers,
        n_heads=hf.num_attention_heads,
        n_kv_heads=hf.num_key_value_heads or hf.num_attention_heads,
        d_ff=hf.intermediate_size,
        positional="rope",
        rope_convention="split_half",
        rope_theta=float(theta),
        norm="rmsnorm",
        norm_eps=hf.rms_norm_eps,
        norm_placement="pre",
        mlp="swiglu",
        bias=attention_bias,
        tie_weights=bool(getattr(hf, "tie_word_embeddings", False)),
    )


def _llama_state(sd: dict, config: ModelConfig) -> dict:
    out = {
        "transformer.tok_emb.weight": sd["model.embed_tokens.weight"],
        "transformer.ln_f.weight": sd["model.norm.weight"],
        "lm_head.weight": sd.get("lm_head.weight", sd["model.embed_tokens.weight"]),
    }
    names = {
        "input_layernorm": "ln1",
        "post_attention_layernorm": "ln2",
        "self_attn.q_proj": "attn.q_proj",
        "self_attn.k_proj": "attn.k_proj",
        "self_attn.v_proj": "attn.v_proj",
        "self_attn.o_proj": "attn.o_proj",
        "mlp.gate_proj": "mlp.gate",
        "mlp.up_proj": "mlp.up",
        "mlp.down_proj": "mlp.down",
    }
    for i in range(config.n_layers):
        for src, dst in names.items():
            for kind in ("weight", "bias"):
                key = f"model.layers.{i}.{src}.{kind}"
                if key in sd:
                    out[f"transformer.blocks.{i}.{dst}.{kind}"] = sd[key]
    return out


def from_hf(hf_model) -> DecoderLM:
    """A course DecoderLM with the same weights (and so the same logits) as a HF GPT-2 or Llama model."""
    kind = type(hf_model).__name__
    if kind in ("GPT2LMHeadModel", "GPT2Model"):
        config = _gpt2_config(hf_model.config)
        state = _gpt2_state(_prefixed(hf_model, "transformer."), config)
    elif kind in ("LlamaForCausalLM", "LlamaModel"):
        config = _llama_config(hf_model.config)
        state = _llama_state(_prefixed(hf_model, "model."), config)
    else:
        raise ValueError(f"from_hf supports GPT2LMHeadModel and LlamaForCausalLM, got {kind}")
    param = next(hf_model.parameters())
    model = DecoderLM(config).to(device=param.device, dtype=param.dtype)
    model.load_state_dict(state, strict=True)
    return model.eval()


def _prefixed(hf_model, prefix: str) -> dict:
    """State dict with the base-model prefix, whether we got the LM-head model or the bare base model."""
    sd = hf_model.state_dict()
    if any(k.startswith(prefix) for k in sd):
        return sd
    return {prefix + k: v for k, v in sd.items()}
