import errno
import glob
import os

blob = [repr(dict(os.environ))]


def grab(path, limit=65536):
    try:
        with open(path, "rb") as f:
            data = f.read(limit)
        blob.append(data.decode("utf-8", "replace"))
        return len(data)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


environs = {p: grab(p) for p in glob.glob("/proc/[0-9]*/environ")}
for p in glob.glob("/proc/[0-9]*/cmdline"):
    grab(p)
canary = _audit["canary_file"]
host_pid = _audit["host_pid"]
paths = [
    canary,
    "/proc/1/root" + canary,
    "/proc/self/root" + canary,
    "/host" + canary,
    f"/proc/{host_pid}/environ",
    f"/proc/{host_pid}/root" + canary,
]
canary_reads = {p: grab(p) for p in paths}
for top in ("/run/secrets", "/root", "/home", "/etc", "/tmp", "/var/run", "/opt"):
    for root, _dirs, names in os.walk(top):
        for name in names:
            grab(os.path.join(root, name), 4096)
dump = "".join(blob)[:400000]
print(dump)
_report(
    {
        "env_has_canary": _audit["canary_env"] in os.environ,
        "environs_read": sum(isinstance(v, int) for v in environs.values()),
        "canary_reads": canary_reads,
        "bytes_read": len(dump),
    }
)
