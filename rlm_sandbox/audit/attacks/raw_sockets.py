import errno
import socket

attempts = {}
for name, args in [
    ("AF_PACKET raw", (socket.AF_PACKET, socket.SOCK_RAW, 0x0300)),
    ("AF_INET raw ICMP", (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)),
    ("AF_INET raw TCP", (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)),
    ("AF_INET6 raw", (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)),
]:
    try:
        socket.socket(*args).close()
        attempts[name] = "opened"
    except OSError as e:
        attempts[name] = errno.errorcode.get(e.errno, "?")
_report({"attempts": attempts, "interfaces": [n for _, n in socket.if_nameindex()]})
