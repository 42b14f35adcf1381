chunks = []
try:
    while True:
        chunks.append(b"x" * (16 << 20))
except MemoryError:
    n = len(chunks)
    del chunks
    _report({"memory_error_at_mib": n * 16})
