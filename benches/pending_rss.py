#!/usr/bin/env python3
"""Memory a server spends on connections that have not said hello.

Starts `secagg server` (TLS, enrolled clients only) and opens N TLS connections that read
the server's challenge and then say nothing. Prints the server's resident memory before and
after (from /proc), and the cost per connection.

    python3 benches/pending_rss.py [--bin target/release/secagg] [--clients 1000]
        [--params 100000000] [N ...]
"""
import argparse
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time


def rss_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} for process {pid}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(binary, work, clients, params, n):
    port = free_port()
    plan = subprocess.run([binary, "plan", "--clients", str(clients)],
                          check=True, capture_output=True, text=True).stdout
    p = {"neighbors": re.search(r"neighbors k = (\d+)", plan).group(1),
         "threshold": re.search(r"threshold t = (\d+)", plan).group(1)}
    server = subprocess.Popen(
        [binary, "server", "--listen", f"127.0.0.1:{port}", "--clients", str(clients),
         "--neighbors", str(p["neighbors"]), "--threshold", str(p["threshold"]),
         "--params", str(params), "--backend", "cpu", "--ca", f"{work}/ca/ca.pub",
         "--tls-cert", f"{work}/tls/server.pem", "--tls-key", f"{work}/tls/server.key",
         "--hello-timeout-ms", "60000", "--max-pending", str(max(n, 1)),
         "--deadline-ms", "120000", "--output", f"{work}/sum.npy"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        time.sleep(0.5)
        before = rss_kib(server.pid, "VmRSS")
        ctx = ssl.create_default_context(cafile=f"{work}/tls/ca.pem")
        held = []
        for _ in range(n):
            t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                                server_hostname="127.0.0.1")
            t.recv(64)  # the challenge; no hello follows
            held.append(t)
        time.sleep(1.0)
        after = rss_kib(server.pid, "VmRSS")
        print(f"n = {clients}, m = {params}: {n} silent TLS connections: server RSS "
              f"{before} KiB -> {after} KiB ({(after - before) / max(n, 1):.1f} KiB each)")
        for t in held:
            t.close()
    finally:
        server.kill()
        server.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/secagg")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--params", type=int, default=100_000_000)
    ap.add_argument("counts", type=int, nargs="*", default=[256, 1000])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        subprocess.run([a.bin, "tls", "new", "--out", f"{work}/tls", "--name", "127.0.0.1"],
                       check=True, capture_output=True)
        subprocess.run([a.bin, "ca", "new", "--out", f"{work}/ca"],
                       check=True, capture_output=True)
        for n in a.counts:
            measure(a.bin, work, a.clients, a.params, n)


if __name__ == "__main__":
    sys.exit(main())
