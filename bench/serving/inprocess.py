"""The in-process baseline: retrieval and generation loaded and called in one Python process.

`python -m bench.serving.inprocess` loads the models in a fresh process, answers one question, and prints
one JSON line: the model-load time (imports included, as a server's loader sees it) and the process
memory. `make bench` runs it as a subprocess so that every measurement starts from nothing.
"""

from __future__ import annotations

import json
import sys
import threading
import time


def load_pipeline(settings):
    """The monolith's pipeline, built with the same function the monolith's loader calls, and like it on
    a thread that then ends: a thread that ran torch keeps an idle OpenMP team while it lives, and one more
    team than cores slows the model's own (docs/performance.md)."""
    from rag.loading import load_local_pipeline

    built: dict = {}

    def load():
        try:
            built["pipeline"] = load_local_pipeline(settings, "baseline")
        except BaseException as exc:  # noqa: BLE001 - raised again on the calling thread
            built["error"] = exc

    loader = threading.Thread(target=load, name="load-baseline")
    loader.start()
    loader.join()
    if "error" in built:
        raise built["error"]
    return built["pipeline"]


def main() -> int:
    """Measure model load in this fresh process; one JSON line on stdout."""
    started = time.monotonic()
    from rag.api import QueryRequest
    from rag.settings import Settings

    settings = Settings.from_env()
    pipeline = load_pipeline(settings)
    loaded = time.monotonic()
    # The first answer after loading, with the bench's own request shape (argv: question, max_new_tokens).
    question = sys.argv[1] if len(sys.argv) > 1 else "When did the Velmora Tramway open?"
    max_new_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else settings.max_new_tokens
    answer = pipeline.answer(QueryRequest(question, settings.top_k, max_new_tokens))

    import psutil

    memory = psutil.Process().memory_full_info()
    json.dump(
        {
            "model_load_s": loaded - started,
            "first_request_ms": answer["timings_ms"]["total"],
            "rss_mib": memory.rss / 2**20,
            "pss_mib": memory.pss / 2**20,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
