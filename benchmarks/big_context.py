"""Big contexts (1 and 2 GiB) through the default settings: load speed and peak memory.

Each load runs in a fresh interpreter, so the host's peak resident memory (VmHWM) is
that load's alone and not whatever the benchmark held before. The sandbox is sized
automatically (no mem_limit), as a user gets it. Run it by itself:

    python -m benchmarks.big_context [--sizes-mb 1024 2048] [--runtimes runc]

or as the `big_context_load` step of `python -m benchmarks`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

MiB = 1 << 20

# The child: build the text, size and start the sandbox, time load_context (which
# encodes and sends), check the value arrived, report peaks. Prints one JSON line.
_CHILD = r"""
import json, sys, time
from rlm_sandbox import DockerSandbox, SandboxConfig

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

def cgroup_cpu(container_id):
    # CPU-seconds the container used and times it was throttled (cgroup v1; None under v2).
    try:
        used = int(open(f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage").read()) / 1e9
        stat = dict(line.split() for line in open(f"/sys/fs/cgroup/cpu/docker/{container_id}/cpu.stat"))
        return used, int(stat["nr_throttled"])
    except OSError:
        return None

size_mb, runtime = int(sys.argv[1]), sys.argv[2]
baseline = hwm()
line = "lorem ipsum dolor sit amet, consectetur adipiscing elit 0123456789\n"
text = line * (size_mb * (1 << 20) // len(line))
built = hwm()
sandbox = DockerSandbox(SandboxConfig(runtime=runtime)).size_for(text).start()
try:
    cpu_before = cgroup_cpu(sandbox.container_id)
    started = time.perf_counter()
    sandbox.load_context(text)
    seconds = time.perf_counter() - started
    cpu_after = cgroup_cpu(sandbox.container_id)
    cpu = None if cpu_before is None or cpu_after is None else [b - a for a, b in zip(cpu_before, cpu_after)]
    arrived = sandbox.execute("print(len(context))").stdout.strip()
    container_peak = None
    try:
        path = f"/sys/fs/cgroup/memory/docker/{sandbox.container_id}/memory.max_usage_in_bytes"
        container_peak = int(open(path).read())
    except OSError:
        pass  # cgroup v2 (under gVisor the cgroup holds the whole Sentry)
    limit = sandbox.memory_limit_bytes
finally:
    sandbox.close()
if arrived != str(len(text)):
    raise SystemExit(f"the context arrived as {arrived} characters, not {len(text)}")
print(json.dumps({
    "bytes": len(text), "seconds": seconds, "baseline": baseline, "built": built, "peak": hwm(),
    "container_peak": container_peak, "limit": limit, "cpu": cpu,
}))
"""


def big_context_load(runtimes: list[str], sizes_mb: list[int]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for size in sizes_mb:
        for runtime in runtimes:
            done = subprocess.run(
                [sys.executable, "-c", _CHILD, str(size), runtime], capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                results[f"{runtime} {size} MB"] = {"error": done.stderr.strip()[-500:]}
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            results[f"{runtime} {size} MB"] = {
                "seconds": round(row["seconds"], 2),
                "mb_per_s": round(row["bytes"] / MiB / row["seconds"], 1),
                "sandbox_limit_mb": round(row["limit"] / MiB),
                # Beyond the interpreter's own start-up: the context itself plus what loading it added.
                "host_peak_mb": round((row["peak"] - row["baseline"]) / MiB),
                "host_peak_over_context": round((row["peak"] - row["baseline"]) / row["bytes"], 2),
                "container_peak_mb": None if row["container_peak"] is None else round(row["container_peak"] / MiB),
                # The sandbox is capped at 1 CPU; its page faults count against that cap.
                "container_cpu_s": None if row["cpu"] is None else round(row["cpu"][0], 2),
                "container_throttled": None if row["cpu"] is None else row["cpu"][1],
            }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.big_context", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--runtimes", nargs="+", default=["runc"])
    args = parser.parse_args(argv)
    print(json.dumps(big_context_load(args.runtimes, args.sizes_mb), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
