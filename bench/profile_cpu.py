#!/usr/bin/env python3
"""Where a workload's sockshim guest spends the CPU native code does not.

Runs `sockshim-bench --only GROUP --one-cpu --system SYSTEM` under
`perf record` for native Rust std::net (or another system, `--against`)
and for the sockshim guest, in alternation, keeps the samples of the
benchmark process (not its peers) while the chosen workload's peer process
lives, sorts them by whose code they are in, and prints the counts side by
side with sockshim's extra as a share of the other system's total; with
`--symbols N`, also the N functions where sockshim's samples exceed the
other's most:

    python3 bench/profile_cpu.py [--workload send|receive|server|pingpong|manyconn]
                                 [--runs N] [--reps N] [--waits thread|reactor]
                                 [--system sockshim|sockshim_async]
                                 [--against native|wasi_sockets_p3|...] [--symbols N]

The workloads: `send` is the bulk guest -> native sink (the default),
`receive` native source -> guest (the guest connects), `server` native
client -> guest server, `pingpong` the 1-byte round trips. The benchmark
starts one peer process per workload, which serves its warm-up and every
repetition; the samples from its start to its exit are the workload's.

It needs perf(1) with the cpu-clock event, and builds the benchmark first
(`cargo build --release -p sockshim-bench`). The categories are by symbol
and shared object:
- "kernel: waits" is the scheduler, epoll, futexes and timers: the kernel's
  part in waiting and waking up; "kernel: the rest" is the socket and TCP
  work;
- "wasmtime" is wasmtime's runtime and the component trampolines it
  compiles; with link-time optimisation part of sockshim's host functions
  is inlined into wasmtime's `StaticHostFn::run`, so it holds a little of
  sockshim's code;
- "allocator" is malloc and free (in the sockshim guest's calls, the borrow
  scope's vector that wasmtime allocates and frees on every call);
- "sockshim host" is sockshim-host's own functions; "tokio" the runtime's
  scheduler and reactor; "guest wasm" the plugin's compiled code.
"""

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "target", "release", "sockshim-bench")
CATEGORIES = [
    "kernel: waits",
    "kernel: the rest",
    "wasmtime",
    "allocator",
    "sockshim host",
    "tokio",
    "guest wasm",
    "libc (system call wrappers)",
    "other",
]
ALLOCATOR = {"malloc", "_int_malloc", "_int_free", "cfree@GLIBC_2.2.5", "malloc_consolidate"}
KERNEL_WAITS = re.compile(
    r"schedule|finish_task_switch|__switch_to|switch_mm|pick_next|enqueue_|dequeue_|"
    r"update_curr|try_to_wake_up|ttwu|futex|epoll|^ep_|hrtimer|wait_woken|woken_wake")
# Each workload: the group `--only` runs it in, and which of the processes
# the benchmark starts in that group is its peer (0 for the first).
WORKLOADS = {
    "send": ("bulk", 0, "bulk guest -> native sink"),
    "receive": ("bulk", 1, "bulk native source -> guest (the guest connects)"),
    "server": ("bulk", 3, "bulk native client -> guest server"),
    "pingpong": ("pingpong", 0, "1-byte ping-pong"),
    # The peer that drives the timed runs (the warm-up has a peer of its own).
    "manyconn": ("manyconn", 0, "many connections echoed by one single-threaded server"),
}
SAMPLE = re.compile(r"\s*(\d+)/(\d+)\s+([\d.]+):\s+\S+\s+(.*)\((.*)\)\s*$")
FORK = re.compile(r"PERF_RECORD_FORK\((\d+):(\d+)\):\((\d+):(\d+)\)")


def category(symbol, dso):
    if "kernel" in dso:
        return "kernel: waits" if KERNEL_WAITS.search(symbol) else "kernel: the rest"
    if symbol in ALLOCATOR or "raw_vec" in symbol:
        return "allocator"
    # sockshim-host's functions, and code generic over its types (their drop
    # glue); not wasmtime's generic code instantiated with sockshim's closures.
    if "sockshim_host" in symbol and "wasmtime::" not in symbol.split("sockshim_host")[0]:
        return "sockshim host"
    if "wasmtime" in symbol or "component-trampolines" in symbol or "array_to_wasm" in symbol:
        return "wasmtime"
    if "tokio::" in symbol:
        return "tokio"
    if symbol.startswith("wasm["):
        return "guest wasm"
    if dso.endswith("libc.so.6"):
        return "libc (system call wrappers)"
    return "other"


def event_time(line):
    return float(line.split()[1].rstrip(":"))


def profile(workload, system, reps, waits, data):
    """Samples of the benchmark process while the workload's peer lives, by
    category and by function."""
    group, index, _ = WORKLOADS[workload]
    subprocess.run(
        ["perf", "record", "-q", "-F", "20000", "-o", data, "--", BENCH,
         "--only", group, "--one-cpu", "--system", system, "--reps", str(reps),
         "--sockshim-waits", waits],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    script = subprocess.run(
        ["perf", "script", "-i", data, "--show-task-events",
         "-F", "pid,tid,time,ip,sym,dso"],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    # The benchmark is the first process to start a thread; the processes it
    # starts (a new pid whose first thread is itself) are its peers.
    bench = peer = start = end = None
    peers = 0
    for line in script:
        fork = FORK.search(line)
        if fork:
            child, child_tid, parent = fork.group(1), fork.group(2), fork.group(3)
            bench = bench or parent
            if peer is None and child == child_tid and parent == bench:
                if peers == index:
                    peer, start = child, event_time(line)
                peers += 1
        elif peer and f"PERF_RECORD_EXIT({peer}:{peer})" in line:
            end = event_time(line)
            break
    if end is None:
        sys.exit(f"{system}: the {workload} workload's peer did not end in the profile ({data})")
    counts = collections.Counter()
    functions = collections.Counter()
    for line in script:
        sample = SAMPLE.match(line)
        if not sample or "PERF_RECORD" in line:
            continue
        pid, _tid, time, symbol, dso = sample.groups()
        if pid == bench and start <= float(time) <= end:
            counts[category(symbol.strip(), dso)] += 1
            functions[symbol.strip()] += 1
    return counts, functions


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="send", choices=list(WORKLOADS),
                        help="which workload to profile (default send)")
    parser.add_argument("--runs", type=int, default=3, help="profiles of each system (default 3)")
    parser.add_argument("--reps", type=int, default=5, help="the benchmark's --reps (default 5)")
    parser.add_argument("--waits", default="thread", choices=["thread", "reactor"],
                        help="the benchmark's --sockshim-waits (default thread)")
    parser.add_argument("--system", default="sockshim",
                        help="the sockshim system to profile, by its --system key (default "
                             "sockshim; sockshim_async for the manyconn workload's wstd server)")
    parser.add_argument("--against", default="native",
                        help="the system to compare with, by its --system key (default native)")
    parser.add_argument("--symbols", type=int, default=0,
                        help="also list the N functions with the most extra samples")
    args = parser.parse_args()
    base, ours = args.against, args.system
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "sockshim-bench"],
                   cwd=ROOT, check=True)
    runs = {base: [], ours: []}
    functions = {base: collections.Counter(), ours: collections.Counter()}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            for system in runs:
                print(f"· run {run + 1}/{args.runs}: {system}", file=sys.stderr)
                data = os.path.join(tmp, f"{system}-{run}.data")
                counts, by_function = profile(args.workload, system, args.reps, args.waits, data)
                runs[system].append(counts)
                functions[system].update(by_function)
                os.remove(data)
    print(f"{WORKLOADS[args.workload][2]}, one CPU, sockets waiting on the {args.waits}, "
          f"{args.runs} profiles of {args.reps} repetitions (+ warm-up) per system; "
          "samples at 20 kHz in the benchmark process")
    totals = {system: [sum(counts.values()) for counts in runs[system]] for system in runs}

    def samples(system, categories, i):
        return sum(runs[system][i][c] for c in categories)

    def shares(categories):
        """sockshim's extra in `categories` ÷ the other's total, per run."""
        return "  ".join(
            f"{(samples(ours, categories, i) - samples(base, categories, i)) / totals[base][i]:+.3f}"
            for i in range(args.runs))

    head = "samples (mean of the runs)"
    width = len(head) + 6
    print(f"{head:{width}}{base:>16}{ours:>16}   {ours}'s extra ÷ {base}'s total, per run")
    for name in CATEGORIES + ["total"]:
        categories = CATEGORIES if name == "total" else [name]
        means = [sum(samples(system, categories, i) for i in range(args.runs)) // args.runs
                 for system in runs]
        print(f"{name:{width}}{means[0]:>16}{means[1]:>16}   {shares(categories)}")
    print(f"{ours} ÷ {base}, CPU in the workload (per run): "
          + "  ".join(f"{totals[ours][i] / totals[base][i]:.3f}"
                      for i in range(args.runs)))
    outside_kernel = [c for c in CATEGORIES if not c.startswith("kernel")]
    print(f"{ours}'s extra outside the kernel, ÷ {base}'s total: {shares(outside_kernel)}")
    print(f"  of which wasmtime and the allocator:               "
          f"{shares(['wasmtime', 'allocator'])}")
    print("(on one CPU the loopback's receive work is charged to whichever process runs,")
    print(" so the kernel's share moves between the benchmark and its peer from run to run)")
    if args.symbols:
        extra = functions[ours].copy()
        extra.subtract(functions[base])
        print(f"functions with the most extra samples (sum of the runs, {ours} - {base}):")
        for name, count in extra.most_common(args.symbols):
            print(f"  {count:>+8}  {functions[ours][name]:>8}  {name}")


if __name__ == "__main__":
    main()
