import errno
import socket
import time


def _err(e):
    return errno.errorcode.get(getattr(e, "errno", None) or 0, type(e).__name__)


attempts, took = {}, {}
for host, port, family in [
    ("1.1.1.1", 443, socket.AF_INET),
    ("8.8.8.8", 53, socket.AF_INET),
    ("140.82.112.3", 443, socket.AF_INET),
    ("151.101.0.223", 443, socket.AF_INET),
    ("10.0.0.1", 22, socket.AF_INET),
    ("192.168.1.1", 80, socket.AF_INET),
    ("2606:4700:4700::1111", 443, socket.AF_INET6),
    ("2001:4860:4860::8888", 53, socket.AF_INET6),
]:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(5)
    t = time.monotonic()
    try:
        s.connect((host, port))
        attempts[f"{host}:{port}"] = "connected"
    except OSError as e:
        attempts[f"{host}:{port}"] = _err(e)
    finally:
        s.close()
    took[f"{host}:{port}"] = round(time.monotonic() - t, 3)
_report({"attempts": attempts, "slowest_s": max(took.values())})
