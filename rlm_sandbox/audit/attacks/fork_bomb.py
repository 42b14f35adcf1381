import os
import time

forked, error = 0, None
started = time.monotonic()
while time.monotonic() - started < 10:
    try:
        pid = os.fork()
    except OSError as e:
        error = e.errno
        break
    if pid == 0:
        # A child never returns to the server: it keeps trying to fork, for ever.
        while True:
            try:
                os.fork()
            except OSError:
                time.sleep(0.05)
    forked += 1
_report({"forked": forked, "errno": error})
