"""A tiny causal LM with the embedded SmolLM2 tokenizer, made on the spot for fuzzing.

Fuzzing checks the HTTP contract, not answers. Every request that passes validation still runs the real
loading and generation code (transformers, the chat template, the context check, the deadline), but
with a one-layer, 16-wide model whose end-of-sequence token is the likeliest next token: greedy
answers end at once, sampled ones after a few tokens, whatever max_new_tokens asks for. So tens of
thousands of requests fit in minutes instead of days.
"""

from __future__ import annotations

from pathlib import Path

# The residual stream's first dimension carries this constant (from the token embeddings), so after the
# final norm it is always positive; only the end-of-sequence row of the output layer reads it.
CARRIER = 10.0
# After the norm that dimension is about 4, so the end-of-sequence logit is about 16 and every other
# logit 0. Greedy and low-temperature answers end at once; at temperature 2 (logit 8 against
# log(49,152) = 10.8) about one token in 17 ends the answer, so streams carry tokens too.
EOS_WEIGHT = 4.0


def make_tiny_llm(target: Path, seed: int = 0) -> Path:
    """Write the tiny model (config, safetensors, tokenizer) into `target` and return it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from rag.ladder import tier
    from rag.model_files import make_readable
    from rag.models import prepare

    source = prepare(tier("smollm2-135m-instruct"), download=False)
    tokenizer = AutoTokenizer.from_pretrained(source)
    config = AutoConfig.from_pretrained(source)
    config.update(
        {
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "tie_word_embeddings": False,
        }
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = CARRIER
        model.model.norm.weight.zero_()
        model.model.norm.weight[0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[tokenizer.eos_token_id, 0] = EOS_WEIGHT
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    make_readable(target)
    return target
