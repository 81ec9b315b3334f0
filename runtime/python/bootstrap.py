"""Skyscale's built-in Python runtime: a Lambda Runtime API client, standard library only.

Run as `/usr/bin/python3 /var/runtime/bootstrap.py` with cwd /var/task. It imports the handler
named by `_HANDLER` (`module.function`, `/` allowed in the module path) once, then loops:
GET /next -> handler(event, context) -> POST /response or /error. Init failures are posted to
/init/error and end the process with status 1.

Output is flushed before every POST, so the agent's log cut for an invocation holds everything
the handler printed.
"""

import decimal
import http.client
import importlib
import json
import os
import socket
import sys
import time
import traceback

API_PREFIX = "/2018-06-01/runtime"
BOOTSTRAP_FILE = os.path.abspath(__file__)


class FaultError(Exception):
    """An error the runtime reports with a Lambda error type instead of a class name."""

    def __init__(self, error_type, message, trace=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


class RuntimeClient:
    """One persistent keep-alive HTTP/1.1 connection to the Runtime API, TCP_NODELAY set."""

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self.host = host or "127.0.0.1"
        self.port = int(port)
        self.conn = None

    def _connect(self):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=None)
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
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
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


def build_context(request_id, headers):
    try:
        deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms") or 0)
    except ValueError:
        deadline_ms = 0
    client_context = None
    raw = headers.get("Lambda-Runtime-Client-Context")
    if raw:
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise FaultError(
                "Runtime.LambdaContextUnmarshalError", f"Unable to parse Client Context JSON: {e}"
            )
        client_context = ClientContext(doc if isinstance(doc, dict) else {})
    identity = CognitoIdentity()
    raw = headers.get("Lambda-Runtime-Cognito-Identity")
    if raw:
        try:
            doc = json.loads(raw)
            identity = CognitoIdentity(doc.get("cognitoIdentityId"), doc.get("cognitoIdentityPoolId"))
        except (ValueError, AttributeError) as e:
            raise FaultError(
                "Runtime.LambdaContextUnmarshalError", f"Unable to parse Cognito Identity JSON: {e}"
            )
    arn = headers.get("Lambda-Runtime-Invoked-Function-Arn") or ""
    return LambdaContext(request_id, deadline_ms, arn, client_context, identity)


# ---------------------------------------------------------------------------------------------
# Invoke loop


def handle_one(client, handler, ascii_only):
    status, headers, body = client.request("GET", "/invocation/next")
    if status != 200:
        raise RuntimeError(f"GET /next answered {status}: {body[:200]!r}")
    request_id = headers.get("Lambda-Runtime-Aws-Request-Id")
    if not request_id:
        raise RuntimeError("Failed to get next")
    trace_id = headers.get("Lambda-Runtime-Trace-Id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)

    try:
        context = build_context(request_id, headers)
        if headers.get("Content-Type") == "application/json":
            try:
                event = json.loads(body)
            except ValueError as e:
                raise FaultError("Runtime.UnmarshalError", f"Unable to unmarshal input: {e}")
        else:
            event = body
    except FaultError as e:
        log_error(e.error_type, e.message, e.trace)
        doc = error_doc(e.error_type, e.message, e.trace, request_id)
        client.post(f"/invocation/{request_id}/error", doc, error_type=e.error_type)
        return

    try:
        result = handler(event, context)
    except Exception as e:
        error_type = type(e).__name__
        trace = user_frames(e.__traceback__)
        log_error(error_type, str(e), trace)
        doc = error_doc(error_type, str(e), trace, request_id)
        client.post(f"/invocation/{request_id}/error", doc)
        return

    if isinstance(result, (bytes, bytearray)):
        client.post(f"/invocation/{request_id}/response", bytes(result), "application/unknown")
        return
    try:
        payload = json.dumps(result, default=_json_default, ensure_ascii=ascii_only).encode()
    except (TypeError, ValueError) as e:
        error_type = "Runtime.MarshalError"
        message = f"Unable to marshal response: {e}"
        log_error(error_type, message, [])
        doc = error_doc(error_type, message, [], request_id)
        client.post(f"/invocation/{request_id}/error", doc, error_type=error_type)
        return
    client.post(f"/invocation/{request_id}/response", payload)


def main():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
    client = RuntimeClient(os.environ["AWS_LAMBDA_RUNTIME_API"])
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    # Our own directory must not shadow user modules; the task root comes first.
    runtime_dir = os.path.dirname(BOOTSTRAP_FILE)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != runtime_dir]
    sys.path.insert(0, task_root)

    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except FaultError as e:
        log_error(e.error_type, e.message, e.trace)
        client.post("/init/error", error_doc(e.error_type, e.message, e.trace), error_type=e.error_type)
        sys.exit(1)

    ascii_only = ensure_ascii()
    while True:
        handle_one(client, handler, ascii_only)


if __name__ == "__main__":
    main()
