"""The Python rows of `sockshim-bench --only python`: the same code three ways.

    net_bench.py MODE WORKLOAD HOST GATE PEER AMOUNT

MODE is `sockshim` (the stdlib's socket over sockshim, in a plugin),
`builtin` (CPython's own C `_socket` over wasi:sockets 0.2, in the same
plugin) or `native` (CPython on the host). WORKLOAD is `bulk` (AMOUNT
bytes by sendall in 64 KiB calls to a sink on port PEER, which answers the
count it read as 8 bytes little-endian once the stream ends), `pingpong`
(AMOUNT round trips of 1 byte with an echo on port PEER) or `start` (prints
`ready` and exits: the plugin's start time).

The benchmark listens on port GATE: the script sends a line there just
before the workload and one just after, and waits for a byte back each time,
so that the benchmark reads its clock and CPU time at exactly those points
and the interpreter's start is not measured with the workload. CPython on
the host adds its own CPU time (user and system seconds) to the lines; in a
plugin the benchmark's getrusage is the plugin's. GATE `-` runs without a
gate and prints the figures instead.

The peers are the benchmark's: `sockshim-bench peer sink` and `peer echo`
each print `port N` and serve one connection after another."""

import sys
import time

if sys.argv[1:2] != ["native"]:
    import sockshim

    sockshim.install()

import socket  # noqa: E402

CHUNK = 65536


def cpu_line(mode, word):
    if mode != "native":
        return word + "\n"
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return "%s %.6f %.6f\n" % (word, usage.ru_utime, usage.ru_stime)


def bulk(make, host, port, total, shut_wr):
    s = make()
    s.connect((host, port))
    chunk = b"x" * CHUNK
    left = total
    while left > 0:
        s.sendall(chunk if left >= CHUNK else chunk[:left])
        left -= CHUNK
    s.shutdown(shut_wr)
    count = b""
    while len(count) < 8:
        more = s.recv(8 - len(count))
        if not more:
            break
        count += more
    s.close()
    if int.from_bytes(count, "little") != total:
        raise SystemExit("the sink counted %r, not %d" % (count, total))


def pingpong(make, host, port, n, _):
    e = make()
    e.connect((host, port))
    try:
        e.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # wasi:sockets 0.2 has no TCP_NODELAY; the echo sets it
    for _ in range(n):
        e.sendall(b"p")
        if e.recv(1) != b"p":
            raise SystemExit("the echo did not answer b'p'")
    e.close()


def main(mode, workload, host=None, gate="-", peer=None, amount=None):
    if workload == "start":
        print("ready")
        return
    if mode == "builtin":
        raw = sockshim.builtin_socket_module()
        make = lambda: raw.socket(raw.AF_INET, raw.SOCK_STREAM)  # noqa: E731
        # WASI's numbering: its SHUT_WR is 2, where sockshim's is Linux's 1.
        shut_wr = raw.SHUT_WR
    else:
        make = lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # noqa: E731
        shut_wr = socket.SHUT_WR
    run = {"bulk": bulk, "pingpong": pingpong}[workload]
    g = None
    if gate != "-":
        g = make()
        g.connect((host, int(gate)))

    def mark(word):
        g.sendall(cpu_line(mode, word).encode())
        if g.recv(1) != b"k":
            raise SystemExit("the gate did not answer")

    if g:
        mark("begin")
    start = time.perf_counter()
    run(make, host, int(peer), int(amount), shut_wr)
    took = time.perf_counter() - start
    if g:
        mark("end")
        g.close()
    elif workload == "bulk":
        print("bulk MB/s %.0f" % (int(amount) / took / 1e6))
    else:
        print("pingpong us %.1f" % (took / int(amount) * 1e6))


if __name__ == "__main__":
    main(*sys.argv[1:7])
