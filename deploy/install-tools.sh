#!/usr/bin/env bash
# Installs the monitoring tools the tests use (promtool, amtool, prometheus, alertmanager) from
# Debian's packages when they are missing, and makes sure no packaged service keeps running:
# the tests start their own instances on their own ports.
set -euo pipefail

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
if ((${#need[@]} == 0)); then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    SUDO=sudo
else
    SUDO=
fi
echo "install-tools: installing ${need[*]} from Debian packages" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian's packages may start their services; ours are started by the tests.
pkill -x prometheus 2>/dev/null || true
pkill -x prometheus-alertmanager 2>/dev/null || true
command -v promtool >/dev/null && command -v amtool >/dev/null
