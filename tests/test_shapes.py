"""The shape annotations of public signatures (`course.shapes`, jaxtyping) hold: the models run with every
annotated call checked (jaxtyping's import hook + beartype, in a fresh process), and a wrong shape is
refused."""

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("jaxtyping")
pytest.importorskip("beartype")

CHECKED_RUN = textwrap.dedent(
    """
    from jaxtyping import TypeCheckError, install_import_hook

    with install_import_hook("course", "beartype.beartype"):
        import torch
        from course import DecoderLM, EncoderDecoder, KVCache, ModelConfig
        from course.attention import MultiHeadAttention
        from course.static_decode import StaticDecoder

    torch.manual_seed(0)
    for preset, extra in (("tiny", {}), ("tiny-llama", {}), ("tiny", {"positional": "alibi"})):
        model = DecoderLM(ModelConfig.from_preset(preset, **extra)).eval()
        idx = torch.randint(0, model.config.vocab_size, (2, 7))
        model(idx)
        model.generate(idx, 4, temperature=0.0)
        StaticDecoder(model, batch_size=2, max_len=12).generate(idx, 4, temperature=0.0)
        is_token = torch.ones(2, 7, dtype=torch.bool)
        is_token[1, :3] = False
        pos = (is_token.long().cumsum(1) - 1).clamp(min=0)  # (B, T) left padding
        model(idx, pos=pos, is_token=is_token, cache=KVCache.for_model(model, 2, 8))
    c = ModelConfig.from_preset("tiny")
    EncoderDecoder(c).eval().generate(torch.randint(0, c.vocab_size, (2, 5)), 1, 3)
    mha = MultiHeadAttention(c)
    x = torch.randn(2, 3, c.d_model)
    mha(x, mask=torch.ones(3, 5, dtype=torch.bool), context=torch.randn(2, 5, c.d_model))
    try:
        mha(x, mask=torch.ones(4, 3, dtype=torch.bool))  # 4 query rows for T=3
    except TypeCheckError:
        print("refused")
    """
)


def test_annotated_shapes_hold_and_a_wrong_one_is_refused():
    done = subprocess.run([sys.executable, "-c", CHECKED_RUN], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "refused", done.stdout
