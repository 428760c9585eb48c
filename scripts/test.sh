#!/usr/bin/env bash
# Sets up and runs the whole test suite: unit tests, the privileged
# integration tests against this kernel (serially: they share kernel
# state), each fuzz target for 20 s, and the Debian 6.1 kernel under qemu
# (portability of the eBPF object). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --all-targets
# The tarball and .deb of this build: tests/packaging.rs runs what they carry.
cargo xtask dist --debug
cargo test --lib --bins
cargo test -p agentwatch --test exit_codes --test sensors --test selectors --test learn --test territory --test enforce --test audit --test daemon --test feeds --test k8s --test faults --test evasion --test sandbox --test shield --test packaging --test ui --test intent --test identity --test budgets --test pins --no-fail-fast -- --test-threads=1
cargo xtask fuzz --seconds 20
cargo xtask vm-test
