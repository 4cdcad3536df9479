#!/usr/bin/env bash
# Load run: wrk against the same trivial JSON seller four ways, on this machine:
#   1. directly, 2. through nginx proxy_pass (the reference proxy), 3. through a bare
#   relay on the gateway's own stack (axum + hyper-util, no per-call work: the floor),
#   4. through the Crochet gateway on a free listing (authenticated, signed, recorded).
# Prints requests/s, p50/p99 latency and the CPU time the proxy spent per request for
# each. Bounded: DURATION per target, loopback only.
#   DURATION=10s CONNS=32 THREADS=2 benches/load/run.sh
# CROCHET_BIN=path runs that build of the gateway instead of this tree's (to compare two
# builds: run the script once with each, alternating).
# LOAD_POLICIES=off|on (default on), LOAD_ISOLATION=reuse|buyer|call (default reuse): the
# policy plugins, and how their instances are kept.
# LOAD_DATABASE_URL=postgres://… runs the gateway on that database instead of a fresh
# SQLite file (use an empty database or schema), and counts the local PostgreSQL
# server's CPU per request beside the gateway's.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
SELLER=127.0.0.1:18081 NGINX=127.0.0.1:18082 GATEWAY=127.0.0.1:18083 BARE=127.0.0.1:18084

need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need nginx nginx
need jq jq

cargo build --release -q -p crochet --bin crochet -p crochet-benches --bin json-seller --bin bare-proxy
crochet=${CROCHET_BIN:-$root/target/release/crochet}

work=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done; echo "no listener on $1" >&2; exit 1; }
port_free() { if (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; then echo "$1 is already in use: stop what listens there first" >&2; exit 1; fi; }
for p in "$SELLER" "$NGINX" "$GATEWAY" "$BARE"; do port_free "$p"; done

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
  server {
    listen $NGINX;
    location / { proxy_pass http://seller; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
nginx -c "$work/nginx.conf" &
nginx_pid=$!
wait_port "$NGINX"

# The bundled policy plugins run on every call, with limits far above what this run
# sends (the defaults would rightly refuse one buyer's thousands of calls a second).
# LOAD_POLICIES=off measures the gateway without them. LOAD_ISOLATION=call gives every
# policy call a fresh instance instead of a warm one (reuse, the default).
if [ "${LOAD_POLICIES:-on}" = on ]; then
  big='{ limit = 1000000000, window_seconds = 60, burst = 1000000000 }'
  isolation=${LOAD_ISOLATION:-reuse}
  cat > "$work/crochet.toml" <<TOML
[[plugins.policy]]
name = "rate-limit"
source = "bundled:rate-limit"
isolation = "$isolation"
config = { gateway = { per_buyer = $big, per_listing = $big }, auth = { per_ip = $big } }

[[plugins.policy]]
name = "request-validation"
source = "bundled:request-validation"
isolation = "$isolation"
TOML
else
  printf '[plugins]\npolicy = []\n' > "$work/crochet.toml"
fi

# exec: the background job is the server itself, so cleanup stops it.
(cd "$work" && CROCHET_DATABASE_URL=${LOAD_DATABASE_URL:-sqlite://crochet.db} CROCHET_BIND=$GATEWAY \
  CROCHET_POW_DIFFICULTY=1 CROCHET_LOG=warn exec "$crochet" serve >serve.out 2>serve.err) &
gateway_pid=$!
wait_port "$GATEWAY"

# A registered agent and a free listing pointed at the seller.
api=http://$GATEWAY/api/v1
"$crochet" wallet new --chain solana > "$work/wallet.json"
curl -sf -X POST "$api/auth/challenge" -H 'content-type: application/json' \
  -d "{\"wallet_address\": \"$(jq -r .address "$work/wallet.json")\"}" > "$work/challenge.json"
"$crochet" wallet prove --wallet "$work/wallet.json" < "$work/challenge.json" > "$work/proof.json"
AUTH=$(curl -sf -X POST "$api/register" -H 'content-type: application/json' -d @"$work/proof.json" | jq -r .data.authorization_header)
challenge=$(curl -sf -X POST "$api/listings/challenge" -H "Authorization: $AUTH" | jq -r .data.challenge)
pow=$(python3 -c "import hashlib,itertools,sys; c=sys.argv[1]; print(next(n for n in itertools.count() if hashlib.sha256((c+str(n)).encode()).hexdigest().startswith('0')))" "$challenge")
listing=$(curl -sf -X POST "$api/listings" -H "Authorization: $AUTH" -H 'content-type: application/json' -d "{
  \"pow_nonce\": \"$pow\", \"name\": \"Load\", \"description\": \"load run\", \"pricing_model\": \"free\",
  \"private_endpoint_url\": \"http://$SELLER/run\", \"status\": \"active\"}" | jq -r .data.id)

cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"task":"classify","input":{"text":"a short request"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("WRK_AUTH") or ""
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

# With LOAD_DATABASE_URL, the database server's CPU counts too: it shares this machine.
# Every local `postgres` process, those forked during the run (new backends) included.
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

# run NAME URL AUTH PIDS: one wrk run; besides throughput and latency it reports the CPU
# time PIDS (the proxy under test; the seller for the direct run) spent per request,
# a figure that depends much less than req/s on what else this machine is doing.
run() {
  local name=$1 url=$2 auth=$3 pids=$4
  local out before after db_before db_after db=""
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
  printf '| %-26s | %10s | %8s | %8s | %10s | %s\n' "$name" "$rps" "$p50" "$p99" "$cpu_us" "${non2xx:-0} non-2xx$db"
}

# nginx's workers, looked up now: the master forks them after it starts listening.
nginx_pids="$nginx_pid $(pgrep -d ' ' -P "$nginx_pid")"

echo "wrk -t$THREADS -c$CONNS -d$DURATION, POST of a 54-byte JSON body, all on this machine"
printf '| %-26s | %10s | %8s | %8s | %10s |\n' target "req/s" p50 p99 "CPU µs/req"
run "direct to seller" "http://$SELLER/run" "" "$seller_pid"
run "nginx proxy_pass" "http://$NGINX/run" "" "$nginx_pids"
run "bare axum+hyper relay" "http://$BARE/run" "" "$bare_pid"
run "crochet gateway (free)" "$api/gateway/$listing" "$AUTH" "$gateway_pid" "${LOAD_DATABASE_URL:-}"
# Moderate load: what the gateway adds to a call's latency when nothing queues.
echo
echo "moderate load: wrk -t1 -c${MODERATE_CONNS:-4} -d$DURATION"
THREADS=1 CONNS=${MODERATE_CONNS:-4} run "nginx proxy_pass" "http://$NGINX/run" "" "$nginx_pids"
THREADS=1 CONNS=${MODERATE_CONNS:-4} run "direct to seller" "http://$SELLER/run" "" "$seller_pid"
THREADS=1 CONNS=${MODERATE_CONNS:-4} run "crochet gateway (free)" "$api/gateway/$listing" "$AUTH" "$gateway_pid" "${LOAD_DATABASE_URL:-}"
recorded=$(curl -sf "$api/gateway-requests?role=buyer&limit=1" -H "Authorization: $AUTH" | jq .pagination.total)
echo "gateway requests recorded: $recorded"
