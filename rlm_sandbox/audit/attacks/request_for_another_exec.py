import json
import time

frame(json.dumps({"type": "llm_request", "id": 1, "exec_id": bridge.exec_id - 1, "prompts": ["x"]}).encode())
time.sleep(60)
