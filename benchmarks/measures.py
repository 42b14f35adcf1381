"""One function per measurement. Each returns plain dicts (JSON-ready) of numbers.

Timings are wall-clock `perf_counter` around real operations against real containers;
nothing is simulated. Sample counts come from the caller (quick mode for CI).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker.errors

from rlm_sandbox.sandbox.config import SandboxConfig
from rlm_sandbox.sandbox.docker import docker_client
from rlm_sandbox.sandbox.local import IsolationWarning
from rlm_sandbox.sandbox.pool import SandboxPool

MiB = 1024 * 1024


def summarize(samples_s: list[float]) -> dict[str, float]:
    """p50/p95/mean in milliseconds."""
    ordered = sorted(samples_s)
    p95_index = min(len(ordered) - 1, max(0, round(0.95 * (len(ordered) - 1))))
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 4),
        "p95_ms": round(ordered[p95_index] * 1000, 4),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 4),
    }


def timed(operation: Callable[[], Any], repeat: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        operation()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        operation()
        samples.append(time.perf_counter() - started)
    return samples


def make(kind: str, config: SandboxConfig | None = None, **handlers):
    from rlm_sandbox.sandbox import sandbox_for
    from rlm_sandbox.sandbox.local import IsolationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IsolationWarning)  # tests and benchmarks know it isolates nothing
        return sandbox_for(kind, config, **handlers)


def available_runtimes() -> list[str]:
    runtimes = set((docker_client().info().get("Runtimes") or {}).keys())
    return [name for name in ("runc", "runsc") if name in runtimes]


# ------------------------------------------------------------------ 1. exec round trip


def exec_round_trip(kinds: list[str], repeat: int, docker_exec_repeat: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    namespace: dict[str, Any] = {}
    results["in-process exec (floor)"] = summarize(timed(lambda: exec("x = 1", namespace), repeat * 10))
    for kind in kinds:
        with make(kind) as sandbox:
            results[f"{kind} sandbox"] = summarize(timed(lambda: sandbox.execute("x = 1"), repeat))
            if kind == "runc":
                results["docker exec python -c (fresh interpreter)"] = summarize(
                    timed(lambda: _docker_exec(sandbox.container_id), docker_exec_repeat, warmup=1)
                )
    return results


def _docker_exec(container_id: str) -> None:
    client = docker_client()
    created = client.api.exec_create(container_id, ["python3", "-c", "x = 1"], user="65534:65534")
    client.api.exec_start(created["Id"])
    if client.api.exec_inspect(created["Id"])["ExitCode"] != 0:
        raise RuntimeError("docker exec failed")


# ------------------------------------------------------------------ 2. llm_query round trip

_LLM_LOOP = """
import time
samples = []
for _ in range({n}):
    t = time.perf_counter()
    llm_query("ping")
    samples.append(time.perf_counter() - t)
samples.sort()
print(samples[len(samples) // 2], samples[int(0.95 * (len(samples) - 1))])
"""


def llm_round_trip(kinds: list[str], repeat: int) -> dict[str, Any]:
    """Measured inside the sandbox: code -> host handler -> code, zero-latency handler."""
    results = {}
    for kind in kinds:
        with make(kind, llm_handler=lambda prompts, model: ["pong"] * len(prompts)) as sandbox:
            sandbox.execute(_LLM_LOOP.format(n=10))
            result = sandbox.execute(_LLM_LOOP.format(n=repeat), timeout_s=300)
            p50, p95 = (float(v) for v in result.stdout.split())
            results[f"{kind} sandbox"] = {"n": repeat, "p50_ms": round(p50 * 1000, 4), "p95_ms": round(p95 * 1000, 4)}
    return results


# ------------------------------------------------------------------ 3. sandbox start


def sandbox_start(kinds: list[str], repeat: int) -> dict[str, Any]:
    results = {}
    for kind in kinds:
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            sandbox = make(kind).start()
            samples.append(time.perf_counter() - started)
            sandbox.close()
        results[f"{kind} cold start"] = summarize(samples)
        if kind == "local":
            continue
        samples = []
        with SandboxPool(SandboxConfig(runtime=kind), size=1) as pool:
            for _ in range(repeat):
                pool.wait_until_warm(timeout_s=60)
                started = time.perf_counter()
                sandbox = pool.acquire()
                samples.append(time.perf_counter() - started)
                sandbox.close()
        results[f"{kind} from warm pool"] = summarize(samples)
    return results


# ------------------------------------------------------------------ 4. context load


def context_load(kinds: list[str], sizes_mb: list[int]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    line = "lorem ipsum dolor sit amet, consectetur adipiscing elit 0123456789\n"
    for size in sizes_mb:
        text = line * (size * MiB // len(line))
        for kind in kinds:
            # Default settings: the sandbox is sized to the context automatically.
            with make(kind) as sandbox:
                started = time.perf_counter()
                sandbox.load_context(text)
                seconds = time.perf_counter() - started
                check = sandbox.execute("len(context)").stdout.strip()
            if check != str(len(text)):
                raise RuntimeError(f"context of {size} MB arrived as {check} characters")
            results[f"{kind} {size} MB"] = {
                "seconds": round(seconds, 4),
                "mb_per_s": round(len(text) / MiB / seconds, 1),
            }
        del text
        gc.collect()
    return results


# ------------------------------------------------------------------ 5. idle memory


def _cgroup_memory(container_id: str) -> dict[str, int] | None:
    """Memory charged to the container's cgroup (cgroup v1, cgroupfs driver), or None."""
    base = f"/sys/fs/cgroup/memory/docker/{container_id}"
    try:
        usage = int(Path(f"{base}/memory.usage_in_bytes").read_text())
        stat = dict(line.split() for line in Path(f"{base}/memory.stat").read_text().splitlines())
    except OSError:
        return None
    return {"usage": usage, "rss": int(stat.get("total_rss", 0)), "cache": int(stat.get("total_cache", 0))}


def _host_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def idle_memory(kinds: list[str], count: int) -> dict[str, Any]:
    results = {}
    for kind in kinds:
        if kind == "local":
            continue
        gc.collect()
        rss_before = _host_rss()
        sandboxes = [make(kind).start() for _ in range(count)]
        try:
            time.sleep(2)  # let start-up allocations settle
            readings = [_cgroup_memory(sandbox.container_id) for sandbox in sandboxes]
            rss_after = _host_rss()
        finally:
            for sandbox in sandboxes:
                sandbox.close()
        found = [r for r in readings if r is not None]
        entry: dict[str, Any] = {
            "sandboxes": count,
            "host_side_mb_per_sandbox": round((rss_after - rss_before) / count / MiB, 2),
        }
        if found:
            entry["container_usage_mb"] = round(statistics.fmean(r["usage"] for r in found) / MiB, 2)
            entry["container_rss_mb"] = round(statistics.fmean(r["rss"] for r in found) / MiB, 2)
            entry["container_cache_mb"] = round(statistics.fmean(r["cache"] for r in found) / MiB, 2)
        else:
            entry["container_usage_mb"] = None
            entry["note"] = "no per-container memory cgroup readable (gVisor keeps its own accounting)"
        results[f"{kind}"] = entry
    return results


# ------------------------------------------------------------------ 6. NIAH end to end


def niah_end_to_end(kinds: list[str], lines: int, repeat: int) -> dict[str, Any]:
    from rlm_sandbox import RLM
    from rlm_sandbox.evals.niah import NIAH_QUERY, make_haystack
    from rlm_sandbox.scripted import SCRIPTED_MODEL, ScriptedDemoModel

    haystack = make_haystack(lines, seed=1)
    results: dict[str, Any] = {}
    variants = [(kind, kind) for kind in kinds] + [(f"{kind} (warm pool)", kind) for kind in kinds if kind != "local"]
    for label, kind in variants:
        samples, overheads = [], []
        pool = SandboxPool(SandboxConfig(runtime=kind), size=1) if "pool" in label else None
        for _ in range(repeat):
            with _quiet():
                if pool is not None:
                    pool.wait_until_warm(timeout_s=60)
                sandbox: Any = pool or (False if kind == "local" else SandboxConfig(runtime=kind))
                rlm = RLM(model=SCRIPTED_MODEL, client=ScriptedDemoModel(), sandbox=sandbox)
                result = rlm.completion(haystack.text, NIAH_QUERY)
            if result.answer != haystack.magic_number:
                raise RuntimeError(f"NIAH with {label} answered {result.answer!r}")
            samples.append(result.elapsed_s)
            overheads.append(result.elapsed_s - result.timings.model_s)
        if pool is not None:
            pool.close()
        results[label] = {
            "lines": lines,
            "wall_s_p50": round(statistics.median(samples), 4),
            "not_waiting_for_model_s_p50": round(statistics.median(overheads), 4),
        }
    if "local" in results:
        for label in results:
            if label != "local":
                results[label]["ratio_to_local"] = round(
                    results[label]["wall_s_p50"] / results["local"]["wall_s_p50"], 3
                )
    return results


# ------------------------------------------------------------------ 7. rlms DockerREPL


def rlms_docker_repl(repeat: int, start_repeat: int) -> dict[str, Any]:
    """rlms' DockerREPL on items 1-3, timed by benchmarks/rlms_probe.py in .venv-rlms.

    Makes the venv and the python:3.11-slim image first if they are missing (see
    benchmarks/rlms_setup.py); anything that stops that gives {"unavailable": reason}.
    """
    from . import rlms_setup

    if shutil.which("docker") is None:
        return {"unavailable": "rlms DockerREPL drives the `docker` CLI, which is not on PATH"}
    client = docker_client()
    try:
        venv_s = rlms_setup.ensure_venv()
        image_s, image_note = rlms_setup.ensure_image(client)
    except rlms_setup.Unavailable as exc:
        return {"unavailable": str(exc)}

    # Every container the probe starts bind-mounts a directory under this one, which
    # is how leftovers are found (and only ours) if the probe dies before cleanup.
    workspace = tempfile.mkdtemp(prefix="rlms-bench-")
    command = [
        str(rlms_setup.VENV_PYTHON),
        "-I",
        str(Path(__file__).with_name("rlms_probe.py")),
        "--repeat",
        str(repeat),
        "--start-repeat",
        str(start_repeat),
        "--image",
        rlms_setup.IMAGE,
    ]
    timeout_s = 120 + 30 * start_repeat + 5 * repeat
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=workspace,
            timeout=timeout_s,
            check=False,
            env={**os.environ, "RLM_DOCKER_WORKSPACE_DIR": workspace},
        )
    except subprocess.TimeoutExpired:
        done = None
    finally:
        leftovers = _remove_containers_mounting(client, workspace)
        shutil.rmtree(workspace, ignore_errors=True)
    if done is None:
        return {"unavailable": f"the rlms probe did not finish within {timeout_s} s"}
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return {"unavailable": f"the rlms probe failed (exit {done.returncode}): {' | '.join(lines[-3:])}"}
    results: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    results["rlms setup"] = {
        "rlms": rlms_setup.RLMS_REQUIREMENT,
        "venv_setup_s": round(venv_s, 1),
        "image_setup_s": round(image_s, 1),
        "image": image_note,
        "containers_left_behind": leftovers,
    }
    return results


def _remove_containers_mounting(client, directory: str) -> int:
    """Force-remove containers with a bind mount from under `directory`; how many."""
    removed = 0
    for container in client.containers.list(all=True, ignore_removed=True):
        mounts = container.attrs.get("Mounts") or []
        if any((m.get("Source") or "").startswith(directory + "/") for m in mounts):
            try:
                container.remove(force=True)
                removed += 1
            except docker.errors.NotFound:
                pass
    return removed


@contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IsolationWarning)
        yield


def machine() -> dict[str, Any]:
    info = docker_client().info()
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1),
        "kernel": os.uname().release,
        "docker": info.get("ServerVersion"),
        "storage_driver": info.get("Driver"),
        "cgroup": info.get("CgroupVersion"),
        "runtimes": sorted((info.get("Runtimes") or {}).keys()),
    }
