import errno
import os


def fill(directory):
    written, error = 0, None
    paths = []
    try:
        for i in range(200):
            path = f"{directory}/.audit-fill{i}"
            paths.append(path)
            with open(path, "wb") as f:
                for _ in range(8):
                    f.write(b"\1" * (1 << 20))
                    f.flush()
                    written += 1
    except OSError as e:
        error = errno.errorcode.get(e.errno, str(e.errno))
    finally:
        for path in paths:
            try:
                os.unlink(path)
            except OSError:
                pass
    return written, error


result = {d: fill(d) for d in ("/tmp", "/dev/shm")}
_report({"fill": result})
