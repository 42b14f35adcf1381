"""The REPL server that runs inside the sandbox (standard library only, Python >= 3.11).

It speaks length-prefixed JSON frames with the host over the descriptors it was started
with (stdin/stdout), after moving them out of the way: fd 0 becomes /dev/null and fds 1
and 2 become capture files, so print(), os.system() and child processes are captured
and nothing the user's code does by accident can corrupt the channel. Code that does it
on purpose can; the host treats every frame as untrusted for that reason, and nothing
here enforces a limit: the host does.

Threads: a reader thread owns the inbound channel. It hands `llm_result` and
`tool_result` frames to the caller waiting for them (many may wait at once: calls made
from several threads are all in flight together, matched by request id) and everything else to the main thread, which runs user code,
so that SIGINT (sent by the host on an exec timeout) interrupts user code as
KeyboardInterrupt.
"""

from __future__ import annotations

import argparse
import ast
import base64
import fcntl
import itertools
import json
import linecache
import os
import queue
import signal
import sys
import tempfile
import threading
import traceback

PROTOCOL_VERSION = "1"
# The host's caps (rlm_sandbox/sandbox/protocol.py; a test keeps them equal). The host
# enforces them; checking here first only turns a request the host would refuse, and
# answer by replacing the sandbox, into an exception the code can handle.
MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_PROMPTS_PER_REQUEST = 10_000
MAX_IMAGES_PER_PROMPT = 16
SERVER_FILE = os.path.abspath(__file__)
RESERVED_NAMES = (
    "context",
    "llm_query",
    "llm_query_batched",
    "rlm_query",
    "rlm_query_batched",
    "FINAL",
    "FINAL_VAR",
    "SHOW_VARS",
    "LLMQueryError",
    "BudgetExceededError",
    "ToolError",
    "RequestTooLargeError",
)


class LLMQueryError(RuntimeError):
    """A sub-model call failed on the host; the message says why."""


class BudgetExceededError(LLMQueryError):
    """The host refused a sub-model call because a limit of the completion is spent."""


class ToolError(RuntimeError):
    """A host tool failed, timed out or refused its arguments; the message says why."""


class RequestTooLargeError(LLMQueryError, ValueError):
    """A host call too large for the channel; it was not sent. Split it up."""


_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def _image_url(image) -> str:
    """An image as a data URL: bytes are sniffed for their type; a data URL passes as is."""
    if isinstance(image, str):
        if not image.startswith("data:image/"):
            raise TypeError(
                "an image must be bytes or a data:image/...;base64 URL (no other URLs: there is no network)"
            )
        return image
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        mime = next((m for magic, m in _IMAGE_MAGIC if data.startswith(magic)), None)
        if mime is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            mime = "image/webp"
        if mime is None:
            raise ValueError("images must be PNG, JPEG, GIF or WebP bytes")
        return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
    raise TypeError(f"an image must be bytes or a data URL, not {type(image).__name__}")


# ------------------------------------------------------------------ channel


class Channel:
    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._write_lock = threading.Lock()

    def send(self, message: dict) -> None:
        # 'replace' turns lone surrogates (from bytes decoded with surrogateescape)
        # into '?', so every frame is valid UTF-8 for the host.
        self.send_body(json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace"))

    def send_body(self, body: bytes) -> None:
        data = memoryview(len(body).to_bytes(4, "big") + body)
        with self._write_lock:
            while data:
                data = data[os.write(self.write_fd, data) :]

    def read_exact(self, size: int) -> bytearray | None:
        """Exactly `size` bytes, read straight into one buffer; None at end of stream."""
        buffer = bytearray(size)
        with memoryview(buffer) as view:
            return buffer if self.read_into(view) else None

    def read_into(self, view: memoryview, check_ascii: bool = False) -> bool | None:
        """Fill `view` from the channel; None at end of stream.

        With check_ascii, the result says whether every byte was ASCII: each slice is
        checked just after it arrived, while it is still in the cache.
        """
        size = len(view)
        filled = checked = 0
        ascii_only = True
        while filled < size:
            count = os.readv(self.read_fd, [view[filled : filled + (8 << 20)]])
            if not count:
                return None
            filled += count
            if check_ascii and ascii_only and (filled - checked >= _ASCII_CHECK_SLICE or filled == size):
                ascii_only = view[checked:filled].tobytes().isascii()
                checked = filled
        return ascii_only

    def recv(self) -> dict | None:
        header = self.read_exact(4)
        if header is None:
            return None
        body = self.read_exact(int.from_bytes(header, "big"))
        return None if body is None else json.loads(body)


# ------------------------------------------------------------------ output capture


def _unlinked_capture_file() -> tuple[int, int]:
    """Return (writer, reader) descriptors of a fresh capture file that has no name."""
    writer, path = tempfile.mkstemp(prefix="rlm-capture-")
    try:
        reader = os.open(path, os.O_RDONLY)
    finally:
        os.unlink(path)  # no path names it, so user code cannot swap or pre-fill it
    # O_APPEND keeps every writer (stray background processes too) at the end of the
    # file after a truncate, instead of writing past a hole.
    fcntl.fcntl(writer, fcntl.F_SETFL, fcntl.fcntl(writer, fcntl.F_GETFL) | os.O_APPEND)
    return writer, reader


class OutputCapture:
    def __init__(self, max_output_bytes: int) -> None:
        self.max_output_bytes = max_output_bytes
        self.stdout_w, self.stdout_r = _unlinked_capture_file()
        self.stderr_w, self.stderr_r = _unlinked_capture_file()
        self._streams: tuple = ()
        self.reattach()

    def reattach(self) -> None:
        """Point fds 0-2 and sys.std* at /dev/null and the capture: user code may have moved them."""
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(self.stdout_w, 1)
        os.dup2(self.stderr_w, 2)
        if not self._streams or any(stream.closed for stream in self._streams):
            # They stay open for the life of the server: no context manager can hold them.
            self._streams = (
                open(0, closefd=False),  # noqa: SIM115
                # Line buffering keeps print() in order with output of child processes.
                open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False),  # noqa: SIM115
                open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False),  # noqa: SIM115
            )
        sys.stdin, sys.stdout, sys.stderr = self._streams

    def reset(self) -> None:
        os.ftruncate(self.stdout_w, 0)
        os.ftruncate(self.stderr_w, 0)

    def collect(self) -> dict:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed or broken stream must not cost the result
                pass
        stdout_size = os.fstat(self.stdout_r).st_size
        stderr_size = os.fstat(self.stderr_r).st_size
        cap = self.max_output_bytes
        # One budget for both streams, but stderr (where errors go) always keeps a share.
        stderr_take = min(stderr_size, max(cap - stdout_size, cap // 4))
        stdout_take = min(stdout_size, cap - stderr_take)
        return {
            "stdout": os.pread(self.stdout_r, stdout_take, 0).decode("utf-8", "replace"),
            "stderr": os.pread(self.stderr_r, stderr_take, 0).decode("utf-8", "replace"),
            "stdout_bytes": stdout_size,
            "stderr_bytes": stderr_size,
            "truncated": stdout_take < stdout_size or stderr_take < stderr_size,
        }


# ------------------------------------------------------------------ sub-model calls


class _Pending:
    __slots__ = ("done", "message")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.message: dict = {}


class LLMBridge:
    """Sends host-call frames and blocks the calling thread until the host answers.

    Any number of threads may wait at once; each answer is matched to its caller by id.
    """

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.exec_id = 0
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()

    def _call(self, message: dict, what: str) -> dict:
        slot = _Pending()
        with self._lock:
            request_id = next(self._ids)
            self._pending[request_id] = slot
        message.update(id=request_id, exec_id=self.exec_id)
        try:
            try:
                body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"{what}: the arguments must be JSON values (str, int, float, bool, None, list, dict): {exc}"
                ) from None
            if len(body) > MAX_FRAME_BYTES:
                raise RequestTooLargeError(
                    f"{what}: the request is {len(body):,} bytes and the channel carries at most "
                    f"{MAX_FRAME_BYTES:,}; nothing was sent. Split it into smaller calls."
                )
            self.channel.send_body(body)
            slot.done.wait()  # interruptible: SIGINT raises KeyboardInterrupt here
        finally:
            with self._lock:
                self._pending.pop(request_id, None)
        return slot.message

    def request(self, prompts: list, model, recursive: bool, images=None) -> list:
        for prompt in prompts:
            if not isinstance(prompt, str):
                raise TypeError(f"prompts must be str, not {type(prompt).__name__}")
        if model is not None and not isinstance(model, str):
            raise TypeError(f"model must be str or None, not {type(model).__name__}")
        if not prompts:
            return []
        what = "rlm_query" if recursive else "llm_query"
        if len(prompts) > MAX_PROMPTS_PER_REQUEST:
            raise RequestTooLargeError(
                f"{what}_batched: {len(prompts):,} prompts in one call; at most {MAX_PROMPTS_PER_REQUEST:,} "
                "are accepted. Nothing was sent: split the list into smaller batches."
            )
        message = {"type": "llm_request", "prompts": prompts, "model": model, "recursive": recursive}
        if images is not None:
            if len(images) != len(prompts):
                raise ValueError(f"{what}: {len(images)} image lists for {len(prompts)} prompts")
            urls = []
            for group in images:
                group = list(group or ())
                if len(group) > MAX_IMAGES_PER_PROMPT:
                    raise ValueError(f"{what}: at most {MAX_IMAGES_PER_PROMPT} images per prompt")
                urls.append([_image_url(image) for image in group])
            if any(urls):
                message["images"] = urls
        answer = self._call(message, what)
        if answer.get("error") is not None:
            error_class = BudgetExceededError if answer.get("error_type") == "BudgetExceededError" else LLMQueryError
            raise error_class(answer["error"])
        return answer.get("texts")

    def call_tool(self, name: str, args: tuple, kwargs: dict):
        answer = self._call({"type": "tool_request", "name": name, "args": list(args), "kwargs": kwargs}, name)
        if answer.get("error") is not None:
            error_class = BudgetExceededError if answer.get("error_type") == "BudgetExceededError" else ToolError
            raise error_class(answer["error"])
        return json.loads(answer.get("json") or "null")

    def deliver(self, message: dict) -> None:
        with self._lock:
            slot = self._pending.get(message.get("id"))
        if slot is None:
            return  # the caller was interrupted and has gone; a late answer is dropped
        slot.message = message
        slot.done.set()


def _make_tool(bridge: LLMBridge, name: str, signature: str, doc: str):
    def tool(*args, **kwargs):
        return bridge.call_tool(name, args, kwargs)

    tool.__name__ = tool.__qualname__ = name
    tool.__doc__ = f"{name}{signature}\n\n{doc}".rstrip()
    return tool


# ------------------------------------------------------------------ the REPL


def _answer_text(value) -> tuple[str, bool]:
    """A FINAL value as (text, is_json): structured values cross as JSON, not repr."""
    if isinstance(value, (dict, list, tuple, int, float)) and not isinstance(value, bool):
        try:
            return json.dumps(value, ensure_ascii=False, allow_nan=False), True
        except (TypeError, ValueError, RecursionError):
            pass  # not JSON (a set inside, a NaN, a custom object): its str() it is
    return str(value), False


class Repl:
    def __init__(self, channel: Channel, capture: OutputCapture, max_final_bytes: int) -> None:
        self.channel = channel
        self.capture = capture
        self.max_final_bytes = max_final_bytes
        self.bridge = LLMBridge(channel)
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.running_user_code = False
        self.final: str | None = None
        self.final_json = False
        self.globals: dict = {"__name__": "__main__", "__builtins__": __builtins__}
        self.reserved = self._reserved_values(context=None)
        self.globals.update(self.reserved)

    # --- functions visible to user code

    def _reserved_values(self, context) -> dict:
        bridge = self.bridge

        def llm_query(prompt, model=None, images=None):
            """Ask a sub-model one question; returns its answer as a str.
            `images`: a list of PNG/JPEG/GIF/WebP bytes or data URLs, sent with the prompt."""
            return bridge.request([prompt], model, recursive=False, images=None if images is None else [images])[0]

        def llm_query_batched(prompts, model=None, images=None):
            """Ask a sub-model many questions at once (run concurrently on the host); returns a list of str.
            `images`: optional, one list of images per prompt."""
            return bridge.request(list(prompts), model, recursive=False, images=images)

        def rlm_query(prompt, model=None):
            """Ask a recursive sub-RLM (with its own REPL, where depth allows); returns a str."""
            return bridge.request([prompt], model, recursive=True)[0]

        def rlm_query_batched(prompts, model=None):
            """Many rlm_query calls at once; returns a list of str."""
            return bridge.request(list(prompts), model, recursive=True)

        def FINAL(value):
            """Give the final answer: a dict, list or number as JSON, anything else as str."""
            self.final, self.final_json = _answer_text(value)

        def FINAL_VAR(name):
            """Give the value of the variable `name` (FINAL_VAR("name")) as the final answer.

            FINAL_VAR(name), with the variable itself, works too: its value is the answer."""
            if isinstance(name, str):
                key = name.strip().strip("'\"")
                if key in self.globals:
                    self.final, self.final_json = _answer_text(self.globals[key])
                    return
                # The variable's value given directly: identity, not equality, so a
                # misspelt name is still an error rather than a literal answer.
                if not any(value is name for value in self.globals.values()):
                    raise NameError(f"FINAL_VAR: there is no variable named {key!r}; assign it first")
            self.final, self.final_json = _answer_text(name)

        def SHOW_VARS():
            """List the variables you have defined, with their types."""
            names = {
                name: type(value).__name__
                for name, value in self.globals.items()
                if not name.startswith("_") and name not in self.reserved and type(value).__name__ != "module"
            }
            print(names if names else "no variables defined yet")
            return None

        return {
            "context": context,
            "llm_query": llm_query,
            "llm_query_batched": llm_query_batched,
            "rlm_query": rlm_query,
            "rlm_query_batched": rlm_query_batched,
            "FINAL": FINAL,
            "FINAL_VAR": FINAL_VAR,
            "SHOW_VARS": SHOW_VARS,
            "LLMQueryError": LLMQueryError,
            "BudgetExceededError": BudgetExceededError,
            "ToolError": ToolError,
            "RequestTooLargeError": RequestTooLargeError,
        }

    # --- SIGINT: only user code is ever interrupted

    def _on_sigint(self, signum, frame) -> None:
        if self.running_user_code:
            raise KeyboardInterrupt

    # --- frames

    def reader(self) -> None:
        """Runs in a thread: route inbound frames until the host hangs up."""
        try:
            while True:
                message = self.channel.recv()
                if message is None:
                    break
                if message.get("type") in ("llm_result", "tool_result"):
                    self.bridge.deliver(message)
                    continue
                if message.get("type") == "context":
                    # The payload follows its header as raw bytes (see the host's encode_context).
                    message["payload"] = _receive_payload(self.channel, message)
                    if message["payload"] is None:
                        break
                self.inbox.put(message)
        except Exception as exc:  # a broken channel ends the server, reported on the diag fd
            print(f"repl_server: channel read failed: {exc!r}", file=DIAG)
        # The host has hung up (closed, crashed or killed): no result can ever be read
        # again, so end now rather than when the running code happens to finish. Exiting
        # PID 1's child stops the container, and with it anything the code left running.
        os._exit(0)

    def serve(self) -> None:
        handlers = {"exec": self.handle_exec, "context": self.handle_context, "tools": self.handle_tools}
        while True:
            try:
                message = self.inbox.get()
            except KeyboardInterrupt:  # a SIGINT that arrived between execs
                continue
            if message is None or message.get("type") == "shutdown":
                return
            handler = handlers.get(message.get("type"))
            if handler is None:
                print(f"repl_server: ignoring frame of type {message.get('type')!r}", file=DIAG)
                continue
            handler(message)

    def handle_tools(self, message: dict) -> None:
        """The host's tools for this sandbox: callable by name, like the built-ins."""
        for spec in message.get("tools", ()):
            name = spec["name"]
            if name in RESERVED_NAMES or not name.isidentifier():
                continue  # the host refuses such names; never let one replace a built-in
            tool = _make_tool(self.bridge, name, spec.get("signature", "(...)"), spec.get("doc", ""))
            self.reserved[name] = tool
            self.globals[name] = tool

    def handle_context(self, message: dict) -> None:
        payload = message.pop("payload")
        reply = {"type": "context_loaded", "kind": "str", "length": 0}
        try:
            # A big ASCII text or bytes arrived as its final value (a str or bytes); the
            # rest is decoded straight from the received bytearray: one copy, then it goes.
            value = _decode_context(message, payload) if isinstance(payload, bytearray) else payload
            del payload
            reply["kind"] = type(value).__name__
            reply["length"] = len(value)
            self.reserved["context"] = value
            self.globals["context"] = value
        except BaseException as exc:  # MemoryError included: tell the host, keep serving
            reply["error"] = f"{type(exc).__name__}: {exc}"
        self.channel.send(reply)

    def handle_exec(self, message: dict) -> None:
        exec_id = message["id"]
        self.bridge.exec_id = exec_id
        self.final, self.final_json = None, False
        self.capture.reset()
        error, error_type = self.run_cell(message["code"], exec_id)
        self.restore_reserved()
        result = self.capture.collect()
        final, final_truncated = self.final, False
        if final is not None and len(final) > self.max_final_bytes:
            final, final_truncated = final[: self.max_final_bytes], True
        result.update(
            type="exec_result",
            id=exec_id,
            error=error,
            error_type=error_type,
            final=final,
            final_truncated=final_truncated,
            final_json=self.final_json,
        )
        self.channel.send(result)

    def run_cell(self, code: str, exec_id: int) -> tuple[str | None, str | None]:
        filename = f"<cell-{exec_id}>"
        # Registered so tracebacks can quote the user's lines.
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        try:
            tree = ast.parse(code, filename, "exec")
        except (SyntaxError, ValueError) as exc:  # ValueError: source with NUL bytes
            return "".join(traceback.format_exception_only(type(exc), exc)).rstrip(), type(exc).__name__
        last_expression = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last_expression = ast.Expression(tree.body.pop().value)
        self.running_user_code = True
        try:
            exec(compile(tree, filename, "exec"), self.globals)
            if last_expression is not None:
                value = eval(compile(last_expression, filename, "eval"), self.globals)
                if value is not None:
                    self.globals["_"] = value
                    print(repr(value))
            return None, None
        except BaseException as exc:  # SystemExit and KeyboardInterrupt are the user's too
            return _format_user_error(exc), type(exc).__name__
        finally:
            self.running_user_code = False

    def restore_reserved(self) -> None:
        self.globals.update(self.reserved)
        self.globals["__builtins__"] = __builtins__
        self.capture.reattach()
        signal.signal(signal.SIGINT, self._on_sigint)


# ------------------------------------------------------------------ context payloads

# Below this a context is read into a buffer and decoded: fast enough, and no ctypes.
_IN_PLACE_MIN_BYTES = 1 << 20
_ASCII_CHECK_SLICE = 1 << 20


class _InPlace:
    """New str and bytes objects whose own storage the channel reads into.

    Decoding a gigabyte context from a receive buffer costs a second gigabyte of fresh
    memory and a pass over it. CPython's C API avoids both: PyBytes_FromStringAndSize
    with no source makes a bytes object to be filled through PyBytes_AsString, and
    PyUnicode_New(n, 127) makes an ASCII str whose storage PyUnicode_AsUTF8AndSize
    returns (an ASCII str's UTF-8 is its storage). That last is a CPython detail, so a
    write through it is seen to land in a small str before it is trusted (the bytes
    route too); where it does not, or ctypes is missing, `available` is False and
    payloads are decoded.
    """

    def __init__(self) -> None:
        self.available = False
        try:
            import ctypes

            self._ctypes = ctypes
            api = ctypes.PyDLL(None)  # this interpreter's own C API, held before user code can touch it
            self._new_bytes = api.PyBytes_FromStringAndSize
            self._new_bytes.restype, self._new_bytes.argtypes = ctypes.py_object, (ctypes.c_void_p, ctypes.c_ssize_t)
            self._bytes_storage = api.PyBytes_AsString
            self._bytes_storage.restype, self._bytes_storage.argtypes = ctypes.c_void_p, (ctypes.py_object,)
            self._new_str = api.PyUnicode_New
            self._new_str.restype, self._new_str.argtypes = ctypes.py_object, (ctypes.c_ssize_t, ctypes.c_uint32)
            self._str_storage = api.PyUnicode_AsUTF8AndSize
            self._str_storage.restype = ctypes.c_void_p
            self._str_storage.argtypes = (ctypes.py_object, ctypes.POINTER(ctypes.c_ssize_t))
            # CDLL, not PyDLL: madvise runs without the GIL, beside the reading thread.
            self._madvise = ctypes.CDLL(None, use_errno=True).madvise
            self._madvise.restype, self._madvise.argtypes = (
                ctypes.c_int,
                (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int),
            )
            # Both routes are seen to land a write in their object before either is trusted.
            text, text_address = self.new_ascii_str(16)
            data, data_address = self.new_bytes(16)
            for address in (text_address, data_address):
                with self.view(address, 16) as view:
                    view[:] = b"in place, ascii!"
            self.available = text == "in place, ascii!" and data == b"in place, ascii!"
        except Exception as exc:  # no ctypes, another interpreter: decode instead
            print(f"repl_server: contexts are decoded, not read in place ({exc!r})", file=DIAG)

    def new_bytes(self, size: int) -> tuple[bytes, int]:
        value = self._new_bytes(None, size)
        return value, self._address(self._bytes_storage(value), size)

    def new_ascii_str(self, size: int) -> tuple[str, int]:
        value = self._new_str(size, 127)
        length = self._ctypes.c_ssize_t()
        address = self._str_storage(value, self._ctypes.byref(length))
        if length.value != size:
            raise RuntimeError(f"an ASCII str of {size} characters reports {length.value} bytes of UTF-8")
        return value, self._address(address, size)

    @staticmethod
    def _address(address: int | None, size: int) -> int:
        if not address:
            raise MemoryError(f"no storage for a context of {size} bytes")
        return address

    def view(self, address: int, size: int) -> memoryview:
        return memoryview((self._ctypes.c_char * size).from_address(address)).cast("B")

    def populate(self, address: int, size: int, done: threading.Event) -> None:
        """Fault in the pages of [address, address + size) ahead of the reader.

        Runs in its own thread. The reader would otherwise take every page fault
        itself while the stream waits; on a VM whose memory is backed lazily a
        gigabyte of them takes seconds. MADV_POPULATE_WRITE (Linux 5.14) maps the pages
        without touching their contents; where it is refused (gVisor, older kernels)
        the reader takes the faults as before.
        """
        page = os.sysconf("SC_PAGE_SIZE")
        start = address - address % page  # the page holding the object's header: same mapping
        end = address + size
        while start < end and not done.is_set():
            step = min(_POPULATE_SLICE, end - start)
            if self._madvise(start, step, _MADV_POPULATE_WRITE) != 0:
                return
            start += step


_in_place: _InPlace | None = None
_MADV_POPULATE_WRITE = 23  # <linux/mman.h>; Python's mmap module names it only from 3.13 on
_POPULATE_SLICE = 32 << 20


def _receive_payload(channel: Channel, header: dict):
    """A context's payload off the channel; None at end of stream.

    A big ASCII text or bytes payload arrives as its final value (a str or bytes);
    anything else as a bytearray for _decode_context.
    """
    global _in_place
    size = header["bytes"]
    encoding = header.get("encoding")
    ascii_text = encoding == "text" and header.get("ascii") is True
    if size < _IN_PLACE_MIN_BYTES or not (ascii_text or encoding == "bytes"):
        return channel.read_exact(size)
    if _in_place is None:
        _in_place = _InPlace()
    if not _in_place.available:
        return channel.read_exact(size)
    value, address = _in_place.new_ascii_str(size) if ascii_text else _in_place.new_bytes(size)
    done = threading.Event()
    populating = threading.Thread(target=_in_place.populate, args=(address, size, done), name="repl-populate")
    populating.start()
    try:
        with _in_place.view(address, size) as view:
            ascii_only = channel.read_into(view, check_ascii=ascii_text)
            if ascii_only is None:
                return None
            if not ascii_only:
                # The header said ASCII and the bytes are not: never hand out a str whose
                # flag lies about its contents; decode them as any other text instead.
                value = str(view, "utf-8", "surrogatepass")
    finally:
        done.set()
        populating.join()
    return value


def _decode_context(header: dict, payload: bytearray):
    encoding = header.get("encoding")
    if encoding == "bytes":
        return bytes(payload)
    if encoding != "json":
        return payload.decode("utf-8", "surrogatepass")
    blobs = header.get("blobs")
    if not blobs:
        return json.loads(payload)
    view = memoryview(payload)
    split = header["json_bytes"]
    value = json.loads(bytes(view[:split]))
    offset = split
    for path, length in blobs:  # bytes values travel raw after the document
        target = value
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = bytes(view[offset : offset + length])
        offset += length
    view.release()
    return value


def _format_user_error(exc: BaseException) -> str:
    """The traceback with this server's own frames removed, so it reads as the user's."""
    summary = traceback.TracebackException(type(exc), exc, exc.__traceback__, compact=True)
    summary.stack = traceback.StackSummary.from_list(
        [frame for frame in summary.stack if frame.filename != SERVER_FILE]
    )
    return "".join(summary.format()).rstrip()


# ------------------------------------------------------------------ start-up

DIAG = sys.__stderr__


def main(argv: list[str] | None = None) -> int:
    global DIAG
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-output-bytes", type=int, default=1 << 20)
    parser.add_argument("--max-final-bytes", type=int, default=8 << 20)
    args = parser.parse_args(argv)

    # Private copies of the channel and of stderr (for the server's own fatal errors),
    # marked close-on-exec so no child process inherits them.
    channel = Channel(os.dup(0), os.dup(1))
    try:
        # Docker hands stdin over as a pipe of 64 KiB: a gigabyte context would cross
        # it in 16k wake-ups of the reader. 1 MiB is the unprivileged maximum.
        fcntl.fcntl(channel.read_fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (OSError, AttributeError):
        pass  # not a pipe (gVisor, a socket): nothing to gain
    DIAG = os.fdopen(os.dup(2), "w", buffering=1)
    try:
        repl = Repl(channel, OutputCapture(args.max_output_bytes), args.max_final_bytes)
        signal.signal(signal.SIGINT, repl._on_sigint)
        threading.Thread(target=repl.reader, name="repl-reader", daemon=True).start()
        channel.send({"type": "ready", "version": PROTOCOL_VERSION, "python": sys.version.split()[0]})
        repl.serve()
    except BaseException:
        traceback.print_exc(file=DIAG)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
