import time

raw((64 << 20).to_bytes(4, "big"))
raw(b"x" * (17 << 20))
time.sleep(60)
