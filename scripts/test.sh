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
  fi
fi

rustup component add rustfmt clippy >/dev/null 2>&1 || true

step() { printf '\n== %s\n' "$*"; }

step "format"
cargo fmt --all -- --check
step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "tests (SQLite and PostgreSQL)"
cargo test --workspace --locked
