#!/usr/bin/env bash
# Load run: wrk against the same trivial JSON seller, on this machine, every row in one go:
#   direct to the seller; nginx proxy_pass (the reference proxy); a bare relay on the
#   gateway's own stack (axum + hyper-util, no per-call work: the floor); then the Crochet
#   gateway on a free listing (authenticated, signed, recorded) as shipped (both default
#   policy plugins on), without policies, and on PostgreSQL; paid calls (402, mock
#   settlement, retry; many buyers); the same free call over MCP beside REST; and two
#   gateway instances behind nginx on one PostgreSQL and Redis, with a check that a rate
#   limit shared by the two holds exactly.
# Prints requests/s, p50/p99 latency, the CPU time the proxy spent per request and its
# share of nginx's requests/s for each. Bounded: DURATION per row, loopback only.
#   DURATION=10s CONNS=32 THREADS=2 benches/load/run.sh
# CROCHET_BIN=path runs that build of the gateway instead of this tree's (to compare two
# builds: run the script once with each, alternating).
# LOAD_ISOLATION=reuse|buyer|call (default reuse): how the policy plugins' instances are
# kept. LOAD_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test) and
# LOAD_REDIS_URL (default redis://127.0.0.1:6379): the servers of the PostgreSQL and
# two-instance rows, which are skipped (and say so) when the server does not answer; each
# run uses a schema of its own, dropped at the end. LOAD_ROWS (default all) limits the
# run to some of: policies,nopolicies,mcp,postgres,paid,instances.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
SELLER=127.0.0.1:18081 NGINX=127.0.0.1:18082 GATEWAY=127.0.0.1:18083 BARE=127.0.0.1:18084
GATEWAY_B=127.0.0.1:18085 NGINX_PAIR=127.0.0.1:18086
PG_URL=${LOAD_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${LOAD_REDIS_URL:-redis://127.0.0.1:6379}
ROWS=${LOAD_ROWS:-policies,nopolicies,mcp,postgres,paid,instances}
want() { [[ ",$ROWS," == *",$1,"* ]]; }

need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need nginx nginx
need jq jq

need psql postgresql-client
need sqlite3 sqlite3
cargo build --release -q -p crochet --bin crochet -p crochet-benches --bin json-seller --bin bare-proxy --bin paid-load
crochet=${CROCHET_BIN:-$root/target/release/crochet}

work=$(mktemp -d)
schema=load_$$
cleanup() {
  kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true
  [ -n "${pg_ok:-}" ] && psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() { for _ in $(seq 1 "${WAIT_TRIES:-100}"); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done; echo "no listener on $1" >&2; exit 1; }
port_free() { if (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; then echo "$1 is already in use: stop what listens there first" >&2; exit 1; fi; }
for p in "$SELLER" "$NGINX" "$GATEWAY" "$BARE" "$GATEWAY_B" "$NGINX_PAIR"; do port_free "$p"; done

target/release/json-seller "$SELLER" &
seller_pid=$!
wait_port "$SELLER"
target/release/bare-proxy "$BARE" "http://$SELLER/run" &
bare_pid=$!
wait_port "$BARE"

mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<CONF
daemon off;
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  upstream seller { server $SELLER; keepalive 128; }
  upstream pair { server $GATEWAY; server $GATEWAY_B; keepalive 128; }
  server {
    listen $NGINX;
    location / { proxy_pass http://seller; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen $NGINX_PAIR;
    location / { proxy_pass http://pair; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
nginx -c "$work/nginx.conf" &
nginx_pid=$!
wait_port "$NGINX"

# The bundled policy plugins as shipped, with limits far above what this run sends (the
# defaults would rightly refuse one buyer's thousands of calls a second).
big='{ limit = 1000000000, window_seconds = 60, burst = 1000000000 }'
isolation=${LOAD_ISOLATION:-reuse}
policies() {
  cat <<TOML
[[plugins.policy]]
name = "rate-limit"
source = "bundled:rate-limit"
isolation = "$isolation"
config = { gateway = { per_buyer = ${1:-$big}, per_listing = $big }, auth = { per_ip = $big } }

[[plugins.policy]]
name = "request-validation"
source = "bundled:request-validation"
isolation = "$isolation"
TOML
}
policies > "$work/policies.toml"
printf '[plugins]\npolicy = []\n' > "$work/nopolicies.toml"
# The two-instance row: a per-buyer limit the instances share through Redis, over a
# window (a day) that one run does not cross.
SHARED_LIMIT=${SHARED_LIMIT:-3000}
policies "{ limit = $SHARED_LIMIT, window_seconds = 86400, burst = 1000000000 }" > "$work/shared.toml"

if psql -q "$PG_URL" -c "CREATE SCHEMA $schema" >/dev/null 2>&1; then
  pg_ok=1
  sep='?'; [[ "$PG_URL" == *\?* ]] && sep='&'
  PG_SCHEMA_URL="$PG_URL${sep}options=-c%20search_path%3D$schema"
else
  echo "PostgreSQL at $PG_URL does not answer: its rows are skipped" >&2
fi
redis_ok=
hostport=${REDIS_URL#redis://}; hostport=${hostport%%/*}
(exec 3<>"/dev/tcp/${hostport%:*}/${hostport#*:}") 2>/dev/null && redis_ok=1
[ -z "$redis_ok" ] && echo "Redis at $REDIS_URL does not answer: the two-instance row is skipped" >&2
key=$(head -c 32 /dev/urandom | base64)

# start_gateway NAME ADDR DATABASE_URL CONFIG [REDIS_URL]: one `crochet serve` in a
# directory of its own (run under the command in GATEWAY_WRAP, if set); its pid is left
# in $gw_pid. exec: the background job is the
# server itself, so stop_gateway (and cleanup) stop it. X402=builtin in the environment
# turns x402 on with the built-in facilitator.
start_gateway() {
  mkdir -p "$work/$1"
  (cd "$work/$1" && exec env CROCHET_DATABASE_URL="$3" CROCHET_BIND="$2" CROCHET_CONFIG="$4" ${5:+CROCHET_REDIS_URL=$5} \
    ${X402:+CROCHET_X402_FACILITATOR_URL=$X402} \
    CROCHET_ENCRYPTION_KEY="$key" CROCHET_POW_DIFFICULTY=1 CROCHET_LOG=warn ${GATEWAY_WRAP:-} "$crochet" serve >serve.out 2>serve.err) &
  gw_pid=$!
  wait_port "$2"
}
stop_gateway() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# setup API: a registered agent ($AUTH), a free listing ($FREE) and a priced one
# ($PRICED, 1 cent a call), both pointed at the seller.
setup() {
  local api=$1 challenge pow
  "$crochet" wallet new --chain solana > "$work/wallet.json"
  curl -sf -X POST "$api/auth/challenge" -H 'content-type: application/json' \
    -d "{\"wallet_address\": \"$(jq -r .address "$work/wallet.json")\"}" > "$work/challenge.json"
  "$crochet" wallet prove --wallet "$work/wallet.json" < "$work/challenge.json" > "$work/proof.json"
  AUTH=$(curl -sf -X POST "$api/register" -H 'content-type: application/json' -d @"$work/proof.json" | jq -r .data.authorization_header)
  listing() {
    challenge=$(curl -sf -X POST "$api/listings/challenge" -H "Authorization: $AUTH" | jq -r .data.challenge)
    pow=$(python3 -c "import hashlib,itertools,sys; c=sys.argv[1]; print(next(n for n in itertools.count() if hashlib.sha256((c+str(n)).encode()).hexdigest().startswith('0')))" "$challenge")
    curl -sf -X POST "$api/listings" -H "Authorization: $AUTH" -H 'content-type: application/json' -d "{
      \"pow_nonce\": \"$pow\", \"name\": \"Load $1\", \"description\": \"load run\", $2,
      \"private_endpoint_url\": \"http://$SELLER/run\", \"status\": \"active\"}" | jq -r .data.id
  }
  FREE=$(listing free '"pricing_model": "free"')
  PRICED=$(listing priced '"pricing_model": "per_call", "pricing_amount": 0.01')
}

# The body of every free call: the seller's input, also inside the MCP rows' arguments.
call_body='{"task":"classify","input":{"text":"a short request"}}'
# WRK_BODY replaces the body; WRK_ACCEPT adds the headers of an MCP client.
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY") or '$call_body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("WRK_AUTH") or ""
local accept = os.getenv("WRK_ACCEPT")
if accept then
  wrk.headers["Accept"] = accept
  wrk.headers["MCP-Protocol-Version"] = "2025-06-18"
end
LUA

# CPU time (user + system, in clock ticks) the given processes have used so far.
cpu_ticks() {
  local total=0 p f
  for p in "$@"; do
    read -r -a f < "/proc/$p/stat"
    total=$((total + f[13] + f[14]))
  done
  echo "$total"
}
hz=$(getconf CLK_TCK)

# On PostgreSQL the database server's CPU counts too: it shares this machine. Every local
# `postgres` process, those forked during the run (new backends) included.
db_ticks() {
  local p
  for p in $(pgrep -x postgres); do
    [ -r "/proc/$p/stat" ] && awk -v p="$p" '{print p, $14 + $15}' "/proc/$p/stat"
  done
}
db_us_per_req() {
  local before=$1 after=$2 n=$3
  awk -v hz="$hz" -v n="$n" 'NR == FNR { b[$1] = $2; next } { t += $2 - b[$1] }
    END { printf "%.1f", n ? t * 1e6 / hz / n : 0 }' <(echo "$before") <(echo "$after")
}

# run NAME URL AUTH PIDS [pg]: one wrk run; besides throughput and latency it reports
# the CPU time PIDS (the proxy under test; the seller for the direct run) spent per
# request, a figure that depends much less than req/s on what else this machine is doing,
# and the share of nginx's req/s (once nginx has run). Leaves the counts in $last_*.
nginx_rps=
run() {
  local name=$1 url=$2 auth=$3 pids=$4
  local out before after db_before db_after db="" share=""
  before=$(cpu_ticks $pids)
  [ -n "${5:-}" ] && db_before=$(db_ticks)
  out=$(WRK_AUTH=$auth wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$work/post.lua" "$url")
  after=$(cpu_ticks $pids)
  [ -n "${5:-}" ] && db_after=$(db_ticks)
  local rps p50 p99 non2xx requests cpu_us
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  cpu_us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" 'BEGIN { printf "%.1f", n ? t * 1e6 / hz / n : 0 }')
  [ -n "${5:-}" ] && db=", plus $(db_us_per_req "$db_before" "$db_after" "$requests") µs/req in postgres"
  [ -n "$nginx_rps" ] && share=$(awk -v a="$rps" -v b="$nginx_rps" 'BEGIN { printf "%.0f%%", 100 * a / b }')
  last_requests=$requests last_non2xx=${non2xx:-0} last_rps=$rps
  printf '| %-26s | %10s | %8s | %8s | %10s | %6s | %s\n' "$name" "$rps" "$p50" "$p99" "$cpu_us" "$share" "${non2xx:-0} non-2xx$db"
}

# nginx's workers, looked up now: the master forks them after it starts listening.
nginx_pids="$nginx_pid $(pgrep -d ' ' -P "$nginx_pid")"

mcp_body() {
  echo "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"call_listing\",\"arguments\":{\"listing\":\"$FREE\",\"input\":$call_body}}}"
}

if [ "$ROWS" = instructions ]; then
  need valgrind valgrind
  CALLS=${CALLS:-200}
  callgrind="valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$work/callgrind.%p"
  WAIT_TRIES=1200 GATEWAY_WRAP=$callgrind start_gateway callgrind "$GATEWAY" sqlite://crochet.db "$work/nopolicies.toml"
  setup "http://$GATEWAY/api/v1"
  body=$(mcp_body)
  rest() { curl -sf "http://$GATEWAY/api/v1/gateway/$FREE" -H "Authorization: $AUTH" -H 'content-type: application/json' \
    -d "$call_body" | grep -q '"success":true'; }
  mcp() { curl -sf "http://$GATEWAY/mcp" -H "Authorization: $AUTH" -H 'content-type: application/json' \
    -H "accept: $1" -H 'mcp-protocol-version: 2025-06-18' -d "$body" | grep -q '"isError":false'; }
  inline() { mcp "application/json, text/event-stream"; }
  sdk() { mcp "application/json;q=1, text/event-stream"; }
  # count NAME FN: instructions per call of CALLS calls of FN, after 20 unmeasured ones;
  # the wait lets the history writer's batch land inside the count.
  count() {
    local i total
    for i in $(seq 20); do $2 || { echo "$1: the call failed" >&2; exit 1; }; done
    sleep 1
    callgrind_control -z "$gw_pid" >/dev/null 2>&1
    callgrind_control -i on "$gw_pid" >/dev/null 2>&1
    for i in $(seq "$CALLS"); do $2 || { echo "$1: the call failed" >&2; exit 1; }; done
    sleep 1
    callgrind_control -i off "$gw_pid" >/dev/null 2>&1
    callgrind_control -d "$gw_pid" >/dev/null 2>&1
    total=$(awk '/^(summary|totals):/ {print $2}' "$(ls -t "$work"/callgrind.* | head -1)" | tail -1)
    printf '| %-30s | %12s |\n' "$1" "$((total / CALLS))"
  }
  echo "instructions per call (callgrind, every thread of the gateway; without policy plugins unless named), $CALLS sequential calls each"
  printf '| %-30s | %12s |\n' call "instructions"
  # Twice each, alternating: the history table grows, and one count moves by a few
  # percent from the next.
  for round in 1 2; do
    count "REST POST /gateway/{id}" rest
    count "MCP tools/call, inline" inline
    count "MCP tools/call, SDK's service" sdk
  done
  stop_gateway "$gw_pid"
  # The same REST call through both default policy plugins. The gateway starts once
  # without valgrind first, which compiles the plugins into its compile cache, so that
  # the counted one does not compile them (minutes, under valgrind).
  start_gateway callgrind-policies "$GATEWAY" sqlite://crochet.db "$work/policies.toml"
  stop_gateway "$gw_pid"
  WAIT_TRIES=1200 GATEWAY_WRAP=$callgrind start_gateway callgrind-policies "$GATEWAY" sqlite://crochet.db "$work/policies.toml"
  setup "http://$GATEWAY/api/v1"
  for round in 1 2; do
    count "REST, both default policies" rest
  done
  exit 0
fi

echo "wrk -t$THREADS -c$CONNS -d$DURATION, POST of a 54-byte JSON body, all on this machine"
printf '| %-26s | %10s | %8s | %8s | %10s | %6s |\n' target "req/s" p50 p99 "CPU µs/req" "nginx"
run "direct to seller" "http://$SELLER/run" "" "$seller_pid"
run "nginx proxy_pass" "http://$NGINX/run" "" "$nginx_pids"
nginx_rps=$last_rps
run "bare axum+hyper relay" "http://$BARE/run" "" "$bare_pid"

if want policies; then
  # x402 on (built-in facilitator) for the paid rows' x402 retry; free calls never touch it.
  X402=builtin start_gateway shipped "$GATEWAY" sqlite://crochet.db "$work/policies.toml"
  setup "http://$GATEWAY/api/v1"
  run "crochet free, as shipped" "http://$GATEWAY/api/v1/gateway/$FREE" "$AUTH" "$gw_pid"
  sent=$last_requests
  # Moderate load: what the gateway adds to a call's latency when nothing queues.
  THREADS=1 CONNS=${MODERATE_CONNS:-4} run "  at -c${MODERATE_CONNS:-4}: nginx" "http://$NGINX/run" "" "$nginx_pids"
  THREADS=1 CONNS=${MODERATE_CONNS:-4} run "  at -c${MODERATE_CONNS:-4}: crochet" "http://$GATEWAY/api/v1/gateway/$FREE" "$AUTH" "$gw_pid"
  sent=$((sent + last_requests))
  if want paid; then
    # Paid calls on the shipped configuration: many buyers, each through the whole flow.
    CONNS=$CONNS DURATION_SECS=${DURATION%s} HZ=$hz target/release/paid-load "http://$GATEWAY/api/v1" "$PRICED" "$gw_pid"
  fi
  stop_gateway "$gw_pid"
  # Every free call is recorded (the history writer flushes on shutdown).
  recorded=$(sqlite3 "$work/shipped/crochet.db" "SELECT COUNT(*) FROM gateway_requests WHERE listing_id = '$FREE'")
  echo "free calls recorded in the history: $recorded of $sent sent (wrk counts a call still in flight at its end)"
fi
if want nopolicies; then
  start_gateway bare-gateway "$GATEWAY" sqlite://crochet.db "$work/nopolicies.toml"
  setup "http://$GATEWAY/api/v1"
  run "crochet free, no policies" "http://$GATEWAY/api/v1/gateway/$FREE" "$AUTH" "$gw_pid"
  stop_gateway "$gw_pid"
fi
if want mcp; then
  # The same free call over REST and as MCP's call_listing tool, on one gateway without
  # policies (so the door's cost stands out): answered inline, then with a weighted
  # Accept that leaves it to the MCP SDK's stateless service.
  start_gateway mcp "$GATEWAY" sqlite://crochet.db "$work/nopolicies.toml"
  setup "http://$GATEWAY/api/v1"
  run "crochet free, REST" "http://$GATEWAY/api/v1/gateway/$FREE" "$AUTH" "$gw_pid"
  mcp_body=$(mcp_body)
  # A tool result is a 200 either way: check once that the call succeeds.
  curl -sf "http://$GATEWAY/mcp" -H "Authorization: $AUTH" -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' -d "$mcp_body" | grep -q '"isError":false' \
    || { echo "the MCP call did not succeed" >&2; exit 1; }
  WRK_BODY=$mcp_body WRK_ACCEPT="application/json, text/event-stream" \
    run "  the same over MCP" "http://$GATEWAY/mcp" "$AUTH" "$gw_pid"
  WRK_BODY=$mcp_body WRK_ACCEPT="application/json;q=1, text/event-stream" \
    run "  over MCP, SDK's service" "http://$GATEWAY/mcp" "$AUTH" "$gw_pid"
  stop_gateway "$gw_pid"
fi
if want postgres && [ -n "${pg_ok:-}" ]; then
  start_gateway postgres "$GATEWAY" "$PG_SCHEMA_URL" "$work/policies.toml"
  setup "http://$GATEWAY/api/v1"
  run "crochet free, PostgreSQL" "http://$GATEWAY/api/v1/gateway/$FREE" "$AUTH" "$gw_pid" pg
  stop_gateway "$gw_pid"
fi
if want instances && [ -n "${pg_ok:-}" ] && [ -n "$redis_ok" ]; then
  psql -q "$PG_URL" -c "DROP SCHEMA $schema CASCADE; CREATE SCHEMA $schema" >/dev/null 2>&1
  start_gateway one "$GATEWAY" "$PG_SCHEMA_URL" "$work/policies.toml" "$REDIS_URL"
  a=$gw_pid
  start_gateway two "$GATEWAY_B" "$PG_SCHEMA_URL" "$work/policies.toml" "$REDIS_URL"
  b=$gw_pid
  setup "http://$GATEWAY/api/v1"
  run "1 instance (PG + Redis)" "http://$GATEWAY/api/v1/gateway/$FREE" "$AUTH" "$a" pg
  run "2 instances behind nginx" "http://$NGINX_PAIR/api/v1/gateway/$FREE" "$AUTH" "$a $b $nginx_pids" pg
  stop_gateway "$a"; stop_gateway "$b"
  # The shared limit: one buyer, through both instances, for long enough to send several
  # times the limit. Exactly SHARED_LIMIT calls may pass.
  start_gateway one-limited "$GATEWAY" "$PG_SCHEMA_URL" "$work/shared.toml" "$REDIS_URL"
  a=$gw_pid
  start_gateway two-limited "$GATEWAY_B" "$PG_SCHEMA_URL" "$work/shared.toml" "$REDIS_URL"
  b=$gw_pid
  setup "http://$GATEWAY/api/v1"
  DURATION=3s run "shared limit, 2 instances" "http://$NGINX_PAIR/api/v1/gateway/$FREE" "$AUTH" "$a $b $nginx_pids" pg
  passed=$((last_requests - last_non2xx))
  verdict="holds"; [ "$passed" -eq "$SHARED_LIMIT" ] || verdict="DOES NOT HOLD"
  echo "shared per-buyer limit of $SHARED_LIMIT across 2 instances: $passed of $last_requests calls passed ($verdict)"
  stop_gateway "$a"; stop_gateway "$b"
fi
