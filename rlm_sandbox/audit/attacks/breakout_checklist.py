import ctypes
import errno
import os
import socket

libc = ctypes.CDLL(None, use_errno=True)
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
caps = {k: v.strip() for k, v in status.items() if k.startswith("Cap")}
mounts = []
for line in open("/proc/mounts"):
    f = line.split()
    mounts.append([f[0], f[1], f[2], f[3].split(",")])
writes = {}
for path in (
    "/proc/sys/kernel/hostname",
    "/proc/sys/vm/drop_caches",
    "/sys/class/net/lo/mtu",
    "/proc/sysrq-trigger",
    "/sys/fs/cgroup/x",
):
    try:
        with open(path, "w") as f:
            f.write("1")
        writes[path] = "written"
    except OSError as e:
        writes[path] = errno.errorcode.get(e.errno, "?")
masked = {}
for path in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/sys/firmware/efi", "/proc/scsi"):
    try:
        masked[path] = len(open(path, "rb").read(64)) if os.path.isfile(path) else ("dir " + str(len(os.listdir(path))))
    except OSError as e:
        masked[path] = errno.errorcode.get(e.errno, "?")
buf = ctypes.create_string_buffer(4096)
n = libc.klogctl(3, buf, 4096)
try:
    apparmor = open("/proc/self/attr/current").read().strip()
except OSError:
    apparmor = None
_report(
    {
        "caps": caps,
        "seccomp": status.get("Seccomp", "").strip() or None,
        "no_new_privs": libc.prctl(39, 0, 0, 0, 0),
        "mounts": mounts,
        "writes": writes,
        "masked": masked,
        "pid1": open("/proc/1/cmdline", "rb").read().split(b"\0")[0].decode(),
        "interfaces": [name for _, name in socket.if_nameindex()],
        "uid_map": open("/proc/self/uid_map").read().split(),
        "groups": os.getgroups(),
        "kernel_log": buf.raw[: max(n, 0)].decode("utf-8", "replace")[:300] if n >= 0 else "EPERM",
        "apparmor": apparmor,
    }
)
