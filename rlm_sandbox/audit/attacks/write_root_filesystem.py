import errno
import os
import sys
import sysconfig

server = open("/proc/self/cmdline", "rb").read().split(b"\0")
server = next((a.decode() for a in server if a.endswith(b"repl_server.py")), "/opt/rlm/repl_server.py")
targets = [
    "/etc/passwd",
    "/etc/ld.so.preload",
    os.path.join(sysconfig.get_paths()["purelib"], "sitecustomize.py"),
    os.path.join(sysconfig.get_paths()["stdlib"], "os.py"),
    server,
    sys.executable,
    "/usr/bin/evil",
    "/root/.bashrc",
    "/.dockerenv",
    "/var/tmp/x",
    "/opt/rlm/evil.py",
    "/evil",
    "/sbin/docker-init",
    "/etc/hosts",
]
attempts = {}
for path in targets:
    try:
        with open(path, "ab") as f:
            f.write(b"\n# pwned\n")
        attempts["append " + path] = "written"
    except OSError as e:
        attempts["append " + path] = errno.errorcode.get(e.errno, "?")
for name, op in [
    ("chmod server", lambda: os.chmod(server, 0o777)),
    ("rename server", lambda: os.rename(server, server + ".x")),
    ("symlink /usr/lib/x", lambda: os.symlink("/tmp", "/usr/lib/x")),
    ("mkdir /etc/cron.d/x", lambda: os.mkdir("/etc/cron.d/x")),
    ("unlink /etc/hostname", lambda: os.unlink("/etc/hostname")),
]:
    try:
        op()
        attempts[name] = "written"
    except OSError as e:
        attempts[name] = errno.errorcode.get(e.errno, "?")
_report({"attempts": attempts})
