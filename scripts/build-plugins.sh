#!/usr/bin/env bash
# Builds the guest plugins (WebAssembly components for wasm32-wasip2) of plugins/guests/ and
# prints the paths of the components.
#
#   scripts/build-plugins.sh [--locked]
#
# `--locked` is passed to cargo (fail instead of changing plugins/guests/Cargo.lock).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
guests="$root/plugins/guests"
target=wasm32-wasip2

cargo_args=()
for arg in "$@"; do
    case "$arg" in
        --locked) cargo_args+=(--locked) ;;
        -h | --help)
            sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "build-plugins.sh: unknown argument: $arg" >&2
            exit 2
            ;;
    esac
done

if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
        rustup target add "$target" >/dev/null
    fi
fi

cargo build --release --target "$target" \
    --manifest-path "$guests/Cargo.toml" --workspace ${cargo_args[@]+"${cargo_args[@]}"}

out="${CARGO_TARGET_DIR:-$guests/target}/$target/release"
# Every cdylib member of the workspace is a component: <crate name with _>.wasm.
while IFS= read -r manifest; do
    name="$(sed -n 's/^name = "\(.*\)"$/\1/p' "$manifest" | head -n 1)"
    wasm="$out/${name//-/_}.wasm"
    if [[ ! -f "$wasm" ]]; then
        echo "build-plugins.sh: missing $wasm" >&2
        exit 1
    fi
    echo "$wasm"
done < <(find "$guests" -name plugin.toml -not -path '*/target/*' -printf '%h/Cargo.toml\n' | sort)
