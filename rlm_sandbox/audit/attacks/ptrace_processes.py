import ctypes
import errno
import os

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
visible = {}
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].decode("utf-8", "replace")
            visible[pid] = {"uid": status["Uid"].split(), "cmd": cmd}
        except (OSError, KeyError):
            pass
attach = {}
for target in ["1", str(_audit["host_pid"])]:
    r = libc.ptrace(16, int(target), None, None)  # PTRACE_ATTACH
    if r == 0:
        attach[target] = "attached"
        os.waitpid(int(target), 0x40000000)  # __WALL: collect the attach stop
        libc.ptrace(17, int(target), None, None)  # PTRACE_DETACH: leave it running
    else:
        attach[target] = errno.errorcode.get(ctypes.get_errno(), "?")
try:
    with open("/proc/1/mem", "rb") as f:
        mem = "opened"
except OSError as e:
    mem = errno.errorcode.get(e.errno)
_report({"visible": visible, "attach": attach, "pid1_mem": mem, "self": os.getpid()})
