#!/usr/bin/env bash
# Builds agent-gate from its packaged files only: copies the files
# `cargo package --list` names into a fresh workspace outside the repository
# (no ../tools.toml there) and checks the library. The unpublished
# agent-gate-manifest and agent-gate-macros come from their paths (they are not
# on crates.io yet, so `cargo package --verify` cannot run).
# Usage: agent-gate-macros/scripts/check_packaged_sdk.sh (set CARGO_TARGET_DIR to reuse a build)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
ws=${TMPDIR:-/tmp}/agent-gate-packaged-sdk
rm -rf "$ws"; mkdir -p "$ws/agent-gate"
cd "$root"
cargo package -p agent-gate --list --no-verify --allow-dirty --offline | while read -r f; do
  case "$f" in .cargo_vcs_info.json|Cargo.toml.orig|Cargo.lock) continue;; esac
  mkdir -p "$ws/agent-gate/$(dirname "$f")"; cp "agent-gate/$f" "$ws/agent-gate/$f"
done
sed -e 's|^members = .*|members = ["agent-gate"]|' \
    -e "s|path = \"agent-gate-manifest\"|path = \"$root/agent-gate-manifest\"|" \
    -e "s|path = \"agent-gate-macros\"|path = \"$root/agent-gate-macros\"|" \
    -e '/^agent-gate = /d' -e '/^agent-gate-gateway = /d' Cargo.toml > "$ws/Cargo.toml"
cp Cargo.lock "$ws/Cargo.lock"
test ! -e "$ws/tools.toml"
cd "$ws" && cargo check -p agent-gate --lib --offline
echo "packaged agent-gate builds on its own (macro read $ws/agent-gate/tools.toml)"
