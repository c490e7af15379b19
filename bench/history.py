#!/usr/bin/env python3
"""What history costs a chatgate node: memory per kept line, and the time a
`/history` answer takes.

Starts the given chatgate binary on loopback, has one user in each of ROOMS
rooms say LINES lines of exactly 64 bytes (as members receive them, line end
excluded), and reports the server's resident memory growth divided by the
lines kept. With --one-per-burst each line is sent after the previous one
came back, so that each is a burst of its own (the costliest case: every
burst carries its time and place); otherwise each user sends all its lines
in one write. Then times `/history 20` and `/history 1000` round trips from a
member of one of those rooms and prints their median and 99th percentile.

    python3 bench/history.py target/release/chatgate [extra chatgate flags]

Only the standard library is used; everything talks to 127.0.0.1.
"""

import os
import socket
import statistics
import subprocess
import sys
import time

ROOMS = 100
LINES = 1000
LINE_BYTES = 64
ROUND_TRIPS = 500


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def read_until(conn, buf, marker):
    """Reads until `marker` is in the received bytes; returns what is left after it."""
    while marker not in buf:
        chunk = conn.recv(1 << 16)
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk
    return buf[buf.index(marker) + len(marker):]


def join(port, room, user):
    conn = socket.create_connection(("127.0.0.1", port))
    conn.sendall(f"JOIN {room} {user}\n".encode())
    left = read_until(conn, b"", f"{user} has joined\r\n".encode())
    return conn, left


def main():
    args = sys.argv[1:]
    one_per_burst = "--one-per-burst" in args
    args = [a for a in args if a != "--one-per-burst"]
    binary, extra = args[0], args[1:]
    server = subprocess.Popen(
        [binary, "--tcp", "127.0.0.1:0", "--tls", "off", "--http", "off", "--https", "off",
         "--rate", "0", "--history", str(LINES), "--max-queue-bytes", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(server.stdout.readline().rsplit(":", 1)[1])
        users = [join(port, f"r{i:03}", f"u{i:03}") for i in range(ROOMS)]
        before = rss_kib(server.pid)
        for i, (conn, left) in enumerate(users):
            # "u000: " plus text: exactly LINE_BYTES bytes as received.
            prefix = f"u{i:03}: "
            text = "x" * (LINE_BYTES - len(prefix) - 6)
            if one_per_burst:
                for n in range(LINES):
                    conn.sendall(f"{n:05} {text}\n".encode())
                    left = read_until(conn, left, f"{prefix}{n:05} {text}\r\n".encode())
            else:
                conn.sendall("".join(f"{n:05} {text}\n" for n in range(LINES)).encode())
                read_until(conn, left, f"{prefix}{LINES - 1:05} ".encode())
        # Let the allocator settle; the figure is what the process holds.
        time.sleep(0.5)
        after = rss_kib(server.pid)
        kept = ROOMS * LINES
        print(f"rss before {before} KiB, after {after} KiB: "
              f"{(after - before) * 1024 / kept:.1f} bytes per kept {LINE_BYTES}-byte line")

        conn, _ = users[0]
        for asked in (20, 1000):
            times = []
            for _ in range(ROUND_TRIPS):
                start = time.perf_counter()
                conn.sendall(f"/history {asked}\n".encode())
                read_until(conn, b"", b"*** end of history\r\n")
                times.append((time.perf_counter() - start) * 1e6)
            times.sort()
            p99 = times[int(len(times) * 0.99) - 1]
            print(f"/history {asked}: p50 {statistics.median(times):.0f} us, p99 {p99:.0f} us "
                  f"({ROUND_TRIPS} round trips)")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
