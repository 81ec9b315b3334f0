"""Skyscale's built-in Python runtime, standard library only.

Run as `/usr/bin/python3 /var/runtime/bootstrap.py` with cwd /var/task. It imports the handler
named by `_HANDLER` (`module.function`, `/` allowed in the module path) once, then loops:
next event -> handler(event, context) -> response or error. An init failure is reported and
ends the process with status 1.

Two channels to the agent, with the same semantics (events, context, error types):
- the runtime pipe: when the agent offers `_SKYSCALE_RUNTIME_FDS=<read_fd>,<write_fd>`, agent
  frames (the `skyscale-protocol` format) on two inherited pipes: InitDone when ready or when
  init failed, then Invoke in, Result out. One write and one read per invocation, no HTTP.
- the Lambda Runtime API over HTTP (`AWS_LAMBDA_RUNTIME_API`): GET /next, POST /response,
  /error, /init/error. Used when the pipe is not offered, or forced with
  `SKYSCALE_RUNTIME_API_ONLY=1`.

Output is flushed before every answer, so the agent's log cut for an invocation holds
everything the handler printed.

Pre-started ("zygote", `_SKYSCALE_ZYGOTE=1`, see skyscale-protocol's docs): started before the
sandbox belongs to a function, with a minimal environment in `/`, it imports everything below
and waits on the runtime pipe for an Init frame. It then makes itself look exactly like a fresh
start with that Init (environment, time zone, working directory) and carries on as one. The
HTTP client is imported only when the HTTP channel is used (it pulls in `email` and `ssl`), in
either mode, so both modes leave the same modules imported.
"""

import decimal
import importlib
import json
import json.encoder
import os
import struct
import sys
import time
import traceback

API_PREFIX = "/2018-06-01/runtime"
BOOTSTRAP_FILE = os.path.abspath(__file__)
RUNTIME_FDS_ENV = "_SKYSCALE_RUNTIME_FDS"
ZYGOTE_ENV = "_SKYSCALE_ZYGOTE"
# Where the function's layers are (set by the control plane only for a function with layers).
OPT_ENV = "_SKYSCALE_OPT"
API_ONLY_ENV = "SKYSCALE_RUNTIME_API_ONLY"
# The Runtime API refuses bodies over 6 MB (413); the pipe applies the same limit here.
MAX_BODY = 6 * 1024 * 1024


class FaultError(Exception):
    """An error the runtime reports with a Lambda error type instead of a class name."""

    def __init__(self, error_type, message, trace=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


class Invocation:
    """One event as the handler's context sees it, whichever channel brought it."""

    __slots__ = ("request_id", "deadline_ms", "arn", "client_context", "cognito_identity",
                 "trace_id", "is_json", "body")

    def __init__(self, request_id, deadline_ms, arn, client_context, cognito_identity,
                 trace_id, is_json, body):
        self.request_id = request_id
        self.deadline_ms = deadline_ms
        self.arn = arn
        self.client_context = client_context
        self.cognito_identity = cognito_identity
        self.trace_id = trace_id
        self.is_json = is_json
        self.body = body


class HttpChannel:
    """The Lambda Runtime API: one persistent keep-alive HTTP/1.1 connection, TCP_NODELAY."""

    def __init__(self, address):
        import http.client  # only here: ~25 ms of imports the pipe channel never needs

        self.client = http.client
        host, _, port = address.rpartition(":")
        self.host = host or "127.0.0.1"
        self.port = int(port)
        self.conn = None

    def _connect(self):
        import socket  # already imported by http.client

        conn = self.client.HTTPConnection(self.host, self.port, timeout=None)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = conn

    def request(self, method, path, body=None, headers=None):
        """Returns (status, headers, body bytes). Reconnects once if the connection dropped."""
        for attempt in (0, 1):
            if self.conn is None:
                self._connect()
            try:
                self.conn.request(method, API_PREFIX + path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.conn.close()
                    self.conn = None
                return resp.status, resp.headers, data
            except (self.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")

    def post(self, path, body, content_type="application/json", error_type=None):
        flush_output()
        headers = {"Content-Type": content_type}
        if error_type:
            headers["Lambda-Runtime-Function-Error-Type"] = error_type
        status, _, data = self.request("POST", path, body=body, headers=headers)
        if status != 202:
            raise RuntimeError(f"POST {path} answered {status}: {data[:200]!r}")

    def ready(self):
        """The first GET /next tells the agent that init is done; output goes out first."""
        flush_output()

    def init_error(self, doc, error_type):
        self.post("/init/error", doc, error_type=error_type)

    def next(self):
        status, headers, body = self.request("GET", "/invocation/next")
        if status != 200:
            raise RuntimeError(f"GET /next answered {status}: {body[:200]!r}")
        request_id = headers.get("Lambda-Runtime-Aws-Request-Id")
        if not request_id:
            raise RuntimeError("Failed to get next")
        return Invocation(
            request_id,
            headers.get("Lambda-Runtime-Deadline-Ms"),
            headers.get("Lambda-Runtime-Invoked-Function-Arn"),
            headers.get("Lambda-Runtime-Client-Context"),
            headers.get("Lambda-Runtime-Cognito-Identity"),
            headers.get("Lambda-Runtime-Trace-Id"),
            headers.get("Content-Type") == "application/json",
            body,
        )

    def respond(self, request_id, payload, content_type):
        self.post(f"/invocation/{request_id}/response", payload, content_type)

    def fail(self, request_id, doc, error_type=None):
        self.post(f"/invocation/{request_id}/error", doc, error_type=error_type)


# Frame tags of skyscale-protocol.
TAG_INIT = 2
TAG_INIT_DONE = 3
TAG_INVOKE = 4
TAG_RESULT = 5
TAG_SNAPSHOT = 8
TAG_SNAPSHOT_DONE = 9
_HEAD = struct.Struct(">IBI")  # frame length (after this field), tag, metadata length
# The hot path's JSON without json.dumps/json.loads overhead (about 4 us per invocation).
_quote = json.encoder.encode_basestring_ascii
_decode = json.JSONDecoder().decode
_RESULT_META = (
    '{"request_id":%s,"status":"%s","error_type":%s,"duration_us":0,"max_rss_kb":0,"logs":""}'
)


class PipeChannel:
    """Agent frames on the two pipes the agent lent us (see skyscale-protocol's docs)."""

    def __init__(self, read_fd, write_fd):
        self.rfd = read_fd
        self.wfd = write_fd
        self.buf = bytearray()

    def send(self, tag, meta, body=b""):
        """Writes one frame; `meta` is a dict or already-encoded JSON bytes."""
        flush_output()
        if isinstance(meta, dict):
            meta = json.dumps(meta, separators=(",", ":")).encode()
        frame = b"".join((_HEAD.pack(5 + len(meta) + len(body), tag, len(meta)), meta, body))
        view = memoryview(frame)
        while view:  # a pipe may take less than asked for
            view = view[os.write(self.wfd, view):]

    def _read(self, n):
        chunk = os.read(self.rfd, n)
        if not chunk:
            raise EOFError("the agent closed the runtime pipe")
        return chunk

    def recv(self):
        """Returns (tag, metadata dict, body bytes) of the next frame."""
        buf = self.buf
        while len(buf) < 4:
            buf += self._read(65536)  # a small frame arrives whole in this one read
        total = 4 + struct.unpack_from(">I", buf)[0]
        if len(buf) < total:
            # A big event: read the rest straight into a buffer of the frame's size.
            frame = bytearray(total)
            frame[: len(buf)] = buf
            got = len(buf)
            view = memoryview(frame)
            while got < total:
                n = os.readv(self.rfd, [view[got:]])
                if not n:
                    raise EOFError("the agent closed the runtime pipe")
                got += n
            view.release()
            buf = frame
        _, tag, meta_len = _HEAD.unpack_from(buf)
        meta = _decode(buf[9 : 9 + meta_len].decode()) if meta_len else None
        body = bytes(buf[9 + meta_len : total])
        self.buf = buf[total:]
        return tag, meta, body

    def ready(self):
        self.send(TAG_INIT_DONE, {"ok": True, "error_type": None, "duration_us": 0, "logs": ""})

    def init_error(self, doc, error_type):
        meta = {"ok": False, "error_type": error_type, "duration_us": 0, "logs": ""}
        self.send(TAG_INIT_DONE, meta, doc)

    def next(self):
        tag, meta, body = self.recv()
        while tag == TAG_SNAPSHOT:
            self.send(TAG_SNAPSHOT_DONE, run_snapshot_hooks(meta))
            tag, meta, body = self.recv()
        if tag != TAG_INVOKE:
            raise RuntimeError(f"expected an Invoke frame from the agent, got tag {tag}")
        return Invocation(
            meta["request_id"],
            meta.get("deadline_ms"),
            meta.get("invoked_function_arn"),
            meta.get("client_context"),
            None,  # the agent has no Cognito identity to pass, on either channel
            meta.get("trace_id"),
            True,  # the event is JSON, as the Runtime API's Content-Type says
            body,
        )

    def _result(self, request_id, status, error_type, body):
        if len(body) > MAX_BODY:
            # What the Runtime API's 413 leads to on the HTTP channel: the runtime gives up.
            raise RuntimeError(f"response of {len(body)} bytes exceeds the {MAX_BODY}-byte limit")
        error_type = "null" if error_type is None else _quote(error_type)
        meta = _RESULT_META % (_quote(request_id), status, error_type)
        self.send(TAG_RESULT, meta.encode(), body)

    def respond(self, request_id, payload, content_type):
        self._result(request_id, "ok", None, payload)

    def fail(self, request_id, doc, error_type=None):
        self._result(request_id, "error", error_type, doc)


# ---------------------------------------------------------------------------------------------
# SnapStart: Lambda's `snapshot_restore_py` and the hooks it registers


_before_snapshot = []
_after_restore = []


def install_snapshot_restore_py():
    """Makes `import snapshot_restore_py` give the handler Lambda's module: the register
    functions return the function, so they also work as decorators."""
    import types

    module = types.ModuleType("snapshot_restore_py")
    module.__doc__ = "Runtime hooks around a SnapStart snapshot (Skyscale's built-in runtime)."

    def register_before_snapshot(func, *args, **kwargs):
        _before_snapshot.append((func, args, kwargs))
        return func

    def register_after_restore(func, *args, **kwargs):
        _after_restore.append((func, args, kwargs))
        return func

    module.register_before_snapshot = register_before_snapshot
    module.register_after_restore = register_after_restore
    module.get_before_snapshot = lambda: list(_before_snapshot)
    module.get_after_restore = lambda: list(_after_restore)
    sys.modules["snapshot_restore_py"] = module


def run_snapshot_hooks(meta):
    """Runs the hooks of one side of a snapshot, in the order they were registered; the
    first that raises stops them and fails the snapshot (before) or the restore (after)."""
    started = time.monotonic()
    if meta.get("phase") == "after_restore":
        # The restored sandbox's own identity (log stream, initialization type).
        for key, value in meta.get("env") or []:
            os.environ[key] = value
        # Every restore of one snapshot starts with the same memory: `random`'s state
        # would repeat in each. The kernel's randomness (os.urandom, secrets) is fresh.
        if "random" in sys.modules:
            sys.modules["random"].seed()
        hooks = _after_restore
    else:
        hooks = _before_snapshot
    error = None
    for func, args, kwargs in list(hooks):
        try:
            func(*args, **kwargs)
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            log_error(type(e).__name__, str(e), user_frames(e.__traceback__))
            break
    return {"ok": error is None, "error": error,
            "duration_us": int((time.monotonic() - started) * 1e6), "logs": ""}


def offered_pipe():
    """A PipeChannel on the runtime pipe if the agent offers it, else None."""
    fds = os.environ.pop(RUNTIME_FDS_ENV, None)  # the handler sees the same env either way
    if fds:
        try:
            read_fd, write_fd = (int(fd) for fd in fds.split(","))
        except ValueError:
            print(f"[WARNING] ignoring malformed {RUNTIME_FDS_ENV}={fds!r}", file=sys.stderr)
        else:
            for fd in (read_fd, write_fd):
                os.set_inheritable(fd, False)  # not for the handler's subprocesses
            return PipeChannel(read_fd, write_fd)
    return None


def open_channel(pipe):
    """The runtime pipe when the agent offers it (and it is not refused), else HTTP."""
    if pipe and os.environ.get(API_ONLY_ENV, "") not in ("", "0"):
        for fd in (pipe.rfd, pipe.wfd):
            try:
                os.close(fd)  # the agent sees end of file and waits for HTTP
            except OSError:
                pass
        pipe = None
    if pipe:
        return pipe
    return HttpChannel(os.environ["AWS_LAMBDA_RUNTIME_API"])


def startup_changes():
    """What the interpreter's own start-up did to the environment it was given (PEP 538 locale
    coercion adds LC_CTYPE, a .pth file may set variables): (set or changed, removed), set ones
    in the order they now appear. Compares /proc/self/environ (the environment as exec'd)
    with os.environ."""
    try:
        with open("/proc/self/environ", "rb") as f:
            given = f.read()
    except OSError:
        return {}, []
    given = dict(e.split(b"=", 1) for e in given.split(b"\0") if b"=" in e)
    now = os.environb
    changed = {os.fsdecode(k): os.fsdecode(v) for k, v in now.items() if given.get(k) != v}
    removed = [os.fsdecode(k) for k in given if k not in now]
    return changed, removed


def await_init(pipe, changes):
    """Zygote mode: waits for the Init frame and becomes the process a fresh start with that
    Init would have been: its environment, with the same `changes` made by the start-up
    (`startup_changes`), its time zone, its working directory. Returns the init failure to
    report (a FaultError) or None."""
    tag, meta, _ = pipe.recv()
    if tag != TAG_INIT:
        raise RuntimeError(f"expected an Init frame from the agent, got tag {tag}")
    env = dict(meta["env"])  # later duplicates win, as in a spawn
    env.pop(RUNTIME_FDS_ENV, None)  # a fresh runtime never shows these to the handler
    env.pop(ZYGOTE_ENV, None)
    # Unset and set through os.environ so that C-level getenv agrees; in name order, which is
    # the order a spawn gives (and so os.environ's iteration order and the C environ's).
    os.environ.clear()
    for name in sorted(env):
        os.environ[name] = env[name]
    changed, removed = changes
    for name, value in changed.items():
        os.environ[name] = value
    for name in removed:
        os.environ.pop(name, None)
    time.tzset()  # the time module read TZ when it was imported
    try:
        os.chdir(meta["cwd"])
    except OSError as e:
        return FaultError("Runtime.InvalidEntrypoint", f"cannot start in {meta['cwd']!r}: {e}")
    return None


def flush_output():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a handler may have closed or replaced them
            pass


def ensure_ascii():
    """awslambdaric writes raw UTF-8 from python3.12 on, \\u escapes before."""
    env = os.environ.get("AWS_EXECUTION_ENV", "")
    return not any(env == f"AWS_Lambda_python3.{v}" for v in range(12, 20))


def _json_default(obj):
    if isinstance(obj, decimal.Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def user_frames(tb):
    """The traceback without the frames of this file, as `traceback.format_list` lines."""
    frames = traceback.extract_tb(tb)
    while frames and os.path.abspath(frames[0].filename) == BOOTSTRAP_FILE:
        frames = frames[1:]
    return traceback.format_list(frames)


def log_error(error_type, message, trace):
    text = f"[ERROR] {error_type}: {message}"
    if trace:
        text += "\nTraceback (most recent call last):\n" + "".join(trace).rstrip("\n")
    print(text, file=sys.stderr, flush=True)


def error_doc(error_type, message, trace, request_id=None):
    doc = {"errorMessage": message, "errorType": error_type}
    if request_id is not None:
        doc["requestId"] = request_id
    doc["stackTrace"] = trace
    return json.dumps(doc).encode()


# ---------------------------------------------------------------------------------------------
# Init


def load_handler(handler):
    """Imports the handler's module and returns the function, or raises FaultError."""
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise FaultError("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {e}")
    if not modname or not fname:
        raise FaultError(
            "Runtime.MalformedHandlerName",
            f"Bad handler '{handler}': not enough values to unpack (expected 2, got 1)",
        )
    modname = modname.replace("/", ".")
    if modname in sys.builtin_module_names:
        raise FaultError(
            "Runtime.BuiltInModuleConflict",
            f"Cannot use built-in module {modname} as a handler module",
        )
    try:
        module = importlib.import_module(modname)
    except ImportError as e:
        raise FaultError(
            "Runtime.ImportModuleError", f"Unable to import module '{modname}': {e}"
        )
    except SyntaxError as e:
        trace = [f'  File "{e.filename}" Line {e.lineno}\n', f"    {(e.text or '').strip()}\n"]
        raise FaultError(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {e}", trace
        )
    except Exception as e:
        raise FaultError(type(e).__name__, str(e), user_frames(e.__traceback__))
    try:
        func = getattr(module, fname)
    except AttributeError:
        raise FaultError(
            "Runtime.HandlerNotFound", f"Handler '{fname}' missing on module '{modname}'"
        )
    if not callable(func):
        raise FaultError(
            "Runtime.HandlerNotFound", f"Handler '{fname}' on module '{modname}' is not callable"
        )
    return func


# ---------------------------------------------------------------------------------------------
# Context


class CognitoIdentity:
    def __init__(self, identity_id=None, pool_id=None):
        self.cognito_identity_id = identity_id
        self.cognito_identity_pool_id = pool_id

    def __repr__(self):
        return (
            f"CognitoIdentity([cognito_identity_id={self.cognito_identity_id}"
            f", cognito_identity_pool_id={self.cognito_identity_pool_id}])"
        )


class Client:
    def __init__(self, client):
        self.installation_id = client.get("installation_id")
        self.app_title = client.get("app_title")
        self.app_version_name = client.get("app_version_name")
        self.app_version_code = client.get("app_version_code")
        self.app_package_name = client.get("app_package_name")


class ClientContext:
    def __init__(self, doc):
        client = doc.get("client")
        self.client = Client(client) if isinstance(client, dict) else None
        self.custom = doc.get("custom")
        self.env = doc.get("env")


class LambdaContext:
    def __init__(self, request_id, deadline_ms, invoked_function_arn, client_context, identity):
        self.aws_request_id = request_id
        self.request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.client_context = client_context
        self.identity = identity
        self.tenant_id = None
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        try:
            self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", ""))
        except ValueError:
            self.memory_limit_in_mb = None
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, msg):
        sys.stdout.write(str(msg))
        sys.stdout.flush()

    def __repr__(self):
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},"
            f"function_name={self.function_name},function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn}])"
        )


def build_context(inv):
    try:
        deadline_ms = int(inv.deadline_ms or 0)
    except ValueError:
        deadline_ms = 0
    client_context = None
    raw = inv.client_context
    if raw:
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as e:
            raise FaultError(
                "Runtime.LambdaContextUnmarshalError", f"Unable to parse Client Context JSON: {e}"
            )
        client_context = ClientContext(doc if isinstance(doc, dict) else {})
    identity = CognitoIdentity()
    raw = inv.cognito_identity
    if raw:
        try:
            doc = json.loads(raw)
            identity = CognitoIdentity(doc.get("cognitoIdentityId"), doc.get("cognitoIdentityPoolId"))
        except (ValueError, AttributeError, RecursionError) as e:
            raise FaultError(
                "Runtime.LambdaContextUnmarshalError", f"Unable to parse Cognito Identity JSON: {e}"
            )
    return LambdaContext(inv.request_id, deadline_ms, inv.arn or "", client_context, identity)


# ---------------------------------------------------------------------------------------------
# Invoke loop


def handle_one(channel, handler, ascii_only):
    inv = channel.next()
    request_id = inv.request_id
    if inv.trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = inv.trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)

    try:
        context = build_context(inv)
        if inv.is_json:
            try:
                event = json.loads(inv.body)
            # Valid JSON nested deeper than the interpreter's recursion limit: the same error
            # as invalid JSON, not a crash of the runtime.
            except (ValueError, RecursionError) as e:
                raise FaultError("Runtime.UnmarshalError", f"Unable to unmarshal input: {e}")
        else:
            event = inv.body
    except FaultError as e:
        log_error(e.error_type, e.message, e.trace)
        doc = error_doc(e.error_type, e.message, e.trace, request_id)
        channel.fail(request_id, doc, error_type=e.error_type)
        return

    try:
        result = handler(event, context)
    except Exception as e:
        error_type = type(e).__name__
        trace = user_frames(e.__traceback__)
        log_error(error_type, str(e), trace)
        doc = error_doc(error_type, str(e), trace, request_id)
        channel.fail(request_id, doc)
        return

    # As Lambda's runtime: the result is JSON, whatever its type (bytes are a marshal error).
    try:
        payload = json.dumps(result, default=_json_default, ensure_ascii=ascii_only).encode()
    except (TypeError, ValueError, RecursionError) as e:
        error_type = "Runtime.MarshalError"
        message = f"Unable to marshal response: {e}"
        log_error(error_type, message, [])
        doc = error_doc(error_type, message, [], request_id)
        channel.fail(request_id, doc, error_type=error_type)
        return
    if len(payload) > MAX_BODY:
        # Lambda's answer to an oversized response: a function error, and the runtime lives.
        error_type = "Function.ResponseSizeTooLarge"
        message = (f"Response payload size ({len(payload)} bytes) exceeded maximum allowed "
                   f"payload size ({MAX_BODY} bytes).")
        log_error(error_type, message, [])
        channel.fail(request_id, error_doc(error_type, message, [], request_id),
                     error_type=error_type)
        return
    channel.respond(request_id, payload, "application/json")


def report_init_error(channel, e):
    """Reports a failed init and ends the process with status 1."""
    log_error(e.error_type, e.message, e.trace)
    flush_output()
    channel.init_error(error_doc(e.error_type, e.message, e.trace), e.error_type)
    sys.exit(1)


def main():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
    changes = startup_changes() if os.environ.get(ZYGOTE_ENV) == "1" else None
    pipe = offered_pipe()
    fault = None
    if os.environ.pop(ZYGOTE_ENV, None) == "1":
        if not pipe:
            sys.exit(f"{ZYGOTE_ENV} is set but {RUNTIME_FDS_ENV} offers no runtime pipe")
        fault = await_init(pipe, changes)
    channel = open_channel(pipe)
    if fault:
        report_init_error(channel, fault)
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    # Our own directory must not shadow user modules; the task root comes first.
    runtime_dir = os.path.dirname(BOOTSTRAP_FILE)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != runtime_dir]
    sys.path.insert(0, task_root)
    # Layers (merged at /opt), after the function's code as in Lambda: the site-packages
    # of this Python's version, then /opt/python.
    opt = os.environ.pop(OPT_ENV, None)
    if opt:
        python = os.path.join(opt, "python")
        site = os.path.join(python, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
        sys.path[1:1] = [site, python]
    # boto3 and botocore, as Lambda's Python runtimes have them: last, so that a function's
    # own copy (in its code) wins.
    sdk_dir = os.path.join(runtime_dir, "sdk")
    if os.path.isfile(os.path.join(sdk_dir, "boto3", "__init__.py")):
        sys.path.append(sdk_dir)

    install_snapshot_restore_py()
    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except FaultError as e:
        report_init_error(channel, e)

    ascii_only = ensure_ascii()
    channel.ready()
    while True:
        handle_one(channel, handler, ascii_only)


if __name__ == "__main__":
    main()
