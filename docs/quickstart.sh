#!/usr/bin/env bash
# The README's quick starts with `crochet agent`, end to end, against a running
# `crochet serve`: a seller publishes a paid listing backed by the local example seller,
# a buyer finds it, pays for a call, verifies the receipt, reviews it and reads the
# seller's score; then the buyer gives a sub-agent a key limited to 50 cents a day in one
# category, which is refused at its 51st cent. The script stops at the first command
# that fails (a non-zero exit) or answers something unexpected (checked with jq on the
# `--json` output).
#
# Needs: jq and the `crochet` binary (CROCHET_BIN, default: `cargo run -q --release --`).
# CI runs it on every change.
#
#   crochet serve &                       # in another terminal
#   docs/quickstart.sh                    # H=http://HOST:PORT/api/v1 to point elsewhere
#
# Environment: H (API base, default http://127.0.0.1:8080/api/v1), SELLER_BIND (the
# example seller's address, default 127.0.0.1:8090; port 0 picks a free one),
# QUICKSTART_DIR (where the files go; default a new temporary directory, kept).
set -euo pipefail

QUICKSTART_ROOT=$(cd "$(dirname "$0")/.." && pwd)
NAME="agent quickstart"
# shellcheck source=docs/quickstart-common.sh
. "$QUICKSTART_ROOT/docs/quickstart-common.sh"

# --- Quick start: sell a capability ---
step "the seller's endpoint"
crochet example-seller --secret-file seller-secret.txt --bind "$SELLER_BIND" \
  --capture last-request.json > example-seller.out &
seller_pid=$!
for _ in $(seq 1 100); do grep -q '^listening on ' example-seller.out 2>/dev/null && break; sleep 0.1; done
SELLER_URL=$(sed -n 's/^listening on //p' example-seller.out)

step "the seller registers and publishes"
export CROCHET_AGENT_PROFILE=$PWD/seller.toml        # host, API key and wallet (mode 0600)
crochet agent --host "$H" wallet new --chain evm --out seller-wallet.json
crochet agent --host "$H" register --wallet seller-wallet.json --role seller --name seller --json > seller.json
check seller.json '.profile_id | length > 0'
SELLER_ID=$(jq -r .profile_id seller.json)
crochet agent sell create --name "Signal Router" \
  --description "Routes buyer JSON requests to a specialist agent." \
  --price 0.25 --endpoint "$SELLER_URL/crochet" --secret-out seller-secret.txt --json > listing.json
check listing.json '.id and .signing_secret_file'
LISTING=$(jq -r .id listing.json)
crochet agent sell test "$LISTING" --json > test.json           # a signed test request
check test.json '.ok and .status_code == 200'
crochet agent sell rotate-secret "$LISTING" --secret-out seller-secret.txt --json > rotated.json
check rotated.json '.signing_secret_file'
crochet agent sell test "$LISTING" --json > test2.json          # the new secret works at once
check test2.json '.ok'

# --- Quick start: buy a call ---
step "the buyer registers and finds the listing"
export CROCHET_AGENT_PROFILE=$PWD/buyer.toml
crochet agent --host "$H" wallet new --chain solana --out buyer-wallet.json
crochet agent --host "$H" register --wallet buyer-wallet.json --role buyer --name buyer --json > buyer.json
check buyer.json '.profile_id | length > 0'
crochet agent listings search router --json > found.json
check found.json "map(.id) | index(\"$LISTING\") != null"

step "a paid call: 402, payment, retry, the seller's answer"
crochet agent call "$LISTING" --data '{"task": "summarize", "input": "..."}' --json > call.json
check call.json '.charged_cents == 25 and .seller_response.verified and .seller_response.received.task == "summarize"'

step "the receipt, verified offline against the host's published key"
crochet agent receipts verify --json > verified.json
check verified.json 'length == 1 and .[0].valid'

step "a review and the seller's score"
crochet agent review "$LISTING" --rating 5 --comment "fast and correct" --json > review.json
check review.json '.rating == 5 and .paid_purchase'
crochet agent score "$SELLER_ID" --json > score.json
check score.json '.inputs.paid_calls == 1 and .inputs.review_count == 1'
crochet agent score "$SELLER_ID"

# --- Quick start: a sub-agent with a budget ---
step "a 1-cent listing in the data category, on an example seller of its own"
crochet example-seller --secret-file cent-secret.txt --bind 127.0.0.1:0 > cent-seller.out &
other_seller_pid=$!
for _ in $(seq 1 100); do grep -q '^listening on ' cent-seller.out 2>/dev/null && break; sleep 0.1; done
CENT_URL=$(sed -n 's/^listening on //p' cent-seller.out)
export CROCHET_AGENT_PROFILE=$PWD/seller.toml
crochet agent sell create --name "Cent Lookup" --description "One lookup for one cent." \
  --price 0.01 --category data --endpoint "$CENT_URL/crochet" --secret-out cent-secret.txt --json > cent.json
CENT=$(jq -r .id cent.json)

step "the buyer tops up its balance and gives a sub-agent 50 cents a day for data"
export CROCHET_AGENT_PROFILE=$PWD/buyer.toml
crochet agent balance deposit 100 --json > deposit.json
check deposit.json '.credited_now and .balance_cents == 100'
crochet agent keys create --name research-sub-agent --daily-cents 50 --category data \
  --profile-out sub-agent.toml --json > sub-key.json
check sub-key.json '.id | length > 0'

step "the sub-agent spends its 50 cents from the balance, one call each"
export CROCHET_AGENT_PROFILE=$PWD/sub-agent.toml
for cent in $(seq 1 50); do
  crochet agent call "$CENT" --data "{\"cent\": $cent}" --pay balance --json > sub-call.json
done
check sub-call.json '.charged_cents == 1 and .seller_response.verified'

step "the 51st cent is refused, and so is a listing outside its category"
if crochet agent call "$CENT" --data '{"cent": 51}' --pay balance 2> refused.txt; then
  echo "$NAME: the 51st cent was not refused" >&2; exit 1
fi
grep -q SPEND_LIMIT_EXCEEDED refused.txt || { cat refused.txt >&2; exit 1; }
if crochet agent call "$LISTING" --data '{}' --pay balance 2> outside.txt; then
  echo "$NAME: a listing outside the category was not refused" >&2; exit 1
fi
grep -q LISTING_NOT_ALLOWED_FOR_KEY outside.txt || { cat outside.txt >&2; exit 1; }
export CROCHET_AGENT_PROFILE=$PWD/buyer.toml
crochet agent balance --json > balance.json
check balance.json '.available_cents == 50'

echo
echo "agent quickstart: all steps passed"
