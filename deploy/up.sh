#!/usr/bin/env bash
# `make up` / `make down`: the broker, one gateway, one worker and the live page (`msgkpi ui`)
# in the background. `up` returns once all are ready; `down` stops exactly what `up` started (the broker
# only if `up` started it) and nothing else.
# The gateway runs with all eight platform channels enabled: throwaway local secrets are made
# once in $STATE_DIR/secrets.env (never printed, never committed; .cache/ is git-ignored) and
# exported as MSGKPI_<CHANNEL>_SECRET / _VERIFY_TOKEN, unless already set in the environment.
# `up.sh exec CMD...` runs CMD with the same variables (make run: the native simulator).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
STATE_DIR="${MSGKPI_CACHE_DIR:-$REPO_ROOT/.cache}/up"
BIN="$REPO_ROOT/.venv/bin"
KAFKA="$REPO_ROOT/deploy/kafka/kafka.sh"
GATEWAY_PORT="${MSGKPI_GATEWAY_PORT:-8080}"
WORKER_PORT="${MSGKPI_WORKER_PORT:-6066}"
UI_PORT="${MSGKPI_UI_PORT:-8070}"
READY_TIMEOUT="${MSGKPI_UP_TIMEOUT:-120}"
SECRETS_FILE="$STATE_DIR/secrets.env"

ensure_secrets() {
    mkdir -p "$STATE_DIR"
    [[ -s "$SECRETS_FILE" ]] && return
    (umask 077 && "$BIN/python" -c '
import secrets, sys
channels = ("whatsapp", "messenger", "instagram", "telegram", "line", "wechat", "x", "chatwoot")
lines = ["# Throwaway webhook secrets for the local gateway and simulator (deploy/up.sh)."]
lines += [f"MSGKPI_{c.upper()}_SECRET={secrets.token_hex(16)}" for c in channels]
lines += [f"MSGKPI_{c.upper()}_VERIFY_TOKEN={secrets.token_hex(12)}" for c in channels[:3]]
with open(sys.argv[1] + ".tmp", "w") as fh:
    fh.write("\n".join(lines) + "\n")
' "$SECRETS_FILE" && mv "$SECRETS_FILE.tmp" "$SECRETS_FILE")
    echo "up: generated throwaway local webhook secrets in $SECRETS_FILE"
}

load_secrets() {
    ensure_secrets
    local name value
    while IFS='=' read -r name value; do
        [[ "$name" =~ ^MSGKPI_[A-Z_]+$ ]] || continue
        [[ -n "${!name:-}" ]] || export "$name=$value"
    done <"$SECRETS_FILE"
}

http_ok() {
    "$BIN/python" - "$1" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_service() {
    local name=$1
    local pid_file="$STATE_DIR/$name.pid"
    if alive "$pid_file"; then
        echo "up: $name already running (pid $(cat "$pid_file"))"
        return
    fi
    setsid nohup "$BIN/msgkpi" "$name" >"$STATE_DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$pid_file"
}

wait_ready() {
    local name=$1 url=$2 deadline=$((SECONDS + READY_TIMEOUT))
    until http_ok "$url"; do
        if ! alive "$STATE_DIR/$name.pid"; then
            echo "up: $name exited; last log lines:" >&2
            tail -n 30 "$STATE_DIR/$name.log" >&2 || true
            exit 1
        fi
        if ((SECONDS > deadline)); then
            echo "up: $name not ready at $url after ${READY_TIMEOUT}s; see $STATE_DIR/$name.log" >&2
            exit 1
        fi
        sleep 0.5
    done
    echo "up: $name ready ($url)"
}

stop_pid_file() {
    local pid_file=$1 name
    name=$(basename "$pid_file" .pid)
    if alive "$pid_file"; then
        local pid
        pid=$(cat "$pid_file")
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
        echo "down: stopped $name"
    fi
    rm -f "$pid_file"
}

up() {
    mkdir -p "$STATE_DIR"
    if ! bash "$KAFKA" status >/dev/null 2>&1; then
        bash "$KAFKA" start
        touch "$STATE_DIR/broker.started-by-up"
    else
        echo "up: broker already running; it will be left running by 'make down'"
    fi
    load_secrets
    start_service gateway
    start_service worker
    start_service ui
    wait_ready gateway "http://127.0.0.1:$GATEWAY_PORT/readyz"
    wait_ready worker "http://127.0.0.1:$WORKER_PORT/metrics"
    wait_ready ui "http://127.0.0.1:$UI_PORT/readyz"
    echo "up: gateway http://127.0.0.1:$GATEWAY_PORT (POST /webhooks/{channel}, /metrics)"
    echo "up: worker  http://127.0.0.1:$WORKER_PORT/metrics"
    echo "up: ui      http://127.0.0.1:$UI_PORT/ (live page; JSON at /api/kpis)"
    echo "up: logs in $STATE_DIR; stop with 'make down'"
}

down() {
    for name in simulate ui worker gateway; do
        stop_pid_file "$STATE_DIR/$name.pid"
    done
    if [[ -f "$STATE_DIR/broker.started-by-up" ]]; then
        bash "$KAFKA" stop
        rm -f "$STATE_DIR/broker.started-by-up"
    fi
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    exec)
        shift
        [[ $# -gt 0 ]] || { echo "usage: $0 exec COMMAND [ARGS...]" >&2; exit 2; }
        load_secrets
        exec "$@"
        ;;
    *) echo "usage: $0 up|down|exec COMMAND..." >&2; exit 2 ;;
esac
