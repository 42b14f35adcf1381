import json
import time

ok = refused = other = 0
for i in range(2000):
    try:
        llm_query(f"flood {i}")
        ok += 1
    except BudgetExceededError:
        refused += 1
    except Exception:
        other += 1
try:
    answers = llm_query_batched(["batch"] * 5000)
    batch = f"{sum(not a.startswith('[error') for a in answers)} answered"
except BudgetExceededError:
    batch = "refused"
for k in range(200):
    frame(
        json.dumps({"type": "llm_request", "id": 10**6 + k, "exec_id": bridge.exec_id, "prompts": ["forged"]}).encode()
    )
time.sleep(1)
_report({"ok": ok, "refused": refused, "other": other, "batch": batch})
