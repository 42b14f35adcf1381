import errno
import os
import socket
import stat


def _err(e):
    return errno.errorcode.get(getattr(e, "errno", None) or 0, type(e).__name__)


files = []
for root, dirs, names in os.walk("/"):
    if root == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys")]
    for name in names:
        path = os.path.join(root, name)
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                files.append(path)
        except OSError:
            pass
known = [
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/docker/containerd/containerd.sock",
    "/run/podman/podman.sock",
    "/var/run/crio/crio.sock",
    "/run/systemd/private",
    "/run/dbus/system_bus_socket",
    "/var/run/docker/metrics.sock",
]
inside = []
try:
    for line in open("/proc/net/unix").read().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 8:
            inside.append(parts[7])
except OSError:
    pass
attempts = {}
for target in dict.fromkeys(_audit["host_sockets"] + known + files + inside):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_UNIX, kind)
        s.settimeout(2)
        try:
            s.connect("\0" + target[1:] if target.startswith("@") else target)
            attempts[target] = "connected"
            break
        except OSError as e:
            attempts[target] = _err(e)
        finally:
            s.close()
_report({"socket_files": files, "attempts": attempts, "host_sockets_tried": len(_audit["host_sockets"])})
