#!/usr/bin/env bash
# Sets up, builds, and runs `agentwatch trace` over a small demo agent that
# execs, opens, writes, deletes, renames, resolves a name and connects.
# All traffic stays on loopback: a throwaway DNS responder and TCP server
# run on 127.0.0.77, and the demo resolves through them in a private mount
# namespace, so the host's resolver is never asked.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -p agentwatch
exec ./target/release/agentwatch demo "$@"
