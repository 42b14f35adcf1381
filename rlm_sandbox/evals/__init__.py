"""Batch evals: tasks, scorers, synthetic suites, the runner (local threads or Ray) and reports.

```python
from rlm_sandbox.evals import RunConfig, generate_suite, run_eval

tasks = generate_suite("niah", n=20, sizes=[8192, 131072], seed=0)
outcome = run_eval(tasks, RunConfig(model="gpt-5-mini"), out="results.jsonl", concurrency=4)
print(outcome.accuracy)
```
"""

from ..errors import EvalError
from .config import RunConfig
from .execute import execute_task
from .generators import SUITES, GeneratorRef, parse_size
from .results import ResultsWriter, TaskResult, read_results
from .runner import EvalOutcome, run_eval
from .scorers import Score, ScorerSpec, score_answer
from .suites import generate_suite
from .tasks import Task, load_tasks, write_tasks

__all__ = [
    "SUITES",
    "EvalError",
    "EvalOutcome",
    "GeneratorRef",
    "ResultsWriter",
    "RunConfig",
    "Score",
    "ScorerSpec",
    "Task",
    "TaskResult",
    "execute_task",
    "generate_suite",
    "load_tasks",
    "parse_size",
    "read_results",
    "run_eval",
    "score_answer",
    "write_tasks",
]
