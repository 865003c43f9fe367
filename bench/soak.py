#!/usr/bin/env python3
"""Soak test: each proxy under connection-level attack while normal traffic runs.

For candor, HAProxy and nginx in turn (each configured with equivalent timeouts: 10 s for a
request head, 60 s keep-alive), on loopback only:

1. baseline: RSS, open fds and the p99 latency of normal traffic (wrk, keep-alive);
2. 5,000 idle keep-alive connections (each made one request): RSS again, giving the memory
   per idle connection;
3. add 1,000 slowloris connections (a head that never ends, one byte every 5 s) and 1,000
   partial 1 MiB heads (a header value sent in 64 KiB pieces, never finished); while they
   hold, the p99 of normal traffic again, and the peak RSS;
4. the attackers leave: RSS and fds after 5 s.

Printed as one markdown table per run, with candor's targets: memory per idle keep-alive
connection <= 16 KiB, RSS back within 10 % of baseline after the attack, p99 under attack
<= 1.5x without. Run through bench/soak.sh, which installs what is missing.
"""

import asyncio
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

IDLE = int(os.environ.get("IDLE", 5000))
SLOW = int(os.environ.get("SLOW", 1000))
PARTIAL = int(os.environ.get("PARTIAL", 1000))
LOAD_SECONDS = int(os.environ.get("LOAD_SECONDS", 10))
CANDOR = os.environ["CANDOR"]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_up(port):
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(16).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"port {port} did not come up")


def p99_ms(port):
    """The p99 latency of wrk -t1 -c32 (keep-alive) against the port, in ms."""
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{LOAD_SECONDS}s", "--latency",
         f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True, timeout=LOAD_SECONDS + 30).stdout
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


async def idle_conn(port, held):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    await r.readexactly(length)
    held.append(w)


async def slowloris(port, held, stop):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: ")
    held.append(w)
    while not stop.is_set():
        await asyncio.sleep(5)
        if w.is_closing():
            return
        w.write(b"a")


async def partial_head(port, held, stop):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    held.append(w)
    w.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
    sent = 0
    while sent < (1 << 20) and not stop.is_set() and not w.is_closing():
        w.write(b"a" * 65536)
        sent += 65536
        try:
            await asyncio.wait_for(w.drain(), 1)
        except (asyncio.TimeoutError, ConnectionError):
            return
        await asyncio.sleep(0.05)


async def attack(port, pid):
    """Runs the phases against one proxy; returns the measurements."""
    loop = asyncio.get_running_loop()
    # The baseline is taken warm: after a run of normal traffic (which also fills the
    # upstream connection pool).
    result = {"p99_base": await loop.run_in_executor(None, p99_ms, port)}
    await asyncio.sleep(1)
    result.update(rss_base=rss_kib(pid), fds_base=fds(pid))
    held = []
    sem = asyncio.Semaphore(200)

    async def limited(coro):
        async with sem:
            try:
                await asyncio.wait_for(coro, 30)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
                pass

    await asyncio.gather(*(limited(idle_conn(port, held)) for _ in range(IDLE)))
    await asyncio.sleep(2)
    result["idle_open"] = len(held)
    result["rss_idle"] = rss_kib(pid)
    stop = asyncio.Event()
    attackers = [asyncio.ensure_future(slowloris(port, held, stop)) for _ in range(SLOW)]
    attackers += [asyncio.ensure_future(partial_head(port, held, stop)) for _ in range(PARTIAL)]
    await asyncio.sleep(3)
    peak = [rss_kib(pid)]

    async def sample():
        while not stop.is_set():
            peak.append(rss_kib(pid))
            await asyncio.sleep(0.5)

    sampler = asyncio.ensure_future(sample())
    result["p99_attack"] = await loop.run_in_executor(None, p99_ms, port)
    result["fds_attack"] = fds(pid)
    stop.set()
    await sampler
    result["rss_peak"] = max(peak)
    for a in attackers:
        a.cancel()
    await asyncio.gather(*attackers, return_exceptions=True)
    for w in held:
        w.close()
    # Normal traffic goes on after the attackers leave (the allocator gives memory back as
    # it works); RSS is read once it has run for a while.
    await loop.run_in_executor(None, p99_ms, port)
    await asyncio.sleep(1)
    result["rss_after"] = rss_kib(pid)
    result["fds_after"] = fds(pid)
    # And once normal traffic has run for two more rounds: what stays for good (the pool
    # back to the connections normal traffic needs, the allocator's decay done).
    for _ in range(2):
        await loop.run_in_executor(None, p99_ms, port)
    await asyncio.sleep(1)
    result["rss_settled"] = rss_kib(pid)
    return result


def configs(work, up, ports):
    one_k = os.path.join(work, "1k.txt")
    with open(one_k, "w") as f:
        f.write("x" * 1024)
    files = {}
    files["upstream.conf"] = f"""worker_processes 1; daemon off; master_process off;
pid {work}/upstream.pid; error_log {work}/upstream.err warn;
events {{ worker_connections 20000; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{up} reuseport;
    location / {{ root {work}; try_files /1k.txt =404; default_type text/plain; }} }} }}
"""
    files["nginx.conf"] = f"""worker_processes 1; daemon off; master_process off;
pid {work}/nginx.pid; error_log {work}/nginx.err crit;
worker_rlimit_nofile 20000;
events {{ worker_connections 19000; }}
http {{ access_log off; keepalive_requests 1000000;
  client_header_timeout 10s; keepalive_timeout 60s;
  large_client_header_buffers 4 32k;
  upstream backend {{ server 127.0.0.1:{up}; keepalive 128; }}
  server {{ listen 127.0.0.1:{ports['nginx']};
    location / {{ proxy_pass http://backend; proxy_http_version 1.1;
      proxy_set_header Connection ""; }} }} }}
"""
    files["haproxy.cfg"] = f"""global
  nbthread 1
  maxconn 9000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-request 10s
  timeout http-keep-alive 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:{ports['haproxy']}
  default_backend be
backend be
  server up 127.0.0.1:{up}
"""
    files["candor.toml"] = f"""[server]
listen = "127.0.0.1:{ports['candor']}"
admin_listen = "127.0.0.1:{ports['candor_admin']}"
data_dir = "{work}/candor-data"
workers = 1

[timeouts]
request_head = "10s"
keepalive = "60s"

[log]
requests = false

[[routes]]
name = "plain"
path = "/"
upstream = "http://127.0.0.1:{up}"
"""
    for name, text in files.items():
        with open(os.path.join(work, name), "w") as f:
            f.write(text)


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < IDLE + SLOW + PARTIAL + 500:
        raise SystemExit(f"the file-descriptor limit ({hard}) is too low for the attack")
    work = tempfile.mkdtemp(prefix="candor-soak.")
    up = free_port()
    ports = {"candor": free_port(), "candor_admin": free_port(), "haproxy": free_port(),
             "nginx": free_port()}
    configs(work, up, ports)
    procs = []
    try:
        procs.append(subprocess.Popen(["taskset", "-c", "1", NGINX, "-c", f"{work}/upstream.conf"]))
        wait_up(up)
        commands = {
            # The serving process itself (under the supervisor, the pid would be the
            # supervisor's, which holds no connection).
            "candor": ["taskset", "-c", "0", CANDOR, "serve", "--no-supervisor", "--config",
                       f"{work}/candor.toml"],
            "haproxy": ["taskset", "-c", "0", HAPROXY, "-f", f"{work}/haproxy.cfg", "-db"],
            "nginx": ["taskset", "-c", "0", NGINX, "-c", f"{work}/nginx.conf"],
        }
        results = {}
        for name in os.environ.get("ONLY", "candor haproxy nginx").split():
            env = dict(os.environ, CANDOR_LOG="warn")
            p = subprocess.Popen(commands[name], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_up(ports[name])
            results[name] = asyncio.run(attack(ports[name], p.pid))
            p.terminate()
            p.wait()
        report(results)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        time.sleep(0.3)
        shutil.rmtree(work, ignore_errors=True)


def report(results):
    print()
    print(f"candor soak: {IDLE} idle keep-alive, {SLOW} slowloris, {PARTIAL} partial 1 MiB heads; "
          f"normal traffic wrk -t1 -c32 {LOAD_SECONDS}s; proxies on core 0, load on core 1")
    print()
    print("| proxy | RSS base | RSS with idle | KiB per idle conn | RSS peak | RSS after | RSS settled | fds base/attack/after | p99 base | p99 attack | p99 ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        per_idle = (r["rss_idle"] - r["rss_base"]) / max(r["idle_open"], 1)
        print(f"| {name} | {r['rss_base'] / 1024:.1f} MiB | {r['rss_idle'] / 1024:.1f} MiB | {per_idle:.1f} "
              f"| {r['rss_peak'] / 1024:.1f} MiB | {r['rss_after'] / 1024:.1f} MiB "
              f"| {r['rss_settled'] / 1024:.1f} MiB "
              f"| {r['fds_base']}/{r['fds_attack']}/{r['fds_after']} | {r['p99_base']:.2f} ms "
              f"| {r['p99_attack']:.2f} ms | {r['p99_attack'] / r['p99_base']:.2f} |")
    if "candor" not in results:
        return
    c = results["candor"]
    per_idle = (c["rss_idle"] - c["rss_base"]) / max(c["idle_open"], 1)
    after = c["rss_after"] / c["rss_base"] - 1
    settled = c["rss_settled"] / c["rss_base"] - 1
    print()
    print(f"candor: {per_idle:.1f} KiB per idle keep-alive connection (target <= 16), "
          f"RSS after the attack {after * 100:+.1f} % of baseline (target within 10 %), "
          f"settled {settled * 100:+.1f} %, "
          f"p99 under attack {c['p99_attack'] / c['p99_base']:.2f}x (target <= 1.5); "
          f"{c['idle_open']} of {IDLE} idle connections were held")


if __name__ == "__main__":
    sys.exit(main())
