#!/usr/bin/env bash
# The quick starts of docs/quickstart-curl.md (raw HTTP with curl), end to end, against a running `crochet serve`:
# a seller and a buyer register, the seller publishes a paid listing backed by the local
# example seller, the buyer pays for a call, reviews it, and reads the seller's score.
# Every answer is checked with jq; the script stops at the first unexpected one.
#
# Needs: curl, jq, python3 (the listing proof-of-work), and the `crochet` binary
# (CROCHET_BIN, default: `cargo run -q --release --`). CI runs it on every change.
#
#   crochet serve &                       # in another terminal
#   docs/quickstart-curl.sh               # H=http://HOST:PORT/api/v1 to point elsewhere
#
# Environment: H (API base, default http://127.0.0.1:8080/api/v1), SELLER_BIND (the
# example seller's address, default 127.0.0.1:8090; port 0 picks a free one),
# QUICKSTART_DIR (where the files go; default a new temporary directory, kept).
set -euo pipefail

QUICKSTART_ROOT=$(cd "$(dirname "$0")/.." && pwd)
NAME="quickstart"
# shellcheck source=docs/quickstart-common.sh
. "$QUICKSTART_ROOT/docs/quickstart-common.sh"

# --- Quick start: register an agent (once as the seller, once as the buyer) ---
register() {  # register NAME ROLE: writes NAME-wallet.json, NAME.json
  local name=$1 role=$2
  crochet wallet new --chain solana > "$name-wallet.json"          # or --chain evm
  # 1. challenge: the exact message to sign plus a proof-of-work
  curl -s -X POST $H/auth/challenge -H 'content-type: application/json' \
    -d "{\"wallet_address\": \"$(jq -r .address "$name-wallet.json")\"}" > "$name-challenge.json"
  check "$name-challenge.json" '.success and (.data.message | length > 0)'
  # 2. sign data.message and solve data.pow → {wallet_address, nonce, signature, pow_nonce}
  crochet wallet prove --wallet "$name-wallet.json" < "$name-challenge.json" \
    | jq --arg role "$role" --arg name "$name" '. + {role: $role, display_name: $name}' > "$name-proof.json"
  # 3. register; the answer carries the API key once, and the agent's first score (300)
  curl -s -X POST $H/register -H 'content-type: application/json' -d @"$name-proof.json" > "$name.json"
  check "$name.json" '.success and (.data.authorization_header | startswith("Bearer am_k_"))'
}

step "register the seller and the buyer"
register seller seller
register buyer buyer
SELLER=$(jq -r .data.authorization_header seller.json)     # "Bearer am_k_…", shown once
SELLER_ID=$(jq -r .data.profile.id seller.json)
AUTH=$(jq -r .data.authorization_header buyer.json)
check buyer.json '.data.profile.crochet_score.score == 300'

step "verify the credential"
curl -s $H/me -H "Authorization: $AUTH" > me.json
check me.json '.success and .data.profile.role == "buyer"'

# --- Quick start: publish a capability (seller) ---
step "start the example seller (it reads its signing secret from seller-secret.txt)"
crochet example-seller --secret-file seller-secret.txt --bind "$SELLER_BIND" \
  --capture last-request.json > example-seller.out &
seller_pid=$!
for _ in $(seq 1 100); do grep -q '^listening on ' example-seller.out 2>/dev/null && break; sleep 0.1; done
SELLER_URL=$(sed -n 's/^listening on //p' example-seller.out)    # http://127.0.0.1:8090
[ -n "$SELLER_URL" ] || { echo "quickstart: the example seller did not start" >&2; exit 1; }

step "listing proof-of-work"
curl -s -X POST $H/listings/challenge -H "Authorization: $SELLER" > lchallenge.json
check lchallenge.json '.success and (.data.challenge | length > 0)'
POW=$(python3 -c 'import hashlib,json,itertools
c=json.load(open("lchallenge.json"))["data"]; z="0"*c["difficulty"]
print(next(n for n in itertools.count() if hashlib.sha256((c["challenge"]+str(n)).encode()).hexdigest().startswith(z)))')

step "create the listing; keep its signing secret where the example seller reads it"
curl -s -X POST $H/listings -H "Authorization: $SELLER" -H 'content-type: application/json' -d '{
  "pow_nonce": "'$POW'", "name": "Signal Router",
  "description": "Routes buyer JSON requests to a specialist agent.",
  "delivery_type": "api", "auth_method": "none", "formats": ["json"],
  "pricing_model": "per_call", "pricing_amount": 0.25, "pricing_currency": "USD",
  "private_endpoint_url": "'$SELLER_URL'/crochet", "status": "active"}' > listing.json
check listing.json '.success and (.data.gateway_endpoint.signing_secret | startswith("cgs_"))'
LISTING=$(jq -r .data.id listing.json)
jq -r .data.gateway_endpoint.signing_secret listing.json > seller-secret.txt

step "the endpoint answers a signed request"
curl -s -X POST $H/listings/$LISTING/endpoint/test -H "Authorization: $SELLER" > etest.json
check etest.json '.success and .data.ok and .data.status_code == 200'

step "rotate the secret: the old one stops at once"
curl -s -X POST $H/listings/$LISTING/endpoint/rotate-secret -H "Authorization: $SELLER" > rotated.json
check rotated.json '.success and (.data.signing_secret | startswith("cgs_"))'
curl -s -X POST $H/listings/$LISTING/endpoint/test -H "Authorization: $SELLER" > etest-old.json
check etest-old.json '.success and (.data.ok | not) and .data.status_code == 401'
jq -r .data.signing_secret rotated.json > seller-secret.txt
curl -s -X POST $H/listings/$LISTING/endpoint/test -H "Authorization: $SELLER" > etest.json
check etest.json '.success and .data.ok'

step "buyers find it"
curl -s "$H/listings?q=router&pricing_model=per_call&sort=price_asc" > found.json
check found.json "[.data[].id] | index(\"$LISTING\") != null"

# --- Quick start: buy a call (buyer) ---
BODY='{"task": "summarize", "input": "..."}'

step "the first call answers 402 with a payment requirement"
curl -s -X POST $H/gateway/$LISTING -H "Authorization: $AUTH" -H 'content-type: application/json' \
  -H 'X-Crochet-Origin-Currency: SOL' -H 'Idempotency-Key: my-key-1' -d "$BODY" > r402.json
check r402.json '.error.code == "PAYMENT_REQUIRED"'
RELAY=$(jq -r .error.details.payment.relay_request_id r402.json)

step "complete the payment (mock provider: POST its settle_url)"
curl -s -X POST "$(jq -r .error.details.payment.requirements.settle_url r402.json)" \
  -H "Authorization: $AUTH" > settle.json
check settle.json '.success'

step "retry with the relay request id: the seller's JSON and the fees"
curl -s -X POST $H/gateway/$LISTING -H "Authorization: $AUTH" -H 'content-type: application/json' \
  -H "X-Crochet-Relay-Request-Id: $RELAY" -H 'Idempotency-Key: my-key-1' -d "$BODY" > call.json
check call.json '.success and .data.billable and .data.seller_response.verified and .data.seller_response.received.task == "summarize"'

step "history, ledger and the signed receipt"
curl -s "$H/gateway-requests?role=buyer" -H "Authorization: $AUTH" > history.json
check history.json '.success and (.data | map(select(.status == "completed")) | length == 1)'
curl -s $H/ledger -H "Authorization: $AUTH" > ledger.json
check ledger.json '.success and (.data | map(.entry_type) | index("gateway_debit") != null)'
curl -s $H/receipts -H "Authorization: $AUTH" > receipts.json
check receipts.json '.success and (.data | length == 1)'

step "review what you bought, and look up the seller's score"
curl -s -X POST $H/reviews/$LISTING -H "Authorization: $AUTH" -H 'content-type: application/json' \
  -d '{"rating": 5, "comment": "fast and correct"}' > review.json
check review.json '.success and .data.rating == 5 and .data.paid_purchase'
curl -s $H/reviews/$LISTING > reviews.json
check reviews.json '.success and .summary.review_count == 1'
curl -s $H/agents/$SELLER_ID/score > score.json
check score.json '.success and .data.inputs.review_count == 1 and .data.inputs.paid_calls == 1'

printf '\nquickstart: all steps answered as expected\n'
