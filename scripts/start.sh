#!/usr/bin/env bash
# Builds liutong and its sample plugins and starts it on an embedded SQLite database
# (./data/liutong.db) at http://127.0.0.1:8080, with the sample plugins signed by the operator's
# local publisher key (data/publisher.key) and installed, `flat-fee` the default billing rule and
# `use-scenes` the default policy plugin (access decisions on controlled data, A.3.7). Extra arguments go to `liutong serve` (e.g. --listen 0.0.0.0:8080).
#
# Everything it creates lives in data/ (created once, reused by later runs):
#   data/operator-password            the bootstrap operator's password (unless you set one)
#   data/publisher.key(.pub)          the local publisher key that signs the sample plugins
#   data/trusted-publishers/*.pub     the keys this server trusts (plugins.trust_dir)
#   data/plugins/*.ltpkg              the signed sample plugins (plugins.preinstall)
#   data/liutong.toml                 the configuration, unless LIUTONG_CONFIG is set
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --bin liutong
liutong="${CARGO_TARGET_DIR:-target}/release/liutong"

# The guest plugins (WebAssembly components); a no-op when they are up to date.
scripts/build-plugins.sh --locked >/dev/null

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

# The operator's local publisher key, trusted by this server.
if [ ! -f data/publisher.key ]; then
  "$liutong" plugin keygen --publisher local-operator --out data/publisher.key >/dev/null
fi
mkdir -p data/trusted-publishers
key_id="$(sed -n 's/.*"keyId": *"\([0-9a-f]*\)".*/\1/p' data/publisher.key.pub)"
trusted="data/trusted-publishers/local-operator-${key_id}.pub"
cmp -s data/publisher.key.pub "$trusted" 2>/dev/null || cp data/publisher.key.pub "$trusted"

# The sample plugins (not the test fixtures), signed into data/plugins/. Signing is
# deterministic: an unchanged plugin gives the same package, which the server skips.
mkdir -p data/plugins
for crate in billing-flat-fee billing-tiered-per-call billing-per-token billing-fixed-term \
  policy-use-scenes adapter-openai-chat adapter-http-json provider-aws-compute; do
  "$liutong" plugin sign --key data/publisher.key --dir "plugins/guests/$crate" \
    --out data/plugins >/dev/null
done
echo "sample plugins signed into data/plugins/ (installed at start; flat-fee is the default billing rule, use-scenes the default policy plugin)"

if [ -z "${LIUTONG_CONFIG:-}" ]; then
  if [ ! -f data/liutong.toml ]; then
    cat > data/liutong.toml <<'EOF'
# Written once by scripts/start.sh; edit freely. Paths are relative to the repository's root,
# where start.sh runs liutong. Every key: docs/operations.md.

[plugins]
trust_dir = "data/trusted-publishers"
cache_dir = "data/plugin-cache"
# Signed packages installed at start (unless that version is installed already).
preinstall = ["data/plugins"]

[plugins.defaults]
billing = "flat-fee"
policy = "use-scenes"

# Adapters reach only the hosts granted here (and asked for in their manifest), e.g.:
# [plugins.grants.openai-chat]
# http = ["api.openai.com:443"]
# secrets = ["api-key"]
# [plugins.secret_env]
# api-key = "OPENAI_API_KEY"

# The compute provider plugin aws-compute reaches the provider's API only when granted, e.g.:
# [plugins.grants.aws-compute]
# http = ["ec2.us-east-1.amazonaws.com:443", "elasticfilesystem.us-east-1.amazonaws.com:443",
#         "s3.us-east-1.amazonaws.com:443", "ce.us-east-1.amazonaws.com:443"]
# secrets = ["aws-access-key-id", "aws-secret-access-key"]
# and in [plugins.secret_env]:
# aws-access-key-id = "AWS_ACCESS_KEY_ID"
# aws-secret-access-key = "AWS_SECRET_ACCESS_KEY"
EOF
  fi
  exec "$liutong" --config data/liutong.toml serve "$@"
fi
exec "$liutong" serve "$@"
