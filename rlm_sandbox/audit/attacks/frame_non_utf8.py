import time

frame(b'{"type": "exec_result", "id": 1, "stdout": "\xff\xfe"}')
time.sleep(60)
