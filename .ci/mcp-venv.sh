#!/usr/bin/env bash
# A venv with the official MCP SDK for Python (PyPI `mcp`, pinned in .ci/mcp/requirements.txt),
# outside the repository (AGENT_GATE_MCP_VENV, default ~/.cache/agent-gate/mcp-venv), reused
# when it already has the pinned SDK. Prints the venv's python on its last line, for
# AGENT_GATE_MCP_PYTHON (gateway/tests/mcp_python.rs). Fails when the install fails.
set -euo pipefail
cd "$(dirname "$0")/.."

MCP_VERSION=2.3.0
PYTHON=${AGENT_GATE_MCP_BASE_PYTHON:-$HOME/.pyenv/versions/3.13.0/bin/python3}
VENV=${AGENT_GATE_MCP_VENV:-$HOME/.cache/agent-gate/mcp-venv}

installed() {
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))' 2>/dev/null || true
}

if [ "$(installed)" != "$MCP_VERSION" ]; then
    echo "-- installing the MCP SDK $MCP_VERSION into $VENV" >&2
    [ -x "$PYTHON" ] || { echo "no Python 3.13 at $PYTHON (set AGENT_GATE_MCP_BASE_PYTHON)" >&2; exit 1; }
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r .ci/mcp/requirements.txt >&2
fi
[ "$(installed)" = "$MCP_VERSION" ] || { echo "the MCP SDK did not install" >&2; exit 1; }
echo "$VENV/bin/python"
