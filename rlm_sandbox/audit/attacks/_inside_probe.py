# Not an attack: lists the sandbox's processes and the server's threads, to find what a
# case left running, without leaving a global behind.
def _audit_inside():
    import json
    import os

    procs = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                state = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0]
                cmd = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")[0].decode("utf-8", "replace")
                procs.append([int(p), state, cmd])
            except OSError:
                pass
    print(
        "AUDIT "
        + json.dumps({"procs": sorted(procs), "threads": len(os.listdir("/proc/self/task")), "self": os.getpid()})
    )


_audit_inside()
del _audit_inside
