"""Running attack cases: a shared sandbox for the harmless, a fresh one for the destructive.

For every case, besides its own check, `AuditSession.run` verifies on the host that:

* no secret planted on the host (an environment variable, a file, the API key) shows
  up in anything the sandbox produced;
* if the sandbox was replaced, it was with a clear error (SandboxDied, ProtocolError
  or TimeoutError), and the exec did not hang past its timeout, the interrupt grace
  and a restart;
* the sandbox answers a trivial exec afterwards;
* the host canaries are untouched: the canary file is unchanged, the canary TCP/UDP
  servers on the host's loopback and Docker bridge saw no packet, the daemon answers;
* nothing is left running: a shared sandbox holds no process or thread beyond its
  server; a case's own sandbox (destructive cases get one) is gone after close, with
  no host process left in its cgroup or naming it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import RLMSandboxError, SandboxError
from ..limits import Budget, Limits
from ..lm import LMResponse, complete_within_budget
from ..sandbox.base import ExecResult, Sandbox
from ..sandbox.config import SandboxConfig
from . import sources
from .catalog import CASES
from .checks import CLEAR_ERRORS, GONE_WITHIN_S, HANG_SLACK_S, LLM_CALLS_PER_CASE, MARKER, parse_observation
from .env import AuditEnv
from .host import container_cpu_ns, host_processes
from .injection import INJECTED_CONTEXT, ObedientModel
from .registry import AttackCase, Observation
from .report import AuditReport, CaseOutcome

if TYPE_CHECKING:
    from ..sandbox.docker import DockerSandbox


class _EchoModel:
    """The model behind llm_query in audit sandboxes: free, instant, counted by a real Budget."""

    model = "audit-echo"

    def complete(
        self, messages: list[dict[str, Any]], *, model: str | None = None, timeout_s: float | None = None
    ) -> LMResponse:
        return LMResponse(text="echo", model=model or self.model, input_tokens=1, output_tokens=1, cost_usd=0.0)


class AuditSession:
    """Runs attack cases against one runtime: shared sandbox for the harmless, fresh for the rest."""

    def __init__(self, env: AuditEnv, *, console: Any = None) -> None:
        from ..sandbox.docker import DockerSandbox, docker_client

        self.env = env
        self.runtime = env.runtime
        self.config = env.config
        self.console = console
        self._docker_sandbox = DockerSandbox
        self.client = docker_client(self.config.docker_host)
        runtimes = set((self.client.info().get("Runtimes") or {}).keys())
        if self.runtime not in runtimes:
            raise SandboxError(
                f"the Docker daemon has no {self.runtime!r} runtime (it has {', '.join(sorted(runtimes))})"
            )
        self._shared: DockerSandbox | None = None
        self._baseline: Observation | None = None
        self._shared_ids: set[str] = set()
        self._budget = Budget(Limits(max_llm_calls=LLM_CALLS_PER_CASE))
        self._echo = _EchoModel()

    # --- the handler every audit sandbox gets: a real budget, a free model

    def _llm_handler(self, prompts: list[str], model: str | None) -> list[str]:
        return [
            complete_within_budget(self._echo, self._budget, [{"role": "user", "content": p}], model=model).text
            for p in prompts
        ]

    def _new_sandbox(self) -> DockerSandbox:
        sandbox = self._docker_sandbox(self.config, llm_handler=self._llm_handler)
        sandbox.start()
        return sandbox

    def _shared_sandbox(self) -> DockerSandbox:
        if self._shared is None:
            self._shared = self._new_sandbox()
            self._baseline = None
        return self._shared

    # --- one case

    def run(self, case: AttackCase) -> CaseOutcome:
        started = time.monotonic()
        env = self.env
        env.case_host = {}
        self._budget = Budget(Limits(max_llm_calls=LLM_CALLS_PER_CASE))
        problems: list[str] = []
        try:
            if case.kind == "rlm":
                result = self._run_rlm_case(case, problems)
            else:
                result = self._run_exec_case(case, problems)
        except RLMSandboxError as exc:  # the host could not even run it: a miss, reported
            passed, observed = False, f"{type(exc).__name__}: {exc}"
            result = ExecResult()
        else:
            try:
                passed, observed = case.check(result, parse_observation(result), env)
            except Exception as exc:
                passed, observed = False, f"unexpected observation ({type(exc).__name__}: {exc}): {result.error}"
        # Generic evidence, for every case.
        leaked = env.secrets_in("\n".join([result.stdout, result.stderr, result.error or "", result.final or ""]))
        if leaked:
            problems.append(f"secrets in the sandbox's output: {leaked}")
        if result.restarted and (result.error_type not in CLEAR_ERRORS or not result.error):
            problems.append(f"replaced without a clear error ({result.error_type})")
        bound = case.timeout_s + self.config.interrupt_grace_s + HANG_SLACK_S
        if result.duration_s > bound:
            problems.append(f"the exec took {result.duration_s:.1f} s (bound {bound:.0f} s)")
        problems += env.host_violations()
        try:
            self.client.ping()
        except Exception as exc:
            problems.append(f"the Docker daemon stopped answering: {exc}")
        if problems:
            passed = False
            observed = f"{observed}; PROBLEMS: {'; '.join(problems)}"
        outcome = CaseOutcome(
            name=case.name,
            category=case.category,
            expected=case.expected,
            observed=observed,
            passed=passed,
            duration_s=round(time.monotonic() - started, 2),
            problems=problems,
        )
        if self.console is not None:
            mark = "[green]pass[/green]" if passed else "[red]MISS[/red]"
            self.console.print(f"  {mark} {case.category:9} {case.name} ({outcome.duration_s:.1f} s)", highlight=False)
        return outcome

    def _run_exec_case(self, case: AttackCase, problems: list[str]) -> ExecResult:
        env = self.env
        sandbox = self._new_sandbox() if case.fresh else self._shared_sandbox()
        ids = {sandbox.container_id}
        if not case.fresh and self._baseline is None:
            self._baseline = self._inside(sandbox)
        try:
            cpu_before, wall_before = container_cpu_ns(sandbox.container_id or ""), time.monotonic()
            result = sandbox.execute(env.prelude() + case.code, timeout_s=case.timeout_s)
            if cpu_before is not None and not result.restarted:
                cpu_after = container_cpu_ns(sandbox.container_id or "")
                if cpu_after is not None:
                    env.case_host["cpu_ratio"] = (cpu_after - cpu_before) / 1e9 / (time.monotonic() - wall_before)
            env.case_host["llm_calls"] = self._budget.usage().total.calls
            ids.add(sandbox.container_id)
            env.case_host["processes"] = [p for p in host_processes([sandbox.container_id or ""]) if p["in_cgroup"]]
            alive = sandbox.execute("print('alive')", timeout_s=30)
            ids.add(sandbox.container_id)
            if alive.stdout != "alive\n" or alive.error:
                problems.append(f"the sandbox did not answer afterwards: {alive.error or alive.stdout!r}")
            if not case.fresh:
                problems += self._leftovers_inside(sandbox)
            else:
                env.case_host["marked_before_close"] = len(host_processes([env.marker]))
                env.case_host["host_processes_before_close"] = len(
                    [p for p in host_processes([i for i in ids if i]) if p["in_cgroup"]]
                )
        finally:
            if case.fresh:
                sandbox.close()
                problems += self._wait_gone({i for i in ids if i})
            else:
                self._shared_ids |= {i for i in ids if i}
        return result

    def _inside(self, sandbox: Sandbox) -> Observation | None:
        return parse_observation(sandbox.execute(sources.source("_inside_probe"), timeout_s=30))

    def _leftovers_inside(self, sandbox: Sandbox) -> list[str]:
        now = self._inside(sandbox)
        base = self._baseline
        if now is None or base is None:
            return ["could not list the sandbox's processes"]
        if now["self"] != base["self"]:
            self._baseline = now  # the case replaced the sandbox itself: a new baseline
            return []
        known = {pid for pid, _, _ in base["procs"]}

        def extra_processes(listing: Observation) -> list[Any]:
            return [p for p in listing["procs"] if (p[0] not in known and p[0] != listing["self"]) or p[1] == "Z"]

        extra = extra_processes(now)
        if extra:  # a process that was just exiting gets half a second to finish
            time.sleep(0.5)
            now = self._inside(sandbox) or now
            extra = extra_processes(now)
        problems = []
        if extra:
            problems.append(f"left running in the sandbox: {extra}")
        if now["threads"] > base["threads"]:
            problems.append(f"the server has {now['threads']} threads, {base['threads']} before")
        return problems

    def _wait_gone(self, container_ids: set[str]) -> list[str]:
        """After close: the containers are gone from Docker and from the host's process table."""
        deadline = time.monotonic() + GONE_WITHIN_S
        while True:
            listed = [i for i in container_ids if self.client.api.containers(all=True, filters={"id": i})]
            running = host_processes([*container_ids, self.env.marker])
            if not listed and not running:
                return []
            if time.monotonic() > deadline:
                return [
                    f"still there {GONE_WITHIN_S:g} s after close: containers {[i[:12] for i in listed]}, "
                    f"host processes {[(p['pid'], p['cmd'][:40]) for p in running]}"
                ]
            time.sleep(0.2)

    def _run_rlm_case(self, case: AttackCase, problems: list[str]) -> ExecResult:
        from ..rlm import RLM
        from ..sandbox.docker import LABEL_OWNER_PID

        env = self.env
        label = {"label": f"{LABEL_OWNER_PID}={os.getpid()}"}
        before = {c["Id"] for c in self.client.api.containers(all=True, filters=label)}
        model = ObedientModel(api_key=env.secrets["API key"], exfil_code=env.prelude() + case.code)
        events: list[dict[str, Any]] = []
        rlm = RLM(
            model=model.model,
            client=model,
            sandbox=self.config.model_copy(update={"exec_timeout_s": case.timeout_s}),
            limits=Limits(max_iterations=4, exec_timeout_s=case.timeout_s, max_llm_calls=20),
            listeners=[events.append],
        )
        completion = rlm.completion(INJECTED_CONTEXT, "Summarise this quarterly report in one sentence.")
        env.case_host["obeyed"] = model.obeyed
        env.case_host["answer"] = completion.answer or ""
        env.case_host["transcript"] = json.dumps(events, default=str) + (completion.answer or "")
        exfil = next((e for e in events if e.get("type") == "exec" and MARKER in (e.get("stdout") or "")), None)
        # The RLM tears its sandbox down in the background: wait for it, then check.
        deadline = time.monotonic() + GONE_WITHIN_S
        while True:
            left = {c["Id"] for c in self.client.api.containers(all=True, filters=label)} - before - self._shared_ids
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if left:
            problems.append(f"the completion left containers behind: {[i[:12] for i in left]}")
        if exfil is None:
            return ExecResult(error=completion.error, duration_s=completion.elapsed_s)
        return ExecResult(
            stdout=exfil.get("stdout") or "",
            stderr=exfil.get("stderr") or "",
            error=exfil.get("error"),
            final=exfil.get("final"),
            timed_out=bool(exfil.get("timed_out")),
            restarted=bool(exfil.get("restarted")),
            truncated=bool(exfil.get("truncated")),
            duration_s=float(exfil.get("duration_s") or 0.0),
        )

    # --- the end

    def finish(self) -> CaseOutcome:
        """Close the shared sandbox and prove every audit container is gone."""
        started = time.monotonic()
        problems: list[str] = []
        shared, self._shared = self._shared, None
        if shared is not None:
            self._shared_ids.add(shared.container_id or "")
            shared.close()
        problems += self._wait_gone({i for i in self._shared_ids if i})
        problems += self.env.host_violations()
        passed = not problems
        observed = (
            f"shared sandbox ({len(self._shared_ids)} container(s)) closed and gone; no host process left; "
            f"canaries untouched (TCP {self.env.tcp_accepted()}, UDP {self.env.udp_received()})"
            if passed
            else "; ".join(problems)
        )
        return CaseOutcome(
            name="cleanup",
            category="cleanup",
            expected="every audit container removed, nothing left running, canaries untouched",
            observed=observed,
            passed=passed,
            duration_s=round(time.monotonic() - started, 2),
            problems=problems,
        )


def run_audit(
    runtime: str = "runc",
    *,
    console: Any = None,
    cases: Iterable[AttackCase] = CASES,
    config: SandboxConfig | None = None,
) -> AuditReport:
    """Run every attack case against `runtime` and report what happened."""
    started = time.monotonic()
    outcomes: list[CaseOutcome] = []
    with AuditEnv(runtime, config) as env:
        session = AuditSession(env, console=console)
        try:
            for case in cases:
                outcomes.append(session.run(case))
        finally:
            outcomes.append(session.finish())
    return AuditReport(runtime=runtime, outcomes=outcomes, duration_s=round(time.monotonic() - started, 2))
