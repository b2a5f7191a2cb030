#!/usr/bin/env bash
# Builds liutong and starts it on an embedded SQLite database (./data/liutong.db) at
# http://127.0.0.1:8080. Extra arguments go to `liutong serve` (e.g. --listen 0.0.0.0:8080).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --bin liutong

mkdir -p data
# The bootstrap operator's password: yours if set, else one generated once and kept in data/.
if [ -z "${LIUTONG_OPERATOR_PASSWORD:-}" ]; then
  if [ ! -s data/operator-password ]; then
    # Random, plus a letter and a digit so it always meets the password policy.
    (umask 077 && printf '%sA1' "$(head -c 15 /dev/urandom | base64 | tr -d '/+=')" > data/operator-password)
  fi
  LIUTONG_OPERATOR_PASSWORD="$(cat data/operator-password)"
  export LIUTONG_OPERATOR_PASSWORD
  echo "operator account: 'operator', password in data/operator-password"
fi

exec target/release/liutong serve "$@"
