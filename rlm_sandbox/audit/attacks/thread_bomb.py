import threading

hold = threading.Event()
started, error = 0, None
try:
    while started < 100000:
        threading.Thread(target=hold.wait, daemon=True).start()
        started += 1
except RuntimeError as e:
    error = str(e)
_report({"threads": started, "error": error})
