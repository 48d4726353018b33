"""Python socket benchmark, the same code three ways:

    sockshim run --allow-connect 127.0.0.1:* net_bench.wasm sockshim HOST PORT_SINK PORT_ECHO
    sockshim run --allow-connect 127.0.0.1:* net_bench.wasm builtin  HOST PORT_SINK PORT_ECHO
    python3 bench/python/net_bench.py native HOST PORT_SINK PORT_ECHO

`sockshim`: the stdlib's socket over sockshim; `builtin`: CPython's own C
`_socket` over wasi:sockets 0.2; `native`: CPython on the host. Peers:
bench/python/peers.py. Prints `bulk MB/s` (256 MiB by sendall in 64 KiB
calls) and `pingpong us` (mean round trip of 1 byte, 5,000 times)."""

try:
    import sockshim
    sockshim.install()
except ImportError:
    sockshim = None

import socket
import sys
import time


def main(mode, host, sink, echo):
    if mode == "builtin":
        raw = sockshim.builtin_socket_module()
        make = lambda: raw.socket(raw.AF_INET, raw.SOCK_STREAM)  # noqa: E731
    else:
        make = lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # noqa: E731
    s = make()
    s.connect((host, int(sink)))
    chunk = b"x" * 65536
    total = 256 << 20
    start = time.perf_counter()
    for _ in range(total // len(chunk)):
        s.sendall(chunk)
    s.close()
    took = time.perf_counter() - start
    print("bulk MB/s %.0f" % (total / took / 1e6))
    e = make()
    e.connect((host, int(echo)))
    e.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    n = 5000
    start = time.perf_counter()
    for _ in range(n):
        e.sendall(b"p")
        e.recv(1)
    took = time.perf_counter() - start
    print("pingpong us %.1f" % (took / n * 1e6))
    e.close()


if __name__ == "__main__":
    main(*sys.argv[1:5])
