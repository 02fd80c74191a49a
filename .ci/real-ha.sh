#!/usr/bin/env bash
# The end-to-end suite (tests/tests/home_assistant_suite.rs) against a real Home Assistant Core.
#
# 1. A venv outside the repository (AGENT_GATE_HA_VENV, default ~/.cache/agent-gate/ha-venv),
#    reused when it already has the pinned version: Home Assistant Core from PyPI, installed
#    with its own package_constraints.txt (from the wheel) as pip constraints and pycares<5,
#    and the frontend (history and logbook depend on it), so that Home Assistant can start
#    with --skip-pip and never installs anything at run time.
# 2. A fresh config dir (.ci/ha/configuration.yaml: demo, recorder, history, logbook,
#    template, an input_boolean, a script and a scene) and Home Assistant on a free loopback
#    port.
# 3. .ci/ha/provision.py: onboarding's user step over HTTP, a long-lived token over the
#    WebSocket API, light.bed_light into the Bedroom, wait for RUNNING.
# 4. The suite and the phone app approver's test (tests/tests/home_assistant_phone.rs: a phone
#    registered through mobile_app, its pushes read, its action press fired through the REST
#    API) with AGENT_GATE_REAL_HA_URL / _TOKEN / _VERSION set, through the real gateway
#    binary; then Home Assistant is stopped by its PID.
# Fails (does not skip) when anything on the way fails.
set -euo pipefail
cd "$(dirname "$0")/.."

HA_VERSION=2025.4.4
PYTHON=${AGENT_GATE_HA_PYTHON:-$HOME/.pyenv/versions/3.13.0/bin/python3}
VENV=${AGENT_GATE_HA_VENV:-$HOME/.cache/agent-gate/ha-venv}
started=$(date +%s)

installed_version() {
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("homeassistant"), m.version("home-assistant-frontend"))' 2>/dev/null || true
}

if [ -z "$(installed_version)" ] || [ "$(installed_version | cut -d' ' -f1)" != "$HA_VERSION" ]; then
    echo "-- installing Home Assistant Core $HA_VERSION into $VENV"
    [ -x "$PYTHON" ] || { echo "no Python 3.13 at $PYTHON (set AGENT_GATE_HA_PYTHON)"; exit 1; }
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    dl=$(mktemp -d)
    "$VENV/bin/pip" download --quiet --no-deps --dest "$dl" "homeassistant==$HA_VERSION"
    wheel=$(ls "$dl"/homeassistant-"$HA_VERSION"-*.whl)
    "$VENV/bin/python" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("homeassistant/package_constraints.txt", sys.argv[2])' "$wheel" "$dl"
    echo 'pycares<5' > "$dl/extra-constraints.txt"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        -c "$dl/homeassistant/package_constraints.txt" -c "$dl/extra-constraints.txt" \
        "$wheel" home-assistant-frontend PyNaCl==1.5.0
    rm -rf "$dl"
else
    echo "-- reusing $VENV ($(installed_version))"
fi
# mobile_app (the phone app approver's test) imports PyNaCl; venvs made before it was needed
# get it here (the version mobile_app's manifest pins).
if ! "$VENV/bin/python" -c 'import nacl' 2>/dev/null; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check PyNaCl==1.5.0
fi
echo "-- venv ready after $(( $(date +%s) - started )) s"

port=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
config=$(mktemp -d)
sed "s/@PORT@/$port/" .ci/ha/configuration.yaml > "$config/configuration.yaml"
"$VENV/bin/hass" --config "$config" --skip-pip > "$config/hass.out" 2>&1 &
hass_pid=$!
stop_hass() {
    if kill -0 "$hass_pid" 2>/dev/null; then
        kill "$hass_pid"
        # Home Assistant stops within its own 2-minute budget; never wait longer.
        for _ in $(seq 1 240); do kill -0 "$hass_pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$hass_pid" 2>/dev/null || true
    fi
    wait "$hass_pid" 2>/dev/null || true
}
trap 'stop_hass; rm -rf "$config"' EXIT

url="http://127.0.0.1:$port"
# provision.py prints the long-lived token, then the id of its user.
if ! provisioned=$("$VENV/bin/python" .ci/ha/provision.py "$url" 240 "$hass_pid"); then
    echo "-- Home Assistant did not come up; its log:"
    tail -n 60 "$config/hass.out" "$config/home-assistant.log" 2>/dev/null || true
    exit 1
fi
{ read -r token; read -r user_id; } <<< "$provisioned"
echo "-- Home Assistant $HA_VERSION RUNNING on $url after $(( $(date +%s) - started )) s (pid $hass_pid)"

AGENT_GATE_REAL_HA_URL="$url" AGENT_GATE_REAL_HA_TOKEN="$token" AGENT_GATE_REAL_HA_USER_ID="$user_id" \
    AGENT_GATE_REAL_HA_VERSION="$HA_VERSION" \
    cargo test --workspace --locked --test home_assistant_suite --test home_assistant_phone

stop_hass
echo "-- real Home Assistant section took $(( $(date +%s) - started )) s"
