import errno
import socket


def _err(e):
    return errno.errorcode.get(getattr(e, "errno", None) or 0, type(e).__name__)


attempts = {}
for host, port, family in [
    ("169.254.169.254", 80, socket.AF_INET),
    ("169.254.170.2", 80, socket.AF_INET),
    ("100.100.100.200", 80, socket.AF_INET),
    ("fd00:ec2::254", 80, socket.AF_INET6),
]:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect((host, port))
        s.sendall(b"GET /latest/meta-data/iam/security-credentials/ HTTP/1.0\r\nMetadata-Flavor: Google\r\n\r\n")
        attempts[f"{host}:{port}"] = "connected"
    except OSError as e:
        attempts[f"{host}:{port}"] = _err(e)
    finally:
        s.close()
_report({"attempts": attempts})
