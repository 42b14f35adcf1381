# Runs before the protocol attacks that write raw frames: finds the server's channel the
# way an attacker would, through the garbage collector.
import gc
import os

channel = next(o for o in gc.get_objects() if type(o).__name__ == "Channel")
bridge = next(o for o in gc.get_objects() if type(o).__name__ == "LLMBridge")


def raw(data):
    view = memoryview(data)
    while view:
        view = view[os.write(channel.write_fd, view) :]


def frame(body):
    raw(len(body).to_bytes(4, "big") + body)
