#!/usr/bin/env python3
"""Where the sockshim guest's bulk send spends the CPU native code does not.

Runs `sockshim-bench --only bulk --one-cpu --system SYSTEM` under
`perf record` for native Rust std::net and for the sockshim guest, in
alternation, keeps the samples of the benchmark process (not its peers)
during the first workload, guest -> native sink (until the sink exits),
sorts them by whose code they are in, and prints the counts side by side
with sockshim's extra as a share of native's total:

    python3 bench/profile_bulk_send.py [--runs N] [--reps N] [--waits thread|reactor]

It needs perf(1) with the cpu-clock event, and builds the benchmark first
(`cargo build --release -p sockshim-bench`). The categories are by symbol
and shared object: "wasmtime" is wasmtime's runtime and the component
trampolines it compiles, "allocator" is malloc and free (in the sockshim
guest's send, the borrow scope's vector that wasmtime allocates and frees
on every call), "sockshim host" is sockshim-host's own functions; with
link-time optimisation part of sockshim's host functions is inlined into
wasmtime's `StaticHostFn::run`, so "wasmtime" holds a little of it.
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
    "kernel",
    "wasmtime",
    "allocator",
    "sockshim host",
    "guest wasm",
    "libc (system call wrappers)",
    "other",
]
ALLOCATOR = {"malloc", "_int_malloc", "_int_free", "cfree@GLIBC_2.2.5", "malloc_consolidate"}
SAMPLE = re.compile(r"\s*(\d+)/(\d+)\s+([\d.]+):\s+\S+\s+(.*)\((.*)\)\s*$")
FORK = re.compile(r"PERF_RECORD_FORK\((\d+):(\d+)\):\((\d+):(\d+)\)")


def category(symbol, dso):
    if "kernel" in dso:
        return "kernel"
    if symbol in ALLOCATOR or "raw_vec" in symbol:
        return "allocator"
    # sockshim-host's functions, and code generic over its types (their drop
    # glue); not wasmtime's generic code instantiated with sockshim's closures.
    if "sockshim_host" in symbol and "wasmtime::" not in symbol.split("sockshim_host")[0]:
        return "sockshim host"
    if "wasmtime" in symbol or "component-trampolines" in symbol or "array_to_wasm" in symbol:
        return "wasmtime"
    if symbol.startswith("wasm["):
        return "guest wasm"
    if dso.endswith("libc.so.6"):
        return "libc (system call wrappers)"
    return "other"


def profile(system, reps, waits, data):
    """Samples of the benchmark process during the bulk send, by category."""
    subprocess.run(
        ["perf", "record", "-q", "-F", "20000", "-o", data, "--", BENCH,
         "--only", "bulk", "--one-cpu", "--system", system, "--reps", str(reps),
         "--sockshim-waits", waits],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    script = subprocess.run(
        ["perf", "script", "-i", data, "--show-task-events",
         "-F", "pid,tid,time,ip,sym,dso"],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    # The benchmark is the first process to start a thread; its first child
    # process is the sink, whose exit ends the send workload.
    bench = sink = end = None
    for line in script:
        fork = FORK.search(line)
        if fork:
            child, child_tid, parent = fork.group(1), fork.group(2), fork.group(3)
            bench = bench or parent
            if sink is None and child == child_tid and child != bench:
                sink = child
        elif sink and f"PERF_RECORD_EXIT({sink}:{sink})" in line:
            end = float(line.split()[1].rstrip(":"))
            break
    if end is None:
        sys.exit(f"{system}: no sink process ended in the profile ({data})")
    counts = collections.Counter()
    for line in script:
        sample = SAMPLE.match(line)
        if not sample or "PERF_RECORD" in line:
            continue
        pid, _tid, time, symbol, dso = sample.groups()
        if pid == bench and float(time) <= end:
            counts[category(symbol.strip(), dso)] += 1
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="profiles of each system (default 3)")
    parser.add_argument("--reps", type=int, default=5, help="the benchmark's --reps (default 5)")
    parser.add_argument("--waits", default="thread", choices=["thread", "reactor"],
                        help="the benchmark's --sockshim-waits (default thread)")
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "sockshim-bench"],
                   cwd=ROOT, check=True)
    runs = {"native": [], "sockshim": []}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            for system in runs:
                print(f"· run {run + 1}/{args.runs}: {system}", file=sys.stderr)
                data = os.path.join(tmp, f"{system}-{run}.data")
                runs[system].append(profile(system, args.reps, args.waits, data))
                os.remove(data)
    print(f"bulk guest -> native sink, one CPU, sockets waiting on the {args.waits}, "
          f"{args.runs} profiles of {args.reps} repetitions (+ warm-up) per system; "
          "samples at 20 kHz in the benchmark process")
    totals = {system: [sum(counts.values()) for counts in runs[system]] for system in runs}

    def samples(system, categories, i):
        return sum(runs[system][i][c] for c in categories)

    def shares(categories):
        """sockshim's extra in `categories` ÷ native's total, per run."""
        return "  ".join(
            f"{(samples('sockshim', categories, i) - samples('native', categories, i)) / totals['native'][i]:+.3f}"
            for i in range(args.runs))

    head = "samples (mean of the runs)"
    width = len(head) + 2
    print(f"{head:{width}}{'native':>10}{'sockshim':>10}   sockshim's extra ÷ native's total, per run")
    for name in CATEGORIES + ["total"]:
        categories = CATEGORIES if name == "total" else [name]
        means = [sum(samples(system, categories, i) for i in range(args.runs)) // args.runs
                 for system in runs]
        print(f"{name:{width}}{means[0]:>10}{means[1]:>10}   {shares(categories)}")
    print("sockshim ÷ native, CPU in the send (per run): "
          + "  ".join(f"{totals['sockshim'][i] / totals['native'][i]:.3f}"
                      for i in range(args.runs)))
    print(f"sockshim's extra outside the kernel, ÷ native's total: {shares(CATEGORIES[1:])}")
    print(f"  of which wasmtime and the allocator:               {shares(CATEGORIES[1:3])}")
    print("(the kernel's share moves between the benchmark and its peer from run to run:")
    print(" on one CPU the loopback's receive work is charged to whichever process runs)")


if __name__ == "__main__":
    main()
