"""What every engine other than torch reads from a transformers model folder to decode as transformers would:
its generation config, its context length, and the sampling limits transformers applies by default."""

from __future__ import annotations

# The per-request options rag/generation/generator.py's decoding_kwargs gives (as `model.generate` takes them).
KNOWN_OPTIONS = {"do_sample", "temperature", "top_k", "top_p", "stop"}
# What transformers samples from when neither the request nor the model's generation config says (its
# generation defaults: top-k 50, top-p 1.0), so every engine samples from the same candidates.
TRANSFORMERS_TOP_K = 50


def first_set(*values):
    """The first of `values` that is not None."""
    return next(value for value in values if value is not None)


def generation_config(path: str):
    """The folder's GenerationConfig (derived from config.json where it has no generation_config.json), its
    model config, and its context length in tokens."""
    from transformers import AutoConfig, GenerationConfig

    model_config = AutoConfig.from_pretrained(path)
    try:
        config = GenerationConfig.from_pretrained(path)
    except OSError:
        config = GenerationConfig.from_model_config(model_config)
    context_length = int(getattr(model_config, "max_position_embeddings", 2048) or 2048)
    return config, model_config, context_length


def sampling_limits(options: dict, config) -> tuple[int, float]:
    """The top-k (0: the whole vocabulary) and top-p a sampled request draws from: the request's, else the model's
    generation config's, else transformers' defaults."""
    top_k = first_set(options.get("top_k"), config.top_k, TRANSFORMERS_TOP_K)
    top_p = first_set(options.get("top_p"), config.top_p, 1.0)
    return top_k, top_p
