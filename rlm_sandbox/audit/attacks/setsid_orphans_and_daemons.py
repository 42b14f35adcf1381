import os
import subprocess
import sys
import time

marker = _audit["marker"]
sleeper = "import time\nwhile True: time.sleep(1)"
quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
subprocess.Popen([sys.executable, "-c", sleeper, marker, "setsid"], start_new_session=True, **quiet)
subprocess.Popen(["setsid", sys.executable, "-c", sleeper, marker, "setsid-tool"], **quiet)
subprocess.Popen(["nohup", sys.executable, "-c", sleeper, marker, "nohup"], start_new_session=True, **quiet)
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        devnull = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.execv(sys.executable, [sys.executable, "-c", sleeper, marker, "daemon"])
    os._exit(0)
os.waitpid(pid, 0)
time.sleep(1)
running = []
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            if marker.encode() in open(f"/proc/{p}/cmdline", "rb").read():
                running.append(int(p))
        except OSError:
            pass
_report({"running": len(running)})
