#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test on SQLite and on PostgreSQL.
# Installs what it needs (Rust components and targets) and starts the local PostgreSQL if it is down.
set -euo pipefail
cd "$(dirname "$0")/.."

export LIUTONG_TEST_POSTGRES="${LIUTONG_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}"

if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "starting the local PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
    for _ in $(seq 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
  fi
fi

rustup component add rustfmt clippy >/dev/null 2>&1 || true

# The trading tests run a Python client that has only `cryptography` and the `age` CLI
# (examples/trade.py), and an S3-compatible server (moto). They never skip: install what is
# missing.
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_packages=()
{ command -v age >/dev/null && command -v age-keygen >/dev/null; } || apt_packages+=(age)
command -v python3 >/dev/null || apt_packages+=(python3)
python3 -m pip --version >/dev/null 2>&1 || apt_packages+=(python3-pip)
if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "installing ${apt_packages[*]} with apt-get"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}"
fi
# pip's user installs (below) put their commands here; look there before deciding to install.
export PATH="$HOME/.local/bin:$PATH"
pip_install() {
  # Debian's system Python refuses plain pip installs (PEP 668); fall back to a user install.
  python3 -m pip install --quiet "$@" 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages "$@"
}
python3 -c 'import cryptography' 2>/dev/null || { echo "installing cryptography"; pip_install cryptography; }
python3 -c 'import moto.server' 2>/dev/null || { echo "installing moto[server]"; pip_install 'moto[server]'; }
# The notification tests (tests/integration/notifications.rs) receive mail with a real SMTP server.
python3 -c 'import aiosmtpd' 2>/dev/null || { echo "installing aiosmtpd"; pip_install aiosmtpd; }
# The outside client of the OpenAI-compatible front (tests/integration/subscriptions.rs).
python3 -c 'import openai' 2>/dev/null || { echo "installing openai"; pip_install openai; }
# The OpenAPI fuzz test (tests/integration/fuzz.rs) runs Schemathesis through scripts/fuzz-openapi.sh.
{ command -v st >/dev/null && python3 -c 'import schemathesis' 2>/dev/null; } \
  || { echo "installing schemathesis"; pip_install schemathesis; }

step() { printf '\n== %s\n' "$*"; }

step "guest plugins (wasm32-wasip2): build, format, lint, SDK tests"
# The host's tests load these components; building them once here keeps the tests from racing.
scripts/build-plugins.sh --locked
cargo fmt --manifest-path plugins/guests/Cargo.toml --all -- --check
cargo clippy --manifest-path plugins/guests/Cargo.toml --workspace --target wasm32-wasip2 --locked -- -D warnings
cargo test --manifest-path plugins/guests/Cargo.toml -p liutong-plugin-sdk -p provider-aws-compute --locked

step "format"
cargo fmt --all -- --check
step "import cycles"
# The workplace's tool lives in shared/ beside the repository (also beside CI's clone); the layer
# rule itself is enforced without it by tests/integration/layers.rs.
if [ -f ../shared/tools/import-cycles.py ]; then
  python3 ../shared/tools/import-cycles.py host/src
  python3 ../shared/tools/import-cycles.py plugins/runtime/src
else
  echo "../shared/tools/import-cycles.py is not here; tests/integration/layers.rs checks the layers"
fi
step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "tests (SQLite and PostgreSQL)"
cargo test --workspace --locked
