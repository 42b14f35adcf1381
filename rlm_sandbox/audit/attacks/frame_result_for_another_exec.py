import json
import time

frame(json.dumps({"type": "exec_result", "id": 999999, "final": "pwned"}).encode())
time.sleep(60)
