# Sourced by bench/run.sh and bench/ab.sh: what both measure through.

# Prints N free loopback ports, bound at the same time so that none is handed out twice
# (one at a time, the kernel may give the same port again once it is closed).
free_ports() {
  python3 -c '
import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in held])' "$1"
}

# Writes $WORK/upstream.conf: one nginx worker on 127.0.0.1:$UP_PORT serving a fixed 1 KiB
# body ($WORK/1k.txt) to GETs, and the same 1 KiB to POSTs under /post/ and /validate/
# (their bodies read and discarded).
write_upstream() {
  head -c 1024 /dev/zero | tr '\0' 'x' > "$WORK/1k.txt"
  local one_k
  one_k=$(cat "$WORK/1k.txt")
  cat > "$WORK/upstream.conf" <<CONF
worker_processes 1;
daemon off;
master_process off;
pid $WORK/upstream.pid;
error_log $WORK/upstream.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$UP_PORT reuseport;
    location / { root $WORK; try_files /1k.txt =404; default_type text/plain; }
    location /post/ { default_type text/plain; return 200 "$one_k"; }
    location /validate/ { default_type text/plain; return 200 "$one_k"; }
  }
}
CONF
}
