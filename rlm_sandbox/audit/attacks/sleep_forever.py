import time

try:
    time.sleep(10**9)
except KeyboardInterrupt:
    _report({"interrupted": True})
    raise
