import subprocess
import sys

kids = [subprocess.Popen([sys.executable, "-c", "while True: pass", _audit["marker"]]) for _ in range(3)]
try:
    while True:
        pass
except KeyboardInterrupt:
    for kid in kids:
        kid.kill()
        kid.wait()
    _report({"spinners": len(kids) + 1})
    raise
