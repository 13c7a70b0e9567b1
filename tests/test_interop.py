"""Parity with Hugging Face transformers: random-init GPT-2 and Llama (MHA, GQA, MQA) built from configs (no
downloads), converted by `course.from_hf`. Logits within the fp32 defaults of assert_close (rtol 1.3e-6,
atol 1e-5); 32 greedy tokens identical to `generate`."""

import pytest
import torch
from torch.testing import assert_close

import course

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


def gpt2(n_embd=64, n_layer=2, n_head=4, vocab=97, act="gelu_new"):
    cfg = transformers.GPT2Config(
        vocab_size=vocab,
        n_positions=64,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        activation_function=act,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.GPT2LMHeadModel(cfg).eval()


def llama(n_kv_heads, hidden=64, heads=8, layers=2, vocab=97, theta=10000.0):
    cfg = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=3 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=n_kv_heads,
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
        rope_theta=theta,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.LlamaForCausalLM(cfg).eval()


HF_MODELS = {
    "gpt2": lambda: gpt2(),
    "gpt2-wide-exact-gelu": lambda: gpt2(n_embd=96, n_layer=3, n_head=6, act="gelu"),
    "llama-mha": lambda: llama(8),
    "llama-gqa": lambda: llama(2, theta=500000.0),
    "llama-mqa": lambda: llama(1, hidden=48, heads=4, layers=3),
}


@pytest.mark.parametrize("name", HF_MODELS)
@pytest.mark.parametrize("B,T", [(1, 5), (3, 17)])
def test_logits_match_hugging_face(name, B, T):
    torch.manual_seed(hash((name, B, T)) % 2**31)
    hf = HF_MODELS[name]()
    ours = course.from_hf(hf)
    idx = torch.randint(0, 97, (B, T))
    with torch.no_grad():
        assert_close(ours(idx), hf(idx).logits)


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa"])
def test_greedy_tokens_match_hugging_face_generate(name):
    hf = HF_MODELS[name]()
    ours = course.from_hf(hf)
    prompt = torch.randint(0, 97, (2, 5))
    expected = hf.generate(prompt, do_sample=False, min_new_tokens=32, max_new_tokens=32, pad_token_id=0)
    assert torch.equal(ours.generate(prompt, 32, temperature=0), expected)


def test_converted_config_and_tying():
    ours = course.from_hf(llama(2))
    c = ours.config
    assert (c.n_heads, c.n_kv_heads, c.positional, c.mlp, c.norm, c.tie_weights) == (
        8,
        2,
        "rope",
        "swiglu",
        "rmsnorm",
        False,
    )
    g = course.from_hf(gpt2())
    assert g.lm_head.weight.data_ptr() == g.transformer.tok_emb.weight.data_ptr()


def test_unsupported_model_is_a_clear_error():
    with pytest.raises(ValueError, match="GPT2LMHeadModel and LlamaForCausalLM, got Linear"):
        course.from_hf(torch.nn.Linear(2, 2))
