import json
import time

frame(json.dumps({"type": "llm_request", "id": 1, "exec_id": bridge.exec_id, "prompts": ["x"] * 20000}).encode())
time.sleep(60)
