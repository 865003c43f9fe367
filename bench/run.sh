#!/usr/bin/env bash
# Side-by-side proxy benchmark: nginx, HAProxy and candor proxying to one upstream (nginx
# serving a fixed 1 KiB body), plus the upstream directly. One run, same machine, same load.
#
# Each proxy runs one worker pinned to core 0; wrk and the upstream share core 1. Reported
# per target: requests/s, and proxy CPU seconds per 100k requests read from /proc (user +
# system time of the proxy's processes). The ratios candor/nginx and candor/HAProxy are what
# to compare across runs: this machine is shared and noisy, absolute numbers drift.
#
# Usage: bench/run.sh [seconds per measurement, default 10] [rounds, default 3]
#
# Ports come from UP_PORT, NGINX_PORT, HAPROXY_PORT, CANDOR_PORT (and BASELINE_PORT) when
# set; otherwise free loopback ports are picked, so the script runs beside other servers.
# BASELINE=/path/to/an/older/candor adds that binary as target `baseline` (same config,
# same run): the way to check that a change keeps the plain route's CPU per request.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
ROUNDS=${2:-3}
CONNS=${CONNS:-32}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

. bench/install.sh
. bench/upstream.sh
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
# Debian starts the packaged services on install; stop them so only ours run.
(systemctl stop nginx haproxy || service nginx stop || true; service haproxy stop || true) >/dev/null 2>&1 || true

cargo build --release --locked -q
CANDOR=${CARGO_TARGET_DIR:-$PWD/target}/release/candor

WORK=$(mktemp -d /tmp/candor-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  rm -rf "$WORK"
}
trap cleanup EXIT

read -r P1 P2 P3 P4 P5 P6 P7 P8 P9 < <(free_ports 9)
UP_PORT=${UP_PORT:-$P1}
NGINX_PORT=${NGINX_PORT:-$P2}
HAPROXY_PORT=${HAPROXY_PORT:-$P3}
CANDOR_PORT=${CANDOR_PORT:-$P4}
BASELINE=${BASELINE:-}
BASELINE_PORT=${BASELINE_PORT:-$P5}
# A second candor whose rate-limited route shares its limit through Redis (exact mode), and
# the redis-server it uses (on the load core: the proxy core measures candor alone).
REDIS_PORT=${REDIS_PORT:-$P6}
CANDOR_REDIS_PORT=${CANDOR_REDIS_PORT:-$P7}
CANDOR_BATCHED_PORT=${CANDOR_BATCHED_PORT:-$P8}
# A candor with the plain route and the API event log off: the event log's cost.
CANDOR_NOEV_PORT=${CANDOR_NOEV_PORT:-$P9}
ALL_PORTS="$UP_PORT $NGINX_PORT $HAPROXY_PORT $CANDOR_PORT $BASELINE_PORT $REDIS_PORT $CANDOR_REDIS_PORT $CANDOR_BATCHED_PORT $CANDOR_NOEV_PORT"
if [ "$(echo "$ALL_PORTS" | tr ' ' '\n' | sort | uniq -d)" ]; then
  echo "two targets were given the same port: $ALL_PORTS"; exit 1
fi
for p in "$UP_PORT" "$NGINX_PORT" "$HAPROXY_PORT" "$CANDOR_PORT" "$BASELINE_PORT" "$REDIS_PORT" "$CANDOR_REDIS_PORT" "$CANDOR_BATCHED_PORT" "$CANDOR_NOEV_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "port $p is in use"; exit 1; fi
done

write_upstream

cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
master_process off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream backend { server 127.0.0.1:$UP_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Request-Id \$request_id;
    }
  }
}
CONF

cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT
  option forwardfor
  http-request set-header X-Request-Id %[uuid]
  default_backend be
backend be
  server up 127.0.0.1:$UP_PORT
CONF

cat > "$WORK/candor.toml" <<CONF
[server]
listen = "127.0.0.1:$CANDOR_PORT"
workers = 1

[log]
requests = false

[[routes]]
name = "jwt"
path = "/jwt/{*rest}"
upstream = "http://127.0.0.1:$UP_PORT"
auth = "bearer"
scopes = ["bench:read"]

CONF
cat > "$WORK/plain.toml" <<CONF
[[routes]]
name = "plain"
path = "/{*rest}"
upstream = "http://127.0.0.1:$UP_PORT"
CONF
# The validating route (a 1 KiB JSON POST checked against its schema): not in the
# baseline's configuration, which may predate [routes.validate].
cp bench/fixtures/device.schema.json bench/fixtures/device.json "$WORK/"
cat > "$WORK/validate.toml" <<CONF
[[routes]]
name = "validate"
path = "/validate/{*rest}"
upstream = "http://127.0.0.1:$UP_PORT"
[routes.validate]
body = "device.schema.json"

# A rate-limited route whose limit is never reached (one policy per client address, the
# RateLimit fields on every answer), and one that refuses every request past its first
# (the cost of a 429).
[[routes]]
name = "limited"
path = "/rl/{*rest}"
upstream = "http://127.0.0.1:$UP_PORT"
[[routes.rate_limits]]
name = "burst"
limit = 1000000000
window = "1s"
key = "address"

[[routes]]
name = "refused"
path = "/rl429/{*rest}"
upstream = "http://127.0.0.1:$UP_PORT"
[[routes.rate_limits]]
name = "tiny"
limit = 1
window = "1d"
key = "route"
CONF
cat > "$WORK/post.lua" <<'LUA'
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
LUA
"$CANDOR" accounts add --config "$WORK/candor.toml" --id bench --name Bench >/dev/null
CLIENT=$("$CANDOR" clients add --config "$WORK/candor.toml" --account bench --scopes bench:read --lifetime 7200)
CLIENT_ID=$(echo "$CLIENT" | awk '/^client_id:/ {print $2}')
CLIENT_SECRET=$(echo "$CLIENT" | awk '/^client_secret:/ {print $2}')

taskset -c "$LOAD_CPU" "$NGINX" -c "$WORK/upstream.conf" & PIDS+=($!)
taskset -c "$PROXY_CPU" "$NGINX" -c "$WORK/nginx.conf" & NGINX_PID=$!; PIDS+=($NGINX_PID)
taskset -c "$PROXY_CPU" "$HAPROXY" -f "$WORK/haproxy.cfg" -db & HAPROXY_PID=$!; PIDS+=($HAPROXY_PID)
# Routes match in file order: the validating route before the catch-all.
cat "$WORK/candor.toml" "$WORK/plain.toml" > "$WORK/candor-base.toml"
cat "$WORK/validate.toml" "$WORK/plain.toml" >> "$WORK/candor.toml"
CANDOR_LOG=warn taskset -c "$PROXY_CPU" "$CANDOR" serve --config "$WORK/candor.toml" >/dev/null & CANDOR_PID=$!; PIDS+=($CANDOR_PID)
mkdir -p "$WORK/redis"
cat > "$WORK/redis/candor.toml" <<CONF
[server]
listen = "127.0.0.1:$CANDOR_REDIS_PORT"
workers = 1

[log]
requests = false

[limits.shared]
redis = "redis://127.0.0.1:$REDIS_PORT"
mode = "exact"
on_failure = "closed"
timeout = "1s"

[[routes]]
name = "limited"
path = "/rl/{*rest}"
upstream = "http://127.0.0.1:$UP_PORT"
[[routes.rate_limits]]
name = "burst"
limit = 1000000000
window = "1s"
key = "address"

CONF
cat "$WORK/plain.toml" >> "$WORK/redis/candor.toml"
taskset -c "$LOAD_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$WORK/redis" --logfile "$WORK/redis/redis.log" & REDIS_PID=$!; PIDS+=($REDIS_PID)
CANDOR_LOG=warn taskset -c "$PROXY_CPU" "$CANDOR" serve --config "$WORK/redis/candor.toml" >/dev/null & CANDOR_REDIS_PID=$!; PIDS+=($CANDOR_REDIS_PID)
# The same in batched mode, on a third candor.
mkdir -p "$WORK/batched"
sed -e "s/127.0.0.1:$CANDOR_REDIS_PORT/127.0.0.1:$CANDOR_BATCHED_PORT/" \
  -e 's/^mode = "exact"/mode = "batched"\nlease = 100/' "$WORK/redis/candor.toml" > "$WORK/batched/candor.toml"
CANDOR_LOG=warn taskset -c "$PROXY_CPU" "$CANDOR" serve --config "$WORK/batched/candor.toml" >/dev/null & CANDOR_BATCHED_PID=$!; PIDS+=($CANDOR_BATCHED_PID)
# (The same routes as candor's, in the same order: only the event log differs.)
mkdir -p "$WORK/noev"
cp "$WORK/device.schema.json" "$WORK/noev/"
sed -e "s/127.0.0.1:$CANDOR_PORT/127.0.0.1:$CANDOR_NOEV_PORT/" "$WORK/candor.toml" > "$WORK/noev/candor.toml"
printf '\n[events]\nenabled = false\n' >> "$WORK/noev/candor.toml"
CANDOR_LOG=warn taskset -c "$PROXY_CPU" "$CANDOR" serve --config "$WORK/noev/candor.toml" >/dev/null & CANDOR_NOEV_PID=$!; PIDS+=($CANDOR_NOEV_PID)
TARGETS="direct nginx haproxy candor candor-noev candor-jwt candor-post candor-valid candor-rl candor-429 candor-rl-redis candor-rl-batched"
PORTS="$UP_PORT $NGINX_PORT $HAPROXY_PORT $CANDOR_PORT $CANDOR_REDIS_PORT $CANDOR_BATCHED_PORT $CANDOR_NOEV_PORT"
BASELINE_PID=
if [ -n "$BASELINE" ]; then
  # The older binary with the same routes, on its own port and data directory.
  mkdir -p "$WORK/baseline"
  sed -e "s/127.0.0.1:$CANDOR_PORT/127.0.0.1:$BASELINE_PORT/" "$WORK/candor-base.toml" > "$WORK/baseline/candor.toml"
  CANDOR_LOG=warn taskset -c "$PROXY_CPU" "$BASELINE" serve --config "$WORK/baseline/candor.toml" >/dev/null & BASELINE_PID=$!; PIDS+=($BASELINE_PID)
  TARGETS="direct nginx haproxy baseline candor candor-noev candor-jwt candor-post candor-valid candor-rl candor-429 candor-rl-redis candor-rl-batched"
  PORTS="$PORTS $BASELINE_PORT"
fi

for port in $PORTS; do
  for _ in $(seq 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
  done
  curl -fs -o /dev/null "http://127.0.0.1:$port/" || { echo "port $port did not come up"; exit 1; }
done

TOKEN=$(curl -fs -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials -d validity=120 \
  "http://127.0.0.1:$CANDOR_PORT/oauth/token" | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
curl -fs -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$CANDOR_PORT/jwt/" || { echo "JWT route refused the token"; exit 1; }
TICKS=$(getconf CLK_TCK)
cpu_ticks() { # user+system ticks of a pid and its threads, and of its child processes
  # (candor serve is a supervisor whose worker process serves)
  local p t=0
  for p in $1 $(pgrep -P "$1" || true); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

measure() { # name port pid [path] [header] [wrk script] -> "rps cpu_per_100k"
  # (REFUSALS=1: the answers are meant to be errors)
  local name=$1 port=$2 pid=$3 path=${4:-/} header=${5:-X-Bench: 1} script=()
  [ -n "${6:-}" ] && script=(-s "$6")
  local before after out reqs rps
  local warm
  warm=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s "${script[@]}" -H "$header" "http://127.0.0.1:$port$path" 2>&1) # warm-up
  [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" "${script[@]}" -H "$header" "http://127.0.0.1:$port$path")
  [ -n "$pid" ] && after=$(cpu_ticks "$pid")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  # Every request sent, warm-up included (for counts read from outside, such as Redis's).
  echo "$warm" "$out" | awk '/requests in/ {n += $1} END {print n}' > "$WORK/requests.$name"
  if [ -z "${REFUSALS:-}" ] && echo "$out" | grep -q "Non-2xx"; then echo "$name: non-2xx responses" >&2; echo "$out" >&2; exit 1; fi
  if [ -n "${REFUSALS:-}" ] && ! echo "$out" | grep -q "Non-2xx"; then echo "$name: no refusals" >&2; echo "$out" >&2; exit 1; fi
  if [ -n "$pid" ]; then
    awk -v a="$after" -v b="$before" -v t="$TICKS" -v r="$reqs" -v rps="$rps" \
      'BEGIN { printf "%s %.3f\n", rps, (a - b) / t / r * 100000 }'
  else
    echo "$rps -"
  fi
}

redis_calls() { # script calls Redis has run
  redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' |
    awk -F'[=,:]' '/^cmdstat_(evalsha|eval|script)/ {n += $3} END {print n + 0}'
}

declare -A RPS CPU
for round in $(seq "$ROUNDS"); do
  for target in $TARGETS; do
    case $target in
      baseline) r=$(measure baseline $BASELINE_PORT $BASELINE_PID) ;;
      direct) r=$(measure direct $UP_PORT "") ;;
      nginx) r=$(measure nginx $NGINX_PORT $NGINX_PID) ;;
      haproxy) r=$(measure haproxy $HAPROXY_PORT $HAPROXY_PID) ;;
      candor) r=$(measure candor $CANDOR_PORT $CANDOR_PID) ;;
      candor-noev) r=$(measure candor-noev $CANDOR_NOEV_PORT $CANDOR_NOEV_PID) ;;
      candor-jwt) r=$(measure candor-jwt $CANDOR_PORT $CANDOR_PID /jwt/ "Authorization: Bearer $TOKEN") ;;
      candor-post) r=$(BODY_FILE="$WORK/device.json" measure candor-post $CANDOR_PORT $CANDOR_PID /post/ "X-Bench: 1" "$WORK/post.lua") ;;
      candor-valid) r=$(BODY_FILE="$WORK/device.json" measure candor-valid $CANDOR_PORT $CANDOR_PID /validate/ "X-Bench: 1" "$WORK/post.lua") ;;
      candor-rl) r=$(measure candor-rl $CANDOR_PORT $CANDOR_PID /rl/) ;;
      candor-429) r=$(REFUSALS=1 measure candor-429 $CANDOR_PORT $CANDOR_PID /rl429/) ;;
      candor-rl-redis)
        # Redis round trips per request: the script calls Redis ran (EVALSHA, and EVAL or
        # SCRIPT LOAD after a NOSCRIPT), over the requests of the warm-up and the run.
        calls_before=$(redis_calls)
        r=$(measure candor-rl-redis $CANDOR_REDIS_PORT $CANDOR_REDIS_PID /rl/)
        calls_after=$(redis_calls)
        TRIPS="${TRIPS:-} $(awk -v a="$calls_after" -v b="$calls_before" -v n="$(cat "$WORK/requests.candor-rl-redis")" 'BEGIN { if (n > 0) printf "%.3f", (a - b) / n; else print "-" }')"
        ;;
      candor-rl-batched)
        calls_before=$(redis_calls)
        r=$(measure candor-rl-batched $CANDOR_BATCHED_PORT $CANDOR_BATCHED_PID /rl/)
        calls_after=$(redis_calls)
        BTRIPS="${BTRIPS:-} $(awk -v a="$calls_after" -v b="$calls_before" -v n="$(cat "$WORK/requests.candor-rl-batched")" 'BEGIN { if (n > 0) printf "%.4f", (a - b) / n; else print "-" }')"
        ;;
    esac
    RPS[$target]="${RPS[$target]:-} ${r% *}"
    CPU[$target]="${CPU[$target]:-} ${r#* }"
  done
done

median() { tr ' ' '\n' | grep -v '^$' | grep -v '^-$' | sort -g | awk '{a[NR]=$1} END { if (NR==0) print "-"; else print a[int((NR+1)/2)] }'; }

echo
echo "candor bench: $ROUNDS rounds x ${DURATION}s, wrk -t1 -c$CONNS, 1 KiB body, proxies on core $PROXY_CPU, load+upstream on core $LOAD_CPU (medians)"
echo
printf '| %-12s | %12s | %26s |\n' target "requests/s" "proxy CPU s per 100k req"
printf '| %-12s | %12s | %26s |\n' ------------ ------------ --------------------------
for t in $TARGETS; do
  printf '| %-12s | %12s | %26s |\n' "$t" "$(echo "${RPS[$t]}" | median)" "$(echo "${CPU[$t]}" | median)"
done
cn=$(echo "${CPU[candor]}" | median); ng=$(echo "${CPU[nginx]}" | median); hp=$(echo "${CPU[haproxy]}" | median)
cj=$(echo "${CPU[candor-jwt]}" | median)
cp=$(echo "${CPU[candor-post]}" | median); cv=$(echo "${CPU[candor-valid]}" | median)
cr=$(echo "${CPU[candor-rl]}" | median); cx=$(echo "${CPU[candor-429]}" | median)
crr=$(echo "${CPU[candor-rl-redis]}" | median); trips=$(echo "$TRIPS" | median)
crb=$(echo "${CPU[candor-rl-batched]}" | median); btrips=$(echo "$BTRIPS" | median)
cne=$(echo "${CPU[candor-noev]}" | median)
echo
awk -v c="$cn" -v n="$ng" -v h="$hp" -v j="$cj" -v p="$cp" -v v="$cv" -v r="$cr" -v x="$cx" 'BEGIN {
  printf "CPU per request: candor/nginx = %.2f, candor/HAProxy = %.2f (target for candor/nginx: <= 1.3)\n", c / n, c / h
  printf "CPU per request: candor JWT+scope route / candor plain route = %.2f (target: <= 1.5)\n", j / c
  printf "CPU per request: candor validating route (1 KiB JSON POST) / plain route, same POST = %.2f (target: <= 1.25); / plain GET = %.2f\n", v / p, v / c
  printf "CPU per request: candor rate-limited route (in memory) / plain route = %.2f (target: <= 1.1)\n", r / c
  printf "CPU per request: a 429 rate_limited answer / a proxied request on the plain route = %.2f (target: <= 0.3)\n", x / c }'
awk -v c="$cn" -v e="$cne" 'BEGIN {
  printf "CPU per request: candor plain route with the event log on / off = %.3f (target: <= 1.05)\n", c / e }'
awk -v c="$cn" -v r="$crr" -v t="$trips" 'BEGIN {
  printf "CPU per request: candor rate-limited route (Redis, exact mode) / plain route = %.2f; Redis round trips per request = %s (exact: 1)\n", r / c, t }'
awk -v c="$cn" -v r="$crb" -v t="$btrips" 'BEGIN {
  printf "CPU per request: candor rate-limited route (Redis, batched mode) / plain route = %.2f (target: <= 1.2); Redis round trips per request = %s (target: < 0.1)\n", r / c, t }'
if [ -n "$BASELINE" ]; then
  bl=$(echo "${CPU[baseline]}" | median)
  awk -v c="$cn" -v b="$bl" 'BEGIN { printf "CPU per request: candor plain route / baseline plain route = %.3f (target: <= 1.03)\n", c / b }'
fi
