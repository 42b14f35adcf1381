import errno
import socket


def _audit_pick(host):
    return host.startswith("127.") or host == "::1"


def _audit_hosts():
    return ["127.0.0.1", "::1"]


def _err(e):
    return errno.errorcode.get(getattr(e, "errno", None) or 0, type(e).__name__)


attempts = {}
targets = [tuple(t) for t in _audit["tcp"] if _audit_pick(t[0])]
for host, port in targets + [(h, p) for h in _audit_hosts() for p in (22, 80, 2375, 2376, 5000, 8080)]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((host, port))
        attempts[f"{host}:{port}"] = "connected"
    except OSError as e:
        attempts[f"{host}:{port}"] = _err(e)
    finally:
        s.close()
_report({"attempts": attempts, "canaries": len(targets)})
