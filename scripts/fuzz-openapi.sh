#!/usr/bin/env bash
# Fuzzes liutong through its own OpenAPI document with Schemathesis (tests/fuzz/): every
# operation, seeded and bounded, with an operator token for /v1/admin/*, a trusted data space's
# for /publishDatasets and an enterprise account's for the rest. It fails on a schema-valid
# request refused, a schema-invalid one accepted, an undocumented status or content type, a
# response that breaks its schema, or any 5xx.
#
#   scripts/fuzz-openapi.sh                 start the debug binary on a throwaway SQLite database,
#                                           create the three accounts, fuzz it, stop it
#   scripts/fuzz-openapi.sh BASE_URL        fuzz a running server; needs LIUTONG_FUZZ_OPERATOR_TOKEN,
#                                           LIUTONG_FUZZ_USER_TOKEN, LIUTONG_FUZZ_DATA_SPACE_TOKEN
#
# LIUTONG_FUZZ_EXAMPLES (default 25) bounds the cases per operation and phase; LIUTONG_FUZZ_SEED
# (default that of tests/fuzz/schemathesis.toml) fixes them. Arguments after BASE_URL go to
# `st run` (e.g. --include-path /settlement). Installs schemathesis when it is missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

if ! command -v st >/dev/null || ! python3 -c 'import schemathesis' 2>/dev/null; then
  echo "installing schemathesis" >&2
  python3 -m pip install --quiet schemathesis 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages schemathesis
  export PATH="$HOME/.local/bin:$PATH"
fi

fuzz() {
  local base="$1"
  shift
  local seed=()
  [ -n "${LIUTONG_FUZZ_SEED:-}" ] && seed=(--seed "$LIUTONG_FUZZ_SEED")
  SCHEMATHESIS_HOOKS="$root/tests/fuzz/hooks.py" \
    st --config-file "$root/tests/fuzz/schemathesis.toml" run "$base/openapi.json" \
    --max-examples "${LIUTONG_FUZZ_EXAMPLES:-25}" "${seed[@]}" \
    --no-color --output-sanitize false --report junit --report-dir "${LIUTONG_FUZZ_REPORT_DIR:-$root/target/fuzz-report}" "$@"
}

if [ $# -gt 0 ] && [[ "$1" == http* ]]; then
  base="${1%/}"
  shift
  : "${LIUTONG_FUZZ_OPERATOR_TOKEN:?set LIUTONG_FUZZ_OPERATOR_TOKEN}"
  : "${LIUTONG_FUZZ_USER_TOKEN:?set LIUTONG_FUZZ_USER_TOKEN}"
  : "${LIUTONG_FUZZ_DATA_SPACE_TOKEN:?set LIUTONG_FUZZ_DATA_SPACE_TOKEN}"
  fuzz "$base" "$@"
  exit
fi

# A server of our own, on a throwaway database.
(cd "$root" && cargo build --locked --bin liutong)
liutong="${CARGO_TARGET_DIR:-$root/target}/debug/liutong"
work="$(mktemp -d)"
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
database="sqlite://$work/liutong.db"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
echo "space-pass-1" | "$liutong" account create --username fuzz-space --role data_space \
  --database "$database" >/dev/null
LIUTONG_OPERATOR_PASSWORD=operator-pass-1 LIUTONG_LOG=warn "$liutong" serve --listen "127.0.0.1:$port" \
  --database "$database" --keys-dir "$work/keys" --storage-dir "$work/files" 2>"$work/server.log" &
server=$!
for _ in $(seq 200); do
  curl -fsS "$base/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

post() { curl -fsS -X POST "$base$1" -H 'Content-Type: application/json' -d "$2"; }
token() {
  post /v1/account/token "{\"username\": \"$1\", \"password\": \"$2\"}" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["token"])'
}
post /v1/account/register '{"username": "fuzz-user", "password": "user-pass-1", "phone": "13800138000"}' >/dev/null
LIUTONG_FUZZ_OPERATOR_TOKEN="$(token operator operator-pass-1)"
LIUTONG_FUZZ_USER_TOKEN="$(token fuzz-user user-pass-1)"
LIUTONG_FUZZ_DATA_SPACE_TOKEN="$(token fuzz-space space-pass-1)"
export LIUTONG_FUZZ_OPERATOR_TOKEN LIUTONG_FUZZ_USER_TOKEN LIUTONG_FUZZ_DATA_SPACE_TOKEN
status=0
fuzz "$base" "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "server log: (last lines)" >&2
  tail -n 20 "$work/server.log" >&2
fi
exit "$status"
