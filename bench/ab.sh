#!/usr/bin/env bash
# Two candors measured at the same time, for a difference of a few per cent that
# bench/run.sh (targets one after another) cannot see on a noisy machine.
#
# Both candors (one worker each) share core 0 and are loaded at once by two wrk processes on
# core 1, through the same upstream (nginx serving 1 KiB, core 1): whatever else the host
# does slows both alike. Each round reports each candor's CPU per request (user + system
# time of its process, from /proc) and the ratio B/A; the median of the ratios is the
# result. An A/A run (the same binary and configuration twice) reads 1.00 ± 0.01.
#
# Usage: bench/ab.sh [rounds, default 10] [seconds per round, default 5]
#   default: B = the plain route with the API event log on, A = the same with it off
#            (issue 13's measure: on/off ≤ 1.05)
#   BIN_A=/path BIN_B=/path: two binaries, both with the event log on (old vs new)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-10}
SECS=${2:-5}

. bench/install.sh
. bench/upstream.sh
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ -z "${BIN_A:-}" ] || [ -z "${BIN_B:-}" ]; then
  cargo build --release --locked -q
fi
CANDOR=${CARGO_TARGET_DIR:-$PWD/target}/release/candor
if [ -n "${BIN_A:-}" ] && [ -n "${BIN_B:-}" ]; then
  MODE=binaries
else
  MODE=events
  BIN_A=$CANDOR
  BIN_B=$CANDOR
fi

WORK=$(mktemp -d /tmp/candor-ab.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  rm -rf "$WORK"
}
trap cleanup EXIT

read -r UP_PORT PORT_A PORT_B < <(free_ports 3)

write_upstream
taskset -c 1 "$NGINX" -c "$WORK/upstream.conf" & PIDS+=($!)

for side in a b; do
  port=$PORT_A
  [ "$side" = b ] && port=$PORT_B
  mkdir -p "$WORK/$side"
  cat > "$WORK/$side/candor.toml" <<CONF
[server]
listen = "127.0.0.1:$port"
workers = 1

[log]
requests = false

[[routes]]
name = "plain"
path = "/{*rest}"
upstream = "http://127.0.0.1:$UP_PORT"
CONF
done
if [ "$MODE" = events ]; then
  printf '\n[events]\nenabled = false\n' >> "$WORK/a/candor.toml"
fi
(cd "$WORK/a" && CANDOR_LOG=warn exec taskset -c 0 "$BIN_A" serve --no-supervisor --config candor.toml >/dev/null 2>&1) & A=$!; PIDS+=($A)
(cd "$WORK/b" && CANDOR_LOG=warn exec taskset -c 0 "$BIN_B" serve --no-supervisor --config candor.toml >/dev/null 2>&1) & B=$!; PIDS+=($B)
for p in "$PORT_A" "$PORT_B"; do
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done
done

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
load() { # both at once, for $1 seconds
  taskset -c 1 wrk -t1 -c32 -d"$1"s "http://127.0.0.1:$PORT_A/ab" > "$WORK/wrk.a" &
  local w=$!
  taskset -c 1 wrk -t1 -c32 -d"$1"s "http://127.0.0.1:$PORT_B/ab" > "$WORK/wrk.b"
  wait "$w"
}
load 2 # warm-up
if [ "$MODE" = events ]; then
  echo "candor A/B, both loaded at once ($ROUNDS rounds x ${SECS}s): A = event log off, B = on"
else
  echo "candor A/B, both loaded at once ($ROUNDS rounds x ${SECS}s): A = $BIN_A, B = $BIN_B"
fi
echo "CPU ms per 1,000 requests"
for i in $(seq "$ROUNDS"); do
  a0=$(cpu "$A"); b0=$(cpu "$B")
  load "$SECS"
  a1=$(cpu "$A"); b1=$(cpu "$B")
  na=$(awk '/requests in/ {print $1}' "$WORK/wrk.a")
  nb=$(awk '/requests in/ {print $1}' "$WORK/wrk.b")
  # /proc counts clock ticks of 10 ms.
  echo "$i $((a1 - a0)) $na $((b1 - b0)) $nb" | awk '{a = $2 * 10 / $3 * 1000; b = $4 * 10 / $5 * 1000; printf "round %2d  A %.3f  B %.3f  B/A %.3f\n", $1, a, b, b / a}'
done | tee "$WORK/rounds"
awk '{print $NF}' "$WORK/rounds" | sort -n | awk '{v[NR] = $1} END {
  m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
  printf "B/A median %.3f (rounds from %.3f to %.3f)\n", m, v[1], v[NR] }'
