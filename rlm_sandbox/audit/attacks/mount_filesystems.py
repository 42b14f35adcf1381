import ctypes
import errno
import os
import subprocess

libc = ctypes.CDLL(None, use_errno=True)
os.makedirs("/tmp/.audit-mnt", exist_ok=True)


def mount(source, target, fstype, flags=0, data=None):
    r = libc.mount(source, target, fstype, flags, data)
    return "ok" if r == 0 else errno.errorcode.get(ctypes.get_errno(), "?")


MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096
attempts = {
    "tmpfs": mount(b"none", b"/tmp/.audit-mnt", b"tmpfs"),
    "proc": mount(b"proc", b"/tmp/.audit-mnt", b"proc"),
    "sysfs": mount(b"sysfs", b"/tmp/.audit-mnt", b"sysfs"),
    "cgroup v1 memory": mount(b"cgroup", b"/tmp/.audit-mnt", b"cgroup", 0, b"memory"),
    "cgroup2": mount(b"cgroup2", b"/tmp/.audit-mnt", b"cgroup2"),
    "bind /": mount(b"/", b"/tmp/.audit-mnt", None, MS_BIND),
    "remount / rw": mount(None, b"/", None, MS_REMOUNT),
    "remount /proc/sys rw": mount(None, b"/proc/sys", None, MS_REMOUNT),
    "overlay": mount(b"overlay", b"/tmp/.audit-mnt", b"overlay", 0, b"lowerdir=/,upperdir=/tmp,workdir=/tmp"),
}
tool = subprocess.run(["mount", "-t", "tmpfs", "none", "/tmp/.audit-mnt"], capture_output=True, text=True, timeout=20)
attempts["mount(8) tmpfs"] = "ok" if tool.returncode == 0 else f"exit {tool.returncode}"
still = [line.split()[1] for line in open("/proc/mounts") if "/tmp/.audit-mnt" in line]
os.rmdir("/tmp/.audit-mnt")
_report({"attempts": attempts, "mounted_now": still})
