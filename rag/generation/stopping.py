"""Where an answer ends, the same for every engine: an end-of-turn token, or the text reaching a stop rule.

Each DecodeBackend (rag/generation/decoder.py for torch, rag/generation/ctranslate2_decoder.py) builds its
`Ending` once per request and asks it after every token, so both engines stop on exactly the same tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

# End-of-turn markers of the common chat templates (ChatML, Llama 3, Gemma, and the plain end of text).
END_OF_TURN_MARKERS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>", "</s>")


def end_of_turn_ids(tokenizer, configured: int | Iterable[int] | None) -> frozenset:
    """The tokens that end a turn: the configured EOS ids, the tokenizer's, and the chat template's
    end-of-turn markers where the vocabulary has them (a converted GGUF may list only one of them)."""
    eos = [] if configured is None else [configured] if isinstance(configured, int) else list(configured)
    vocabulary = tokenizer.get_vocab()
    markers = {vocabulary[marker] for marker in END_OF_TURN_MARKERS if marker in vocabulary}
    return frozenset(({*eos, tokenizer.eos_token_id} | markers) - {None})


@dataclass(frozen=True)
class Ending:
    """One request's end rule: its end-of-turn ids, and `stop`, a function of the decoded answer so far."""

    end_ids: frozenset
    stop: Callable[[str], bool] | None

    def reached(self, tokenizer, tokens: list[int], token: int) -> bool:
        """Whether `token`, the last of `tokens`, ends the answer."""
        if token in self.end_ids:
            return True
        if self.stop is not None:  # the text decides: a stop string may span tokens, or be inside one
            return self.stop(tokenizer.decode(tokens, skip_special_tokens=True))
        return False
