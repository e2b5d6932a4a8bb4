#!/usr/bin/env bash
# `make run`: broker, gateway, worker and the simulator; Ctrl-C stops everything it started.
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
  worker KPIs     http://127.0.0.1:${MSGKPI_WORKER_PORT:-6066}/metrics   (msgkpi_first_response_seconds, ...)
  gateway         http://127.0.0.1:${MSGKPI_GATEWAY_PORT:-8080}/metrics  (POST /webhooks/{channel})
  simulator       sending traffic below; Ctrl-C stops everything

INFO
"$REPO_ROOT/.venv/bin/msgkpi" simulate ${MSGKPI_SIMULATE_ARGS:---rate 2 --speed 30} || true
