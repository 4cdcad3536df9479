#!/usr/bin/env bash
# The plugin guide's five commands (plugins/README.md, "Writing a plugin"), literally:
# create a plugin crate, build it, check it, run it once, and load it in a host.
#
#   plugins/quickstart.sh [policy|scorer|seller-adapter]
#
# CROCHET_BIN: the crochet binary (default: `crochet` on PATH). PLUGIN_DIR: the folder
# to create the crate in (default: a new temporary folder); the crate builds in its own
# target directory there ($PLUGIN_DIR/target), never in a repository's.
set -euo pipefail
world=${1:-policy}
crochet=${CROCHET_BIN:-crochet}
case "$crochet" in */*) crochet=$(cd "$(dirname "$crochet")" && pwd)/$(basename "$crochet") ;; esac
work=${PLUGIN_DIR:-$(mktemp -d)}
work=$(cd "$work" && pwd)
name="my-$world"
export CARGO_TARGET_DIR="$work/target"
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_TARGET
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true

cd "$work"
# 1. A standalone crate for the world.
"$crochet" plugin new "$name" --world "$world"
cd "$name"
# 2. Build the component (and run the native unit tests).
cargo build --release --target wasm32-wasip2
cargo test -q
wasm="$CARGO_TARGET_DIR/wasm32-wasip2/release/${name//-/_}.wasm"
# 3. Check it as the host loads it.
"$crochet" plugin check "$wasm"
# 4. One call on the sample input.
echo '{}' > input.json
"$crochet" plugin run "$wasm" --world "$world" --ctx input.json

# 5. Load it in a host.
if [ "$world" = seller-adapter ]; then
  # Sellers upload adapters for their listings (PUT /api/v1/listings/{id}/adapter); the
  # host validates an upload as step 3 did.
  echo "quickstart: $name is ready to upload: $wasm"
  exit 0
fi
host="$work/host-$world"
mkdir -p "$host"
if [ "$world" = policy ]; then
  printf '[[plugins.policy]]\nname = "%s"\nsource = "%s"\nfailure = "closed"\n' "$name" "$wasm" > "$host/crochet.toml"
else
  printf '[plugins]\nscorer = "%s"\n' "$wasm" > "$host/crochet.toml"
fi
(cd "$host" && exec env CROCHET_DATABASE_URL="sqlite://$host/crochet.db" CROCHET_BIND=127.0.0.1:0 \
  "$crochet" serve > "$host/serve.out" 2> "$host/serve.err") &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  grep -q '^listening on ' "$host/serve.out" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if grep -q '^listening on ' "$host/serve.out" && grep 'plugin loaded' "$host/serve.err" | grep -qF "$wasm"; then
  echo "quickstart: crochet serve loaded $name ($world) from $wasm"
else
  echo "quickstart: crochet serve did not load $name; its log:" >&2
  tail -n 40 "$host/serve.err" >&2
  exit 1
fi
