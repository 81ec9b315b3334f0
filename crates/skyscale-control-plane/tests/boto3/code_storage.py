"""boto3 against a control plane whose code storage limit is 2 MB (run by lambda_api.rs):
GetAccountSettings reports the limits and the usage, a package past the limit is refused
with CodeStorageExceededException and changes nothing, and deleting a function gives its
storage back.

Environment: SKYSCALE_URL, SKYSCALE_KEY_ID, SKYSCALE_SECRET. Prints one `ok: ...` line per
checked step and `ALL OK` at the end; any failure raises (non-zero exit).
"""

import io
import os
import time
import zipfile

from skyscale_test import ROLE, client, expect_error, ok, zip_of

LIMIT = 2 * 1024 * 1024


def big_zip():
    """1.2 MB that does not compress: its zip and its unpacked copy take 2.4 MB."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("handler.py", "def handler(event, context):\n    return 'new'\n")
        z.writestr("noise.bin", os.urandom(1_200_000))
    return buf.getvalue()


def usage(lam):
    return lam.get_account_settings()["AccountUsage"]["TotalCodeSize"]


def main():
    lam = client()
    settings = lam.get_account_settings()
    limit = settings["AccountLimit"]
    assert limit["TotalCodeSize"] == LIMIT, settings
    assert limit["CodeSizeZipped"] == 50 * 1024 * 1024, settings
    assert limit["CodeSizeUnzipped"] == 250 * 1024 * 1024, settings
    assert settings["AccountUsage"]["TotalCodeSize"] == 0, settings
    ok("get_account_settings: the configured limit, nothing used")

    old = zip_of("def handler(event, context):\n    return 'old'\n")
    created = lam.create_function(FunctionName="app", Runtime="python3.11", Role=ROLE,
                                  Handler="handler.handler", Code={"ZipFile": old})
    used = usage(lam)
    # The zip and the unpacked package, in whole 4 KiB blocks: more than the zip alone.
    # With the bytecode compiled at deploy, `__pycache__` and its pyc count too (5 blocks).
    assert len(old) < used <= 20 * 1024, used
    ok(f"usage after one small function: {used} bytes")

    big = big_zip()
    e = expect_error("CodeStorageExceededException",
                     lambda: lam.update_function_code(FunctionName="app", ZipFile=big), 400)
    assert e.response["Error"]["Message"].startswith("code storage limit exceeded"), e.response
    expect_error("CodeStorageExceededException",
                 lambda: lam.create_function(FunctionName="other", Runtime="python3.11",
                                             Role=ROLE, Handler="handler.handler",
                                             Code={"ZipFile": big}), 400)
    assert usage(lam) == used
    f = lam.get_function(FunctionName="app")["Configuration"]
    assert f["CodeSha256"] == created["CodeSha256"], f
    assert f["RevisionId"] == created["RevisionId"], f
    out = lam.invoke(FunctionName="app", Payload=b"{}")
    assert out["Payload"].read() == b'"old"', out
    expect_error("ResourceNotFoundException", lambda: lam.get_function(FunctionName="other"), 404)
    ok("a package past the limit: CodeStorageExceededException, nothing changed")

    lam.delete_function(FunctionName="app")
    deadline = time.monotonic() + 30
    while usage(lam) != 0:
        assert time.monotonic() < deadline, usage(lam)
        time.sleep(0.05)
    ok("deleting the function gave its storage back")
    print("ALL OK")


if __name__ == "__main__":
    main()
