import ctypes
import errno
import platform
import subprocess

libc = ctypes.CDLL(None, use_errno=True)
numbers = {
    "x86_64": {
        "init_module": 175,
        "finit_module": 313,
        "delete_module": 176,
        "kexec_load": 246,
        "kexec_file_load": 320,
    },
    "aarch64": {
        "init_module": 105,
        "finit_module": 273,
        "delete_module": 106,
        "kexec_load": 104,
        "kexec_file_load": 294,
    },
}
image = ctypes.create_string_buffer(b"\x7fELF" + b"\0" * 60)
args = {
    "init_module": (image, 64, b""),
    "finit_module": (0, b"", 0),
    "delete_module": (b"ext4", 0),
    "kexec_load": (0, 0, None, 0),
    "kexec_file_load": (-1, -1, 0, b"", 0),
}
attempts = {}
for name, number in numbers.get(platform.machine(), {}).items():
    r = libc.syscall(number, *args[name])
    attempts[name] = "ok" if r != -1 else errno.errorcode.get(ctypes.get_errno(), "?")
for path in (
    "/proc/sys/kernel/modprobe",
    "/sys/kernel/uevent_helper",
    "/proc/sys/kernel/core_pattern",
    "/proc/sysrq-trigger",
):
    try:
        with open(path, "w") as f:
            f.write("/tmp/evil")
        attempts["write " + path] = "written"
    except OSError as e:
        attempts["write " + path] = errno.errorcode.get(e.errno, "?")
for tool in (["modprobe", "dummy"], ["insmod", "/tmp/x.ko"]):
    try:
        r = subprocess.run(tool, capture_output=True, timeout=10)
        attempts[tool[0]] = "ok" if r.returncode == 0 else f"exit {r.returncode}"
    except FileNotFoundError:
        attempts[tool[0]] = "not installed"
_report({"attempts": attempts})
