import errno
import fcntl
import os
import stat
import struct

nodes = {
    "mem c1:1": (stat.S_IFCHR, 1, 1),
    "kmem c1:2": (stat.S_IFCHR, 1, 2),
    "port c1:4": (stat.S_IFCHR, 1, 4),
    "kmsg c1:11": (stat.S_IFCHR, 1, 11),
    "sda b8:0": (stat.S_IFBLK, 8, 0),
    "vda b253:0": (stat.S_IFBLK, 253, 0),
    "loop0 b7:0": (stat.S_IFBLK, 7, 0),
    "loop-control c10:237": (stat.S_IFCHR, 10, 237),
    "null c1:3": (stat.S_IFCHR, 1, 3),
}
made, opened = {}, {}
for directory in ("/tmp", "/dev/shm"):
    for name, (kind, major, minor) in nodes.items():
        path = f"{directory}/.audit-{name.split()[0]}"
        try:
            os.mknod(path, kind | 0o666, os.makedev(major, minor))
            made[f"{directory} {name}"] = "ok"
        except OSError as e:
            made[f"{directory} {name}"] = errno.errorcode.get(e.errno, "?")
            continue
        try:
            fd = os.open(path, os.O_RDWR)
            try:
                data = os.read(fd, 16)
                opened[f"{directory} {name}"] = f"read {len(data)} bytes"
            except OSError as e:
                opened[f"{directory} {name}"] = "opened, read " + errno.errorcode.get(e.errno, "?")
            os.close(fd)
        except OSError as e:
            opened[f"{directory} {name}"] = errno.errorcode.get(e.errno, "?")
        os.unlink(path)
dev = {}
for name in sorted(os.listdir("/dev")):
    try:
        st = os.lstat("/dev/" + name)
        dev[name] = "block" if stat.S_ISBLK(st.st_mode) else "char" if stat.S_ISCHR(st.st_mode) else "other"
    except OSError:
        pass
tun = "absent"
if os.path.exists("/dev/net/tun"):
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
        try:
            fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", b"audit0", 0x0001))  # TUNSETIFF
            tun = "interface created"
        except OSError as e:
            tun = "TUNSETIFF " + errno.errorcode.get(e.errno, "?")
        os.close(fd)
    except OSError as e:
        tun = "open " + errno.errorcode.get(e.errno, "?")
_report({"made": made, "opened": opened, "dev": dev, "tun": tun})
