import time

raw((1000).to_bytes(4, "big") + b'{"type": "exec_res')
time.sleep(10**9)
