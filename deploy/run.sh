#!/usr/bin/env bash
# `make run`: broker, gateway, worker, the live page and the simulator; Ctrl-C stops everything it started.
# The simulator posts each platform's own signed webhooks (--transport native), with the
# throwaway secrets `up.sh` gave the gateway, so the real channel adapters are exercised.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
UP="$REPO_ROOT/deploy/up.sh"

cleanup() {
    trap - INT TERM EXIT
    echo
    echo "run: stopping"
    bash "$UP" down
}
trap cleanup INT TERM EXIT

bash "$UP" up
cat <<INFO

msgkpi is running:
  live page       http://127.0.0.1:${MSGKPI_UI_PORT:-8070}/   (tiles per channel, agents, at-risk and breached conversations)
  worker KPIs     http://127.0.0.1:${MSGKPI_WORKER_PORT:-6066}/metrics   (msgkpi_first_response_seconds, ...)
  gateway         http://127.0.0.1:${MSGKPI_GATEWAY_PORT:-8080}/metrics  (POST /webhooks/{channel})
  simulator       signed platform-native webhooks below; Ctrl-C stops everything

INFO
# shellcheck disable=SC2086 # MSGKPI_SIMULATE_ARGS is a list of options
bash "$UP" exec "$REPO_ROOT/.venv/bin/msgkpi" simulate \
    ${MSGKPI_SIMULATE_ARGS:---rate 2 --speed 30 --transport native} || true
