import json
import time

frame(
    json.dumps(
        {
            "type": "llm_request",
            "id": 1,
            "exec_id": bridge.exec_id,
            "prompts": ["x"],
            "recursive": True,
            "depth": 0,
            "max_depth": 99,
        }
    ).encode()
)
time.sleep(60)
