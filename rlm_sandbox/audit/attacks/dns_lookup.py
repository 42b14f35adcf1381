import socket

attempts = {}
for name in (
    "example.com",
    "pypi.org",
    "host.docker.internal",
    "gateway.docker.internal",
    "metadata.google.internal",
    "kubernetes.default.svc",
    "localhost",
):
    try:
        infos = socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP)
        addresses = sorted({i[4][0] for i in infos})
        attempts[name] = "resolved " + ",".join(addresses)
    except OSError as e:
        attempts[name] = type(e).__name__ + " " + str(e.args[0] if e.args else "")
try:
    resolv = open("/etc/resolv.conf").read()
except OSError:
    resolv = ""
_report(
    {
        "attempts": attempts,
        "nameservers": [line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver")],
    }
)
