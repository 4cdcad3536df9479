#!/usr/bin/env bash
# Runs both seller verifiers on a real signed request the example seller captured
# (`crochet example-seller --capture FILE`, as docs/quickstart.sh does): it must verify,
# and copies with the body, the signature or the secret changed must not.
#
#   docs/verify/check.sh SECRET_FILE REQUEST_JSON
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
secret=$1 request=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

jq '.body |= sub("summarize"; "summarise")' "$request" > "$tmp/body.json"
jq '.headers["x-crochet-signature"] |= (.[0:-1] + (if endswith("0") then "1" else "0" end))' \
  "$request" > "$tmp/signature.json"
echo "cgs_not_the_secret" > "$tmp/other-secret"
cmp -s "$request" "$tmp/body.json" && { echo "check: the captured body has no \"summarize\" to alter" >&2; exit 1; }

for verifier in "python3 $here/verify.py" "node $here/verify.mjs"; do
  $verifier "$secret" "$request" >/dev/null || { echo "check: $verifier refused the real request" >&2; exit 1; }
  for bad in "$secret $tmp/body.json" "$secret $tmp/signature.json" "$tmp/other-secret $request"; do
    # shellcheck disable=SC2086
    if $verifier $bad >/dev/null; then
      echo "check: $verifier accepted a tampered request ($bad)" >&2
      exit 1
    fi
  done
  echo "check: $verifier verifies the real request and refuses three tampered copies"
done
