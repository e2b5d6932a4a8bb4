#!/usr/bin/env bash
# Installs the tools the tests use (promtool, amtool, prometheus, alertmanager, docker-compose,
# which validates docker-compose.yml offline, and chromium for the live page's browser test)
# from Debian's packages when they are missing. Debian's packages would start their services on
# install; the tests start their own instances on their own ports, so services are kept from
# starting during the install (policy-rc.d answering 101, "action forbidden"). Nothing already
# running on the host is touched.
set -euo pipefail

POLICY_RC_D=/usr/sbin/policy-rc.d

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if ((${#need[@]} == 0)); then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    SUDO=sudo
else
    SUDO=
fi

# Keeps services from starting while packages install; an existing policy is left as it is.
block_service_starts() {
    [[ -e "$POLICY_RC_D" ]] && return 0
    printf '#!/bin/sh\n# written by msgkpi install-tools.sh for the duration of an install\nexit 101\n' \
        | $SUDO tee "$POLICY_RC_D" >/dev/null
    $SUDO chmod 755 "$POLICY_RC_D"
    trap '$SUDO rm -f "$POLICY_RC_D"' EXIT
}

echo "install-tools: installing ${need[*]} from Debian packages (their services are not started)" >&2
export DEBIAN_FRONTEND=noninteractive
block_service_starts
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
command -v promtool >/dev/null && command -v amtool >/dev/null && command -v docker-compose >/dev/null \
    && command -v chromium >/dev/null
