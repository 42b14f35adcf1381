import errno
import os
import subprocess

try:
    with open("/tmp/.audit-big", "wb") as f:
        f.seek(100 << 20)
        f.write(b"x")
        f.flush()
    python_write = "written"
except OSError as e:
    python_write = errno.errorcode.get(e.errno, "?")
dd = subprocess.run(
    ["dd", "if=/dev/zero", "of=/tmp/.audit-big2", "bs=1", "count=1", "seek=100M"], capture_output=True, text=True
)
for p in ("/tmp/.audit-big", "/tmp/.audit-big2"):
    try:
        os.unlink(p)
    except OSError:
        pass
_report({"python_write": python_write, "dd_returncode": dd.returncode, "dd_says": dd.stderr[-120:]})
