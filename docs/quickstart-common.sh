# What both quick-start scripts (quickstart.sh, quickstart-curl.sh) set up, sourced by
# them: the host (H), the example seller's address (SELLER_BIND), the `crochet` binary
# (CROCHET_BIN, default `cargo run -q --release --`), the working directory
# (QUICKSTART_DIR, default a new temporary directory, kept), `step`, `check` and the
# clean-up of the example sellers (`seller_pid`, `other_seller_pid`). NAME is the
# script's name in its messages.
H=${H:-http://127.0.0.1:8080/api/v1}
SELLER_BIND=${SELLER_BIND:-127.0.0.1:8090}
if [ -n "${CROCHET_BIN:-}" ]; then
  crochet() { "$CROCHET_BIN" "$@"; }
else
  crochet() { cargo run -q --release --manifest-path "$QUICKSTART_ROOT/Cargo.toml" -- "$@"; }
fi
WORK=${QUICKSTART_DIR:-$(mktemp -d)}
mkdir -p "$WORK" && cd "$WORK"
echo "$NAME: files in $WORK"

step() { printf '\n== %s\n' "$*"; }
# check FILE JQ-FILTER: the answer in FILE must make the filter true, else show it and stop.
check() {
  if ! jq -e "$2" "$1" >/dev/null 2>&1; then
    echo "$NAME: unexpected answer in $1 (expected: $2):" >&2
    cat "$1" >&2; echo >&2
    exit 1
  fi
}

seller_pid=
other_seller_pid=
# `crochet` may be a function, so `$!` is the subshell running it: stop its child too.
cleanup() {
  for pid in $seller_pid $other_seller_pid; do
    pkill -P "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
