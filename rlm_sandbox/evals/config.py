"""How the tasks of an eval run are answered: `RunConfig`, and the RLM it builds for each task.

`RunConfig` is what the results file records as a run's set-up (its `identity` and
`fingerprint` decide what resuming may skip). `build_rlm` makes a fresh RLM per task
over one model client per process, wrapped so that a cancelled run stops at the next
model call and a `Meter` counts what every call cost as it arrives.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from ..limits import Limits
from ..lm import LMClient, LMResponse, Price
from ..rlm import RLM
from ..sandbox import Sandbox, SandboxConfig, sandbox_for
from ..scripted import SCRIPTED_MODEL, ScriptedDemoModel

__all__ = ["Meter", "RunConfig", "price_table"]


class RunConfig(BaseModel):
    """Everything that says how the tasks of a run are answered. Picklable, for Ray."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = "gpt-5-mini"
    sub_model: str | None = None
    base_url: str | None = None
    provider: str = "openai"
    """Which client reaches the model: "openai" or "litellm" (see `RLM(provider=...)`)."""
    scripted: bool = False
    """Use the built-in scripted demo model (no API) instead of an OpenAI-compatible one."""
    limits: Limits = Field(default_factory=Limits)
    sandbox: Literal["docker", "local"] = "docker"
    runtime: str = "runc"
    log_dir: str | None = None
    verbose: bool = False
    _pool: Any = PrivateAttr(default=None)
    """The run's warm SandboxPool in this process (see `warm_pool`); not part of the identity."""
    prices: dict[str, tuple[float, float]] = Field(default_factory=dict)
    """Extra model prices, USD per million input and output tokens (`--price`)."""

    @property
    def model_name(self) -> str:
        return SCRIPTED_MODEL if self.scripted else self.model

    def identity(self) -> dict[str, Any]:
        """What decides the results of a run besides the tasks: the models, their endpoint, every limit."""
        identity = {
            "model": self.model_name,
            "sub_model": self.sub_model or self.model_name,
            "base_url": None if self.scripted else self.base_url,
            "max_depth": self.limits.max_depth,
            "limits": self.limits.model_dump(mode="json"),
        }
        if self.provider != "openai" and not self.scripted:
            identity["provider"] = self.provider  # absent for "openai": earlier results keep their fingerprint
        return identity

    def fingerprint(self) -> str:
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def build_rlm(
        self,
        *,
        cancel: threading.Event | None = None,
        meter: Meter | None = None,
        on_sandbox: Callable[[Sandbox], None] | None = None,
        listeners: Sequence[Callable[[dict[str, Any]], None]] = (),
    ) -> RLM:
        """A fresh RLM for one task: its own budget and sandboxes; the model client is shared.

        With `cancel`, every model call first checks it (and raises KeyboardInterrupt once
        it is set); with `meter`, every answer is counted there as it arrives.
        """
        client: LMClient = _shared_client(self)
        if cancel is not None or meter is not None:
            client = _CancellableClient(client, cancel or threading.Event(), meter)
        kind = "local" if self.sandbox == "local" else self.runtime
        sandbox_config = SandboxConfig(exec_timeout_s=self.limits.exec_timeout_s)

        def make_sandbox(**handlers: Any) -> Sandbox:
            if self._pool is not None:
                sandbox = self._pool.acquire(**handlers)
            else:
                sandbox = sandbox_for(kind, sandbox_config, **handlers)
            if on_sandbox is not None:
                on_sandbox(sandbox)
            return sandbox

        return RLM(
            model=self.model_name,
            sub_model=self.sub_model,
            client=client,
            sandbox=make_sandbox,
            limits=self.limits,
            log_dir=self.log_dir,
            verbose=self.verbose,
            listeners=list(listeners),
        )


_clients: dict[tuple[str, str | None, str, bool, str], LMClient] = {}
_clients_lock = threading.Lock()


def _shared_client(config: RunConfig) -> LMClient:
    """One client per model and endpoint per process: the SDK's pool serves every task."""
    from ..providers import client_for

    key = (config.model, config.base_url, config.provider, config.scripted, json.dumps(config.prices, sort_keys=True))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            if config.scripted:
                client = ScriptedDemoModel()
            else:
                client = client_for(
                    config.provider, config.model, base_url=config.base_url, prices=price_table(config.prices)
                )
            _clients[key] = client
        return client


def price_table(prices: dict[str, tuple[float, float]]) -> dict[str, Price]:
    """`--price` values as the LM client takes them."""
    return {name: Price(input_per_mtok=i, output_per_mtok=o) for name, (i, o) in prices.items()}


class Meter:
    """What one task's model calls have cost so far, counted as answers arrive (thread-safe).

    It is how an interrupted task's spend is still known: such a task leaves no result.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0

    def add(self, response: LMResponse) -> None:
        with self._lock:
            self.calls += 1
            self.input_tokens += response.input_tokens
            self.output_tokens += response.output_tokens
            self.cost_usd += response.cost_usd


class _CancellableClient:
    """Raises KeyboardInterrupt at the next model call boundary once the run is cancelled."""

    def __init__(self, inner: LMClient, cancel: threading.Event, meter: Meter | None = None) -> None:
        self._inner = inner
        self._cancel = cancel
        self._meter = meter
        self.model = inner.model

    def __getattr__(self, name: str) -> Any:
        # Prices, context windows and the like come from the wrapped client, so the
        # budget's worst-case reservations and the window fitting work through it.
        return getattr(self._inner, name)

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        timeout_s: float | None = None,
        **options: Any,
    ) -> LMResponse:
        if self._cancel.is_set():
            raise KeyboardInterrupt
        response = self._inner.complete(messages, model=model, timeout_s=timeout_s, **options)
        if self._meter is not None:
            self._meter.add(response)  # paid for, whether or not it is used
        if self._cancel.is_set():
            raise KeyboardInterrupt
        return response
