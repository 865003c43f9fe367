#!/usr/bin/env bash
# Soak test: candor, HAProxy and nginx (equivalent timeouts) each under 5,000 idle
# keep-alive connections, 1,000 slowloris connections and 1,000 partial 1 MiB heads while
# normal traffic runs; prints peak RSS, RSS after, open fds and p99 latency per proxy, with
# candor's targets. Loopback only. See bench/soak.py for the phases.
#
# Usage: bench/soak.sh   (IDLE, SLOW, PARTIAL, LOAD_SECONDS override the sizes)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/install.sh
(systemctl stop nginx haproxy || service nginx stop || true; service haproxy stop || true) >/dev/null 2>&1 || true
cargo build --release --locked -q
CANDOR=$PWD/target/release/candor exec python3 bench/soak.py
