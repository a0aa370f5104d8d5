"""Configuration, read from the environment in one place and validated before anything loads."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from rag.errors import ConfigError
from rag.ladder import EMBEDDED_PREFIX, default_tier, embedded_tier
from rag.runtime import cpu_vendor, gpu_visible

REPO_ROOT = Path(__file__).resolve().parents[1]
SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")
SAMPLE_INDEX_DIR = REPO_ROOT / "indexes" / "sample"

# The embedded defaults ship as PyPI packages, so they work with no network (see rag/models.py). The LLM
# is a tier of the model ladder (rag/model_ladder.toml), named `embedded:<tier>`.
EMBEDDED_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

MAX_QUERY_CHARS = 4000  # the public API's limit on "query" (docs/api.md, docs/openapi.yaml)
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker's own real-time limit
INDEX_TYPES = ("auto", "flat", "hnsw", "ivf")  # RAG_INDEX_TYPE; rag/index/faiss_types.py says what each is
RETRIEVAL_MODES = ("dense", "hybrid")  # RAG_RETRIEVAL; rag/retrieval/hybrid.py
CHAT_CONDENSE_STRATEGIES = ("last", "concat", "keywords", "auto")  # RAG_CHAT_CONDENSE; rag/condense.py
MAX_CHUNK_CHARS = 20000  # the largest RAG_CHUNK_SIZE: no passage an index holds is longer
MAX_PASSAGES = 20  # the largest top_k

# Batching and admission (docs/performance.md). The defaults were chosen with the concurrency sweep of `make bench`.
DEFAULT_MAX_BATCH_SIZE = 8
DEFAULT_MAX_CONCURRENT_REQUESTS = 16
# Gunicorn threads beyond the admitted requests: they turn extra requests away (429) and answer /ping.
SPARE_SERVER_THREADS = 4
LLM_DTYPES = ("auto", "float32", "bfloat16", "float16")
LLM_QUANTIZATIONS = ("none", "int8")
# RAG_LLM_ENGINE: what runs the LLM. torch: our own batched loop over transformers (rag/generation/decoder.py);
# ctranslate2: CTranslate2's generator, in static batches (rag/generation/ctranslate2_decoder.py).
LLM_ENGINES = ("torch", "ctranslate2", "openvino")


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _bounded(env: dict, name: str, default, low, high, cast, wrong_type: str):
    """Variable `name` cast by `cast` and checked against [low, high]; errors name the variable."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not {wrong_type} between {low} and {high}")
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range; set it between {low} and {high}")
    return value


def env_int(env: dict, name: str, default: int, low: int, high: int) -> int:
    """Integer variable `name` from `env`, `default` when unset; a bad value raises ConfigError naming it."""
    return _bounded(env, name, default, low, high, int, "an integer; set it to a whole number")


def _float(env: dict, name: str, default: float, low: float, high: float) -> float:
    return _bounded(env, name, default, low, high, float, "a number; set it")


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_bool(value: str | None, name: str, default: bool = False) -> bool:
    """The one yes/no rule of the project (variables, make flags): 1/true/yes/on or 0/false/no/off, any case;
    empty or unset is `default`; anything else stops with a message that names the variable."""
    raw = (value or "").strip().lower()
    if not raw:
        return default
    if raw not in _TRUE + _FALSE:
        raise ConfigError(f"{name}={raw!r} is not valid; use 1 or 0 (also true/false, yes/no, on/off)")
    return raw in _TRUE


def _switch(env: dict, name: str, default: bool) -> bool:
    return parse_bool(env.get(name), name, default)


GROUNDING_MODES = ("off", "present", "subject")  # rag/generation/grounding.py


def _grounding(env: dict, default: str) -> str:
    """RAG_GROUNDING_CHECK: a mode, or a yes/no (yes: the default mode; no: off), as before the modes."""
    value = env.get("RAG_GROUNDING_CHECK", "").strip().lower()
    if value in GROUNDING_MODES:
        return value
    try:
        return default if parse_bool(value, "RAG_GROUNDING_CHECK", True) else "off"
    except ConfigError:
        raise ConfigError(
            f"RAG_GROUNDING_CHECK={value!r} is not valid; use {', '.join(GROUNDING_MODES)} (or on, which is {default})"
        ) from None


SAGEMAKER_SCHEME = "sagemaker://"  # RAG_LLM_URL=sagemaker://<endpoint>: the LLM endpoint of the split topology
# SageMaker's own rule for endpoint names.
_ENDPOINT_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


def _llm_url(env: dict) -> str:
    value = env.get("RAG_LLM_URL", "").strip()
    if not value.startswith(SAGEMAKER_SCHEME):
        return _url(env, "RAG_LLM_URL", "http://127.0.0.1:5002")
    if not _ENDPOINT_NAME.fullmatch(value[len(SAGEMAKER_SCHEME) :]):
        raise ConfigError(
            f"RAG_LLM_URL={value!r} does not name a SageMaker endpoint; set it like "
            "sagemaker://rag-split-llm (letters, digits and hyphens)"
        )
    return value


def _url(env: dict, name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    try:
        valid = value.startswith(("http://", "https://")) and bool(urlsplit(value).hostname) and _port_of(value) > 0
    except ValueError:  # a port that is not a number, or out of range
        valid = False
    if not valid:
        raise ConfigError(f"{name}={value!r} is not an http(s) URL; set it like http://127.0.0.1:5001")
    return value.rstrip("/")


def _port_of(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*")


def _bind_host(env: dict) -> str:
    """An IP address or a plain host name: it goes into Gunicorn's --bind, so nothing else is let through."""
    value = env.get("RAG_BIND_HOST", "").strip() or "0.0.0.0"
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(value):
        raise ConfigError(
            f"RAG_BIND_HOST={value!r} is not an IP address or host name; set it like 0.0.0.0 or 127.0.0.1"
        )
    return value


def _choice(env: dict, name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not valid; use {' or '.join(allowed)}")
    return value


def _instance_token(env: dict) -> str:
    value = env.get("RAG_INSTANCE_TOKEN", "").strip()
    if not re.fullmatch(r"[A-Za-z0-9-]{0,64}", value):
        raise ConfigError("RAG_INSTANCE_TOKEN must be at most 64 letters, digits and hyphens (start.sh sets it)")
    return value


def _default_index_dir() -> Path:
    sagemaker_index = SAGEMAKER_MODEL_DIR / "index"
    return sagemaker_index if (sagemaker_index / "manifest.json").exists() else SAMPLE_INDEX_DIR


def _default_llm(env: dict | None = None) -> str:
    sagemaker_llm = SAGEMAKER_MODEL_DIR / "llm"
    if (sagemaker_llm / "config.json").exists():
        return str(sagemaker_llm)
    return EMBEDDED_PREFIX + default_tier(env)


def _llm_model(env: dict) -> str:
    value = env.get("RAG_LLM_MODEL", "").strip() or _default_llm(env)
    embedded_tier(value)  # an unknown `embedded:<tier>` is a configuration error now, not at load time
    return value


def compute_type(dtype: str, quantize: str) -> str:
    """CTranslate2's compute type for RAG_LLM_DTYPE=`dtype` and RAG_LLM_QUANTIZE=`quantize`: auto is float32,
    as for torch, and int8 quantizes the weights while the rest computes in the dtype (int8_float32,
    int8_bfloat16). Whether the device supports it is checked when the model loads."""
    base = "float32" if dtype == "auto" else dtype
    return base if quantize == "none" else f"{quantize}_{base}"


def _tier_default(llm_model: str, device: str) -> tuple[str, str] | None:
    """The engine and quantization the model's tier names (rag/model_ladder.toml): for this CPU's vendor when the
    model will run on the CPU (the per-vendor choices are CPU engines, measured on CPUs), else the tier's own. None
    for a model that is not a tier."""
    model = embedded_tier(llm_model)
    if model is None:
        return None
    on_cpu = device == "cpu" or (device == "auto" and not gpu_visible())
    engine, quantize = model.served_by(cpu_vendor() if on_cpu else None)
    if engine not in LLM_ENGINES:
        raise ConfigError(
            f"tier {model.name} names engine {engine!r} in rag/model_ladder.toml; use {' or '.join(LLM_ENGINES)}"
        )
    if quantize not in LLM_QUANTIZATIONS:
        raise ConfigError(
            f"tier {model.name} names quantize {quantize!r} in rag/model_ladder.toml; use "
            f"{' or '.join(LLM_QUANTIZATIONS)}"
        )
    return engine, quantize


def _llm_engine(env: dict, chosen: tuple[str, str] | None) -> str:
    """RAG_LLM_ENGINE, else the engine the model's tier names for this CPU (`chosen`: _tier_default), else torch."""
    return _choice(env, "RAG_LLM_ENGINE", chosen[0] if chosen else "torch", LLM_ENGINES)


def _llm_quantize(env: dict, chosen: tuple[str, str] | None) -> str:
    """RAG_LLM_QUANTIZE, else the tier's `quantize` (`chosen`: _tier_default) when its engine serves it too
    (RAG_LLM_ENGINE unset or the same): a tier's default is an engine and a precision, measured together; else
    none."""
    default = "none"
    if chosen is not None and env.get("RAG_LLM_ENGINE", "").strip().lower() in ("", chosen[0]):
        default = chosen[1]
    return _choice(env, "RAG_LLM_QUANTIZE", default, LLM_QUANTIZATIONS)


CHARS_PER_TOKEN = 4  # the budget is estimated from characters, the same way in every process


@dataclass(frozen=True)
class ContextSettings:
    """How much of the retrieved text reaches the prompt."""

    # The defaults are the settings' defaults, chosen with `make eval` on the sample set (docs/evaluation.md):
    # at 160 tokens the excerpts held the answer for 87 % of the questions (80 tokens: 67 %, 240: 88 %),
    # and adding the shared query words lifted that at small budgets; neighbours (window) only cost budget.
    focus: str = "sentences"  # "sentences": the best sentences; "off": whole passages, as retrieved
    max_tokens: int = 160  # budget for all excerpts together (estimated as characters / 4)
    score_gap: float = 0.15  # drop passages whose retrieval score is this far below the best one
    window: int = 0  # sentences kept on each side of a selected sentence
    lexical_weight: float = 0.3  # weight of the share of query words a sentence contains, added to its similarity


@dataclass(frozen=True)
class Settings:
    """Every knob of the service. Defaults suit the embedded models on a small CPU machine."""

    index_dir: Path = field(default_factory=_default_index_dir)
    embedding_model: str = EMBEDDED_EMBEDDING_MODEL
    llm_model: str = field(default_factory=_default_llm)
    device: str = "auto"  # auto picks CUDA when present, else CPU
    # One generation at a time uses every core; more threads than cores only adds contention.
    torch_threads: int = field(default_factory=_usable_cpus)
    top_k: int = 3
    max_new_tokens: int = 128
    # Below SageMaker's 60 s invocation limit, so a slow request gets our 504, not a dropped connection.
    request_timeout_s: float = 55.0
    chunk_size: int = 800  # characters: about 3-4 sentences, well under MiniLM's 256-token window
    chunk_overlap: int = 120  # keeps a fact that straddles a boundary whole in one of the chunks
    embed_batch_size: int = 32
    # Focused context (rag/retrieval/context.py): the defaults were chosen with `make eval` (docs/evaluation.md).
    context_focus: str = "sentences"
    context_max_tokens: int = 160
    context_score_gap: float = 0.15
    context_window: int = 0
    context_lexical_weight: float = 0.3
    # rag/generation/grounding.py: refuse answers stating numbers or names not in the context ("present"),
    # or only in passages not about the question's subject ("subject"); "off". subject delivered fewer wrong
    # answers than present on all three dev sets, at the same or better total score (docs/evaluation.md).
    grounding_check: str = "subject"
    vector_url: str = "http://127.0.0.1:5001"
    llm_url: str = "http://127.0.0.1:5002"
    port: int = 8080
    # Batching and admission, per model (one model per worker): rag/generation/batching.py, docs/performance.md.
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE  # requests decoded together, one token each per step
    batch_wait_ms: int = 0  # an idle engine starts at once: per-request prefill gains nothing from waiting
    max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS  # waiting or running; past it, 429
    llm_dtype: str = "auto"  # auto: float32 on CPU and CUDA (docs/performance.md has the measurements)
    llm_quantize: str = "none"  # int8: dynamic quantization of the Linear layers (CPU only)
    # The engine when RAG_LLM_ENGINE is unset: the tier's choice for this CPU's vendor in rag/model_ladder.toml, else
    # torch.
    llm_engine: str = "torch"
    # The engine computes the instructions' state once and starts every prompt from it (RAG_LLM_PREFIX_CACHE).
    llm_prefix_cache: bool = True
    # The OpenVINO engine's KV cache pool in tokens (RAG_LLM_KV_CACHE_TOKENS); 0: its default for the batch size
    # (rag/generation/openvino_decoder.py: kv_cache_blocks).
    llm_kv_cache_tokens: int = 0
    bind_host: str = "0.0.0.0"  # all interfaces, as SageMaker needs; tests bind loopback only
    startup_timeout_s: int = 600  # how long start.sh waits for its internal services before saying so
    # Set by start.sh for its three services: each refuses a caller that carries another instance's token.
    instance_token: str = ""
    # all: the three services of the microservices image; llm: the LLM service alone on the public port,
    # which is the LLM endpoint of the split topology (deploy sets it there).
    serve: str = "all"
    # One worker per model copy: each gunicorn worker loads its own models, so more workers cost RAM.
    workers: int = 1
    # gthread threads per worker: every admitted request may hold one, and the spare ones keep /ping and
    # the fast 429s answering however busy the model is.
    threads: int = DEFAULT_MAX_CONCURRENT_REQUESTS + SPARE_SERVER_THREADS
    server_timeout: int = 120  # gunicorn's worker heartbeat timeout; request deadlines are our own
    log_level: str = "INFO"
    # Index types (rag/index/faiss_types.py): the type `make index` builds, and serve-time search overrides
    # of the efSearch / nprobe tuned at build time (None: the manifest's tuned value).
    index_type: str = "auto"
    index_ef_search: int | None = None
    index_nprobe: int | None = None
    # dense: FAISS alone; hybrid: FAISS and the index's BM25 part, fused (rag/retrieval/hybrid.py). Dense by
    # measurement: on the sample set hybrid gained one hit@1 but lost one answer-in-context and three correct
    # answers (docs/evaluation.md#hybrid-retrieval).
    retrieval: str = "dense"
    # Operations (docs/operations.md): CloudWatch EMF lines per request, their namespace and dimensions (deploy sets
    # the endpoint and variant names), and OpenTelemetry traces, on only when an OTEL_* variable asks for them.
    metrics: bool = True
    metrics_namespace: str = "RagService"
    endpoint_name: str = "local"
    variant_name: str = "AllTraffic"
    tracing: bool = False
    service_name: str = ""  # OTEL_SERVICE_NAME; empty: rag-<service> (rag-monolith, rag-orchestrator, ...)
    # How a chat request's conversation becomes one retrieval query (rag/condense.py). auto by measurement on
    # the multi-turn dev sets: the best hit@1 and (tied) accuracy on the tuning set, tied best on the held-out
    # one (docs/api.md#chat-completions).
    chat_condense: str = "auto"

    @property
    def context(self) -> ContextSettings:
        """The focused-context settings, as rag.retrieval.context takes them."""
        return ContextSettings(
            self.context_focus,
            self.context_max_tokens,
            self.context_score_gap,
            self.context_window,
            self.context_lexical_weight,
        )

    @classmethod
    def from_env(cls, env: dict | None = None) -> Settings:
        """Build settings from environment variables; a wrong value raises ConfigError naming it."""
        env = env if isinstance(env, _RecordedReads) else dict(os.environ if env is None else env)
        device = env.get("RAG_DEVICE", "auto").strip().lower() or "auto"
        if device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"RAG_DEVICE={device!r} is not valid; use auto, cpu or cuda")
        if device == "auto" and env.get("SM_NUM_GPUS", "").strip() == "0":
            device = "cpu"  # SageMaker says there is no GPU: don't probe for one
        index_raw = env.get("RAG_INDEX_DIR", "").strip()
        index_dir = Path(index_raw).expanduser() if index_raw else _default_index_dir()
        log_level = env.get("RAG_LOG_LEVEL", "INFO").strip().upper() or "INFO"
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"RAG_LOG_LEVEL={log_level!r} is not valid; use DEBUG, INFO, WARNING or ERROR")
        chunk_size = env_int(env, "RAG_CHUNK_SIZE", 800, 100, MAX_CHUNK_CHARS)
        context_focus = env.get("RAG_CONTEXT_FOCUS", "").strip().lower() or cls.context_focus
        if context_focus not in ("sentences", "off"):
            raise ConfigError(f"RAG_CONTEXT_FOCUS={context_focus!r} is not valid; use sentences or off")
        index_type = env.get("RAG_INDEX_TYPE", "").strip().lower() or "auto"
        if index_type not in INDEX_TYPES:
            raise ConfigError(f"RAG_INDEX_TYPE={index_type!r} is not valid; use {', '.join(INDEX_TYPES)}")
        llm_model = _llm_model(env)
        tier_choice = _tier_default(llm_model, device)  # reads /proc/cpuinfo once, for the engine and the quantization
        settings = cls(
            index_dir=index_dir,
            embedding_model=env.get("RAG_EMBEDDING_MODEL", "").strip() or EMBEDDED_EMBEDDING_MODEL,
            llm_model=llm_model,
            llm_engine=_llm_engine(env, tier_choice),
            llm_prefix_cache=_switch(env, "RAG_LLM_PREFIX_CACHE", True),
            llm_kv_cache_tokens=env_int(env, "RAG_LLM_KV_CACHE_TOKENS", 0, 0, 1 << 22),
            llm_quantize=_llm_quantize(env, tier_choice),
            device=device,
            torch_threads=env_int(env, "RAG_TORCH_THREADS", _usable_cpus(), 1, 256),
            top_k=env_int(env, "RAG_TOP_K", 3, 1, 20),
            max_new_tokens=env_int(env, "RAG_MAX_NEW_TOKENS", 128, 1, 1024),
            request_timeout_s=_float(env, "RAG_REQUEST_TIMEOUT", 55.0, 1.0, 3600.0),
            chunk_size=chunk_size,
            chunk_overlap=env_int(env, "RAG_CHUNK_OVERLAP", min(120, chunk_size // 4), 0, chunk_size // 2),
            embed_batch_size=env_int(env, "RAG_EMBED_BATCH_SIZE", 32, 1, 4096),
            context_focus=context_focus,
            context_max_tokens=env_int(env, "RAG_CONTEXT_MAX_TOKENS", cls.context_max_tokens, 16, 8192),
            context_score_gap=_float(env, "RAG_CONTEXT_SCORE_GAP", cls.context_score_gap, 0.0, 2.0),
            context_window=env_int(env, "RAG_CONTEXT_WINDOW", cls.context_window, 0, 10),
            context_lexical_weight=_float(env, "RAG_CONTEXT_LEXICAL_WEIGHT", cls.context_lexical_weight, 0.0, 10.0),
            grounding_check=_grounding(env, cls.grounding_check),
            vector_url=_url(env, "RAG_VECTOR_URL", "http://127.0.0.1:5001"),
            llm_url=_llm_url(env),
            port=env_int(env, "SAGEMAKER_BIND_TO_PORT", 8080, 1, 65535),
            bind_host=_bind_host(env),
            startup_timeout_s=env_int(env, "RAG_STARTUP_TIMEOUT", 600, 1, 86400),
            instance_token=_instance_token(env),
            serve=_choice(env, "RAG_SERVE", "all", ("all", "llm")),
            workers=env_int(env, "MODEL_SERVER_WORKERS", 1, 1, 64),
            **_batching(env),
            server_timeout=env_int(env, "MODEL_SERVER_TIMEOUT", 120, 1, 3600),
            log_level=log_level,
            index_type=index_type,
            index_ef_search=env_int(env, "RAG_INDEX_EF_SEARCH", None, 1, 4096),
            index_nprobe=env_int(env, "RAG_INDEX_NPROBE", None, 1, 65536),
            retrieval=_choice(env, "RAG_RETRIEVAL", cls.retrieval, RETRIEVAL_MODES),
            **_telemetry(env),
            chat_condense=_choice(env, "RAG_CHAT_CONDENSE", cls.chat_condense, CHAT_CONDENSE_STRATEGIES),
        )
        return settings

    @property
    def public_bind(self) -> str:
        """Gunicorn's --bind for the public port (an IPv6 address goes in brackets)."""
        host = f"[{self.bind_host}]" if ":" in self.bind_host else self.bind_host
        return f"{host}:{self.port}"

    @property
    def vector_port(self) -> int:
        """The loopback port start.sh binds the vector service to (from RAG_VECTOR_URL)."""
        return _port_of(self.vector_url)

    @property
    def llm_endpoint(self) -> str | None:
        """The LLM endpoint's name when RAG_LLM_URL is sagemaker://<name> (split topology), else None."""
        return self.llm_url[len(SAGEMAKER_SCHEME) :] if self.llm_url.startswith(SAGEMAKER_SCHEME) else None

    @property
    def llm_port(self) -> int:
        """The loopback port start.sh binds the LLM service to (from RAG_LLM_URL; 0 for an endpoint)."""
        return 0 if self.llm_endpoint else _port_of(self.llm_url)

    @property
    def local_services(self) -> str:
        """The internal services start.sh runs, comma-separated: vector and llm, or vector alone when
        the LLM is another endpoint, or llm alone when this container is that endpoint (RAG_SERVE=llm)."""
        if self.serve == "llm":
            return "llm"
        return "vector" if self.llm_endpoint else "vector,llm"


class _RecordedReads(dict):
    """An environment that remembers every name looked up in it."""

    def __init__(self, *args):
        super().__init__(*args)
        self.names: set[str] = set()

    def get(self, key, default=None):
        self.names.add(key)
        return super().get(key, default)


def variable_names() -> frozenset[str]:
    """Every environment variable Settings.from_env reads, found by running it: the one list of names
    the services understand (deploy checks the RAG_* variables it forwards against it)."""
    env = _RecordedReads()
    Settings.from_env(env)
    return frozenset(env.names)


def _batching(env: dict) -> dict:
    """Batching, admission, LLM precision and the server threads that depend on them."""
    admitted = env_int(env, "RAG_MAX_CONCURRENT_REQUESTS", DEFAULT_MAX_CONCURRENT_REQUESTS, 1, 1024)
    least_threads = admitted + 2  # one more request to turn away, and /ping
    threads = env_int(env, "RAG_SERVER_THREADS", admitted + SPARE_SERVER_THREADS, 1, 4096)
    if threads < least_threads:
        raise ConfigError(
            f"RAG_SERVER_THREADS={threads} would let RAG_MAX_CONCURRENT_REQUESTS={admitted} admitted "
            f"requests take every thread, so /ping and the 429s would wait; set it to at least "
            f"{least_threads}, or leave it unset"
        )
    return {
        "max_batch_size": env_int(env, "RAG_MAX_BATCH_SIZE", DEFAULT_MAX_BATCH_SIZE, 1, 256),
        "batch_wait_ms": env_int(env, "RAG_BATCH_WAIT_MS", 0, 0, 1000),
        "max_concurrent_requests": admitted,
        "llm_dtype": _choice(env, "RAG_LLM_DTYPE", "auto", LLM_DTYPES),
        "threads": threads,
    }


_NAMESPACE = re.compile(r"[A-Za-z0-9 ._/#:-]{1,255}")  # CloudWatch's characters for a namespace
_DIMENSION_VALUE = re.compile(r"[ -~]{1,255}")
OTLP_PROTOCOL = "http/protobuf"  # the one OTLP transport the services export with (no gRPC stack in the images)


def _telemetry(env: dict) -> dict:
    """RAG_METRICS and the names its lines carry; and whether the standard OTEL_* variables turn tracing
    on: an OTLP endpoint or OTEL_TRACES_EXPORTER=otlp does, OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none
    wins over both."""
    namespace = env.get("RAG_METRICS_NAMESPACE", "").strip() or "RagService"
    if not _NAMESPACE.fullmatch(namespace) or namespace.startswith("AWS/"):
        raise ConfigError(
            f"RAG_METRICS_NAMESPACE={namespace!r} is not a CloudWatch namespace of your own; use letters, digits, "
            "spaces and . - _ / # : (not AWS/...)"
        )
    names = {}
    for name, default in (("RAG_ENDPOINT_NAME", "local"), ("RAG_VARIANT_NAME", "AllTraffic")):
        names[name] = env.get(name, "").strip() or default
        if not _DIMENSION_VALUE.fullmatch(names[name]):
            raise ConfigError(f"{name}={names[name]!r} must be 1 to 255 printable ASCII characters")
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter not in ("", "otlp", "none"):
        raise ConfigError(f"OTEL_TRACES_EXPORTER={exporter!r} is not supported; use otlp (OTLP over HTTP) or none")
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip() or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    disabled = parse_bool(env.get("OTEL_SDK_DISABLED"), "OTEL_SDK_DISABLED")
    tracing = not disabled and exporter != "none" and bool(exporter or endpoint.strip())
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = env.get(name, "").strip().lower()
        if protocol:  # the traces-specific one, when set, is the one the exporter uses
            if tracing and protocol != OTLP_PROTOCOL:
                raise ConfigError(f"{name}={protocol!r} is not supported; unset it or use {OTLP_PROTOCOL}")
            break
    return {
        "metrics": _switch(env, "RAG_METRICS", True),
        "metrics_namespace": namespace,
        "endpoint_name": names["RAG_ENDPOINT_NAME"],
        "variant_name": names["RAG_VARIANT_NAME"],
        "tracing": tracing,
        "service_name": env.get("OTEL_SERVICE_NAME", "").strip(),
    }


# What `python -m rag.settings --get NAME ...` may print, for the shell entrypoints: validated values
# only, so that no raw environment value reaches bash arithmetic or a bind address.
SHELL_VALUES = ("public_bind", "startup_timeout_s", "vector_port", "llm_port", "local_services")


def main(argv: list[str] | None = None) -> int:
    """`python -m rag.settings [--get NAME ...]`: validate the environment; one line on error.

    With --get, print the validated values named (from SHELL_VALUES) on one line, space-separated.
    Bad use (an unknown name, `--get` alone, another argument) is argparse's usage error, exit 2.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m rag.settings", description="Validate the RAG_* environment; print validated values."
    )
    parser.add_argument(
        "--get", nargs="+", choices=SHELL_VALUES, default=[], metavar="NAME", help=f"one of {', '.join(SHELL_VALUES)}"
    )
    wanted = parser.parse_args(argv).get
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        sys.stderr.write(f"configuration error: {exc.message}\n")
        return 2
    if wanted:
        sys.stdout.write(" ".join(str(getattr(settings, name)) for name in wanted) + "\n")
        return 0
    sys.stdout.write(
        f"configuration ok: index={settings.index_dir} llm={settings.llm_model} engine={settings.llm_engine} "
        f"quantize={settings.llm_quantize} cpu={cpu_vendor() or 'unknown'} "
        f"device={settings.device} threads={settings.torch_threads}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
