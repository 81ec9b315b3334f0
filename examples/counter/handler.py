# Module-level state lives as long as the warm sandbox: the first invocation after a cold
# start sees 1, the next ones 2, 3, ... until the sandbox is retired (new code or config).
import os

invocations = 0
sandbox_pid = os.getpid()


def handler(event, context):
    global invocations
    invocations += 1
    return {"invocations": invocations, "pid": sandbox_pid}
