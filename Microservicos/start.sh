#!/usr/bin/env bash
# Supervisor of the microservices container: starts the vector service, the LLM service and the
# orchestrator (each under Gunicorn), forwards SIGTERM to all of them, restarts a crashed internal
# service with exponential backoff, and exits when the orchestrator does. It never sleeps for a fixed
# time: readiness is polled, with a deadline (RAG_STARTUP_TIMEOUT, default 600 s).
# Split topology: with RAG_LLM_URL=sagemaker://<endpoint> it runs no LLM service (the front endpoint),
# and with RAG_SERVE=llm it runs only the LLM service, as the public server (the LLM endpoint).
set -uo pipefail
# `index [build|merge]`: the SageMaker Processing steps (rag/ingest/processing.py), not a server.
if [[ "${1:-}" == index ]]; then
  shift; cd "$(dirname "$(readlink -f "$0")")/.."
  PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 exec python -m rag.ingest.processing "$@"
fi
if [[ $# -gt 0 && "$1" != "serve" ]]; then
  echo "usage: start.sh [serve]" >&2
  exit 2
fi
cd "$(dirname "$(readlink -f "$0")")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# Validated values only: nothing from the environment reaches a bind address or bash arithmetic raw.
CONFIG=$(python -m rag.settings --get public_bind startup_timeout_s vector_port llm_port local_services) || exit 2
read -r PUBLIC_BIND STARTUP_TIMEOUT VECTOR_PORT LLM_PORT LOCAL_SERVICES <<<"$CONFIG"
# One JSON object per line, like the services' own lines (serving/telemetry.py).
log() {
  local message=${*//\\/\\\\}
  message=${message//\"/\\\"}
  printf '{"timestamp": "%s", "level": "INFO", "logger": "start.sh", "pid": %d, "request_id": null, "message": "%s"}\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$$" "$message"
}

if [[ $LOCAL_SERVICES == llm ]]; then
  log "RAG_SERVE=llm: the LLM service alone on $PUBLIC_BIND (/invocations is its /generate)"
  exec gunicorn --config python:serving.gunicorn_conf --bind "$PUBLIC_BIND" 'Microservicos.llm_service:create_app()'
fi
IFS=, read -r -a INTERNAL <<<"$LOCAL_SERVICES"  # vector and llm, or vector alone (the LLM is an endpoint)
declare -A PORT=([vector]=$VECTOR_PORT [llm]=$LLM_PORT) URL_VARIABLE=([vector]=RAG_VECTOR_URL [llm]=RAG_LLM_URL)
# Each service gets SIGTERM if start.sh dies, even by SIGKILL, instead of living on with its port.
GUNICORN=(python -m Microservicos.tied_to_parent "$$" gunicorn --config python:serving.gunicorn_conf)
# Shared by this instance's three services only: each refuses a caller carrying another instance's token.
RAG_INSTANCE_TOKEN=$(python -c 'import secrets; print(secrets.token_hex(16))') || exit 1
export RAG_INSTANCE_TOKEN

# A service already listening on an internal port (another instance, or one left over) would answer
# in place of this instance's own, from its own index: refuse to start instead.
port_in_use() { { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1; exec 3<&- 3>&-; }
for name in "${INTERNAL[@]}"; do
  if port_in_use "${PORT[$name]}"; then
    variable=${URL_VARIABLE[$name]}
    log "port ${PORT[$name]} of the $name service is already in use (another instance?); set $variable to a free port, e.g. $variable=http://127.0.0.1:<port>" >&2
    exit 1
  fi
done

# Job control puts each service in its own process group, so a crashed service's orphaned
# workers can be killed with it before it is restarted.
set -m
declare -A PID=() STARTED=() FAILURES=()
STOPPING=0

start_service() {
  case "$1" in
    vector) "${GUNICORN[@]}" --bind "127.0.0.1:$VECTOR_PORT" 'Microservicos.vector_service:create_app()' & ;;
    # Under a memory limit the kernel must kill the LLM service (the biggest, and /ping then says
    # degraded), not the vector service or the orchestrator: raise its OOM score (no privilege needed).
    llm) (echo 500 >/proc/self/oom_score_adj 2>/dev/null
          exec "${GUNICORN[@]}" --bind "127.0.0.1:$LLM_PORT" 'Microservicos.llm_service:create_app()') & ;;
    orchestrator) "${GUNICORN[@]}" --bind "$PUBLIC_BIND" 'Microservicos.orchestrator:create_app()' & ;;
  esac
  PID[$1]=$!
  STARTED[$1]=$SECONDS
  log "started $1 (pid ${PID[$1]})"
}

# SageMaker sends SIGKILL 30 s after SIGTERM. One deadline for the whole stop, counted from the SIGTERM:
# whatever still runs STOP_BUDGET_S later is killed (Gunicorn's graceful_timeout, 25 s too, already bounds
# the orchestrator's drain; this bounds the internal services after it, and any child ignoring SIGTERM).
STOP_BUDGET_S=25

stop_all() {
  STOPPING=1
  log "SIGTERM received: draining the orchestrator, then stopping the internal services (${STOP_BUDGET_S}s in all)"
  local name groups=()
  for name in orchestrator "${INTERNAL[@]}"; do groups+=("-${PID[$name]}"); done
  ( read -r -t "$STOP_BUDGET_S" <> <(:) || true
    log "services still running ${STOP_BUDGET_S}s after SIGTERM: SIGKILL"
    kill -KILL -- "${groups[@]}" 2>/dev/null ) &
  local deadline=$!
  # The front stops first, so the requests it still has in flight can finish using the services.
  kill -TERM -- "-${PID[orchestrator]}" 2>/dev/null
  wait "${PID[orchestrator]}" 2>/dev/null
  for name in "${INTERNAL[@]}"; do kill -TERM -- "-${PID[$name]}" 2>/dev/null; done
  for name in "${INTERNAL[@]}"; do wait "${PID[$name]}" 2>/dev/null; done
  kill "$deadline" 2>/dev/null
  log "all services stopped"
  exit 0
}
trap stop_all TERM INT

# True when `GET /ping` on 127.0.0.1:$1 answers 200. Pure bash: the image needs no curl.
ping_ok() {
  local line
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'GET /ping HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  read -r -t 2 line <&3 || line=""
  exec 3<&- 3>&-
  [[ "$line" == *" 200 "* ]]
}

# True while this subshell's parent is still start.sh (Linux /proc; elsewhere assumed).
supervisor_alive() {
  local stat
  read -r stat <"/proc/$BASHPID/stat" 2>/dev/null || return 0
  stat=${stat##*) }
  [[ ${stat#* } == "$$ "* ]]
}

# Logs when every service is ready, or that the deadline passed (the orchestrator's /ping says which).
# It ends with start.sh, like the services.
watch_readiness() {
  local deadline=$((SECONDS + STARTUP_TIMEOUT)) name
  for name in "${INTERNAL[@]}"; do
    until ping_ok "${PORT[$name]}"; do
      supervisor_alive || return 1
      if ((SECONDS >= deadline)); then log "not ready after ${STARTUP_TIMEOUT}s (RAG_STARTUP_TIMEOUT)"; return 1; fi
      read -r -t 0.2 <> <(:) || true  # a 0.2 s poll interval without forking sleep
    done
  done
  log "${INTERNAL[*]} service(s) ready after ${SECONDS}s"
}

for name in "${INTERNAL[@]}" orchestrator; do start_service "$name"; done
watch_readiness &
WATCHER=$!

while true; do
  exited=""
  wait -n -p exited
  status=$?
  ((STOPPING)) && break
  [[ -z "$exited" || "$exited" == "$WATCHER" ]] && continue
  for name in "${!PID[@]}"; do
    [[ "${PID[$name]}" == "$exited" ]] || continue
    kill -KILL -- "-$exited" 2>/dev/null  # orphaned workers of the dead master go with it
    if [[ $name == orchestrator ]]; then
      log "orchestrator exited ($status): stopping the container"
      for other in "${INTERNAL[@]}"; do kill -TERM -- "-${PID[$other]}" 2>/dev/null; done
      wait
      exit "$status"
    fi
    # Backoff doubles with each quick failure (1, 2, 4 ... 30 s) and resets after a minute of uptime.
    if ((SECONDS - STARTED[$name] > 60)); then FAILURES[$name]=0; fi
    FAILURES[$name]=$(( ${FAILURES[$name]:-0} + 1 ))
    delay=$(( 1 << (FAILURES[$name] - 1) )); ((delay > 30)) && delay=30
    log "$name exited ($status); restarting in ${delay}s (failure ${FAILURES[$name]})"
    read -r -t "$delay" <> <(:) || true
    ((STOPPING)) && break
    start_service "$name"
  done
done
