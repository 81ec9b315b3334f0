"""boto3 and the AWS CLI v1 against a real Skyscale control plane (run by lambda_api.rs).

Environment: SKYSCALE_URL, SKYSCALE_KEY_ID, SKYSCALE_SECRET. Prints one `ok: ...` line per
checked step and `ALL OK` at the end; any failure raises (non-zero exit).
"""

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

URL = os.environ["SKYSCALE_URL"]
KEY_ID = os.environ["SKYSCALE_KEY_ID"]
SECRET = os.environ["SKYSCALE_SECRET"]
REGION = "us-east-1"
ROLE = "arn:aws:iam::000000000000:role/ignored"


def client(key_id=KEY_ID, secret=SECRET):
    return boto3.client(
        "lambda",
        endpoint_url=URL,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(read_timeout=120, connect_timeout=10),
    )


def ok(what):
    print(f"ok: {what}", flush=True)


def zip_of(source):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", source)
    return buf.getvalue()


V1 = """
import os

def handler(event, context):
    if event.get("fail"):
        raise ValueError("boom")
    print("hello from v1")
    return {"v": 1, "got": event, "fn": context.function_name,
            "greeting": os.environ.get("GREETING")}
"""
V2 = V1.replace('"v": 1', '"v": 2').replace("hello from v1", "hello from v2")


def expect_error(cls_name, fn, status):
    lam = client()
    cls = getattr(lam.exceptions, cls_name)
    try:
        fn()
    except cls as e:
        meta = e.response["ResponseMetadata"]
        assert meta["HTTPStatusCode"] == status, (cls_name, meta)
        assert e.response["Error"]["Code"] == cls_name, e.response
        assert e.response["Error"]["Message"], e.response
        assert meta.get("RequestId"), meta
        return e
    raise AssertionError(f"expected {cls_name}")


def expect_client_error(code, fn):
    try:
        fn()
    except ClientError as e:
        assert e.response["Error"]["Code"] == code, e.response
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403, e.response
        return e
    raise AssertionError(f"expected ClientError {code}")


def main():
    lam = client()
    name = "life"
    zip1 = zip_of(V1)

    # --- create, get, waiters -----------------------------------------------------------
    created = lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="handler.handler",
        Code={"ZipFile": zip1},
        Description="lifecycle test",
        Timeout=5,
        MemorySize=128,
        Environment={"Variables": {"GREETING": "hello"}},
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201, created
    assert created["FunctionName"] == name
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert created["FunctionArn"] == arn, created["FunctionArn"]
    assert created["CodeSha256"] == base64.b64encode(hashlib.sha256(zip1).digest()).decode()
    assert created["CodeSize"] == len(zip1)
    assert created["State"] == "Active" and created["LastUpdateStatus"] == "Successful"
    assert created["Version"] == "$LATEST" and created["PackageType"] == "Zip"
    assert created["Environment"]["Variables"] == {"GREETING": "hello"}
    assert len(created["RevisionId"]) == 36 and created["RevisionId"].count("-") == 4
    assert created["LastModified"].endswith("+0000"), created["LastModified"]
    ok("create_function")

    got = lam.get_function(FunctionName=name)
    assert got["Configuration"]["RevisionId"] == created["RevisionId"]
    assert lam.get_function(FunctionName=arn)["Configuration"]["FunctionName"] == name
    conf = lam.get_function_configuration(FunctionName=f"{name}:$LATEST")
    assert conf["Handler"] == "handler.handler" and conf["Timeout"] == 5
    assert conf["Description"] == "lifecycle test"
    ok("get_function, get_function_configuration (name, ARN, qualifier)")

    lam.get_waiter("function_active").wait(FunctionName=name)
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    lam.get_waiter("function_updated").wait(FunctionName=name)
    lam.get_waiter("function_exists").wait(FunctionName=name)
    ok("waiters")

    # --- list with pagination ----------------------------------------------------------
    for i in range(5):
        lam.create_function(
            FunctionName=f"page-{i}", Runtime="python3.11", Role=ROLE,
            Handler="handler.handler", Code={"ZipFile": zip1},
        )
    first = lam.list_functions(MaxItems=2)
    assert len(first["Functions"]) == 2 and first.get("NextMarker"), first
    pages = list(
        lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 2})
    )
    names = [f["FunctionName"] for p in pages for f in p["Functions"]]
    assert len(pages) == 3, [len(p["Functions"]) for p in pages]
    assert sorted(names) == sorted([name] + [f"page-{i}" for i in range(5)]), names
    assert len(set(names)) == len(names)
    ok(f"list_functions paginated over {len(pages)} pages")

    # --- invoke ------------------------------------------------------------------------
    r = lam.invoke(FunctionName=name, Payload=json.dumps({"a": 1}))
    assert r["StatusCode"] == 200 and "FunctionError" not in r, r
    assert r["ExecutedVersion"] == "$LATEST"
    body = json.loads(r["Payload"].read())
    assert body == {"v": 1, "got": {"a": 1}, "fn": name, "greeting": "hello"}, body
    ok("invoke RequestResponse")

    r = lam.invoke(FunctionName=name, Payload=b'{"fail": true}')
    assert r["StatusCode"] == 200 and r["FunctionError"] == "Unhandled", r
    err = json.loads(r["Payload"].read())
    assert err["errorType"] == "ValueError" and err["errorMessage"] == "boom", err
    ok("invoke with a raising handler gives FunctionError")

    r = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    assert "hello from v1" in base64.b64decode(r["LogResult"]).decode(), r
    ok("invoke LogType Tail")

    r = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"a": 2}')
    assert r["StatusCode"] == 202, r
    r = lam.invoke(FunctionName=name, InvocationType="DryRun")
    assert r["StatusCode"] == 204, r
    ok("invoke Event (202) and DryRun (204)")

    # --- update code and configuration -------------------------------------------------
    zip2 = zip_of(V2)
    up = lam.update_function_code(FunctionName=name, ZipFile=zip2)
    assert up["CodeSha256"] == base64.b64encode(hashlib.sha256(zip2).digest()).decode()
    assert up["RevisionId"] != created["RevisionId"]
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    r = lam.invoke(FunctionName=name, Payload=b"{}")
    assert json.loads(r["Payload"].read())["v"] == 2
    ok("update_function_code")

    up = lam.update_function_configuration(
        FunctionName=name, MemorySize=256, Timeout=10,
        Environment={"Variables": {"GREETING": "bonjour"}}, Description="changed",
    )
    assert up["MemorySize"] == 256 and up["Timeout"] == 10, up
    assert up["Description"] == "changed"
    r = lam.invoke(FunctionName=name, Payload=b"{}")
    assert json.loads(r["Payload"].read())["greeting"] == "bonjour"
    ok("update_function_configuration")

    # --- concurrency -------------------------------------------------------------------
    put = lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    assert put["ReservedConcurrentExecutions"] == 0, put
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 0
    e = expect_error(
        "TooManyRequestsException",
        lambda: lam.invoke(FunctionName=name, Payload=b"{}"),
        429,
    )
    assert e.response.get("Reason") == "ReservedFunctionConcurrentInvocationLimitExceeded", e.response
    settings = lam.get_account_settings()
    limit = settings["AccountLimit"]
    assert limit["UnreservedConcurrentExecutions"] == limit["ConcurrentExecutions"], settings
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=3)
    limit = lam.get_account_settings()["AccountLimit"]
    assert limit["UnreservedConcurrentExecutions"] == limit["ConcurrentExecutions"] - 3
    lam.delete_function_concurrency(FunctionName=name)
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    ok("put/get/delete_function_concurrency, throttling")

    settings = lam.get_account_settings()
    assert settings["AccountUsage"]["FunctionCount"] == 6, settings
    assert settings["AccountUsage"]["TotalCodeSize"] > 0
    assert settings["AccountLimit"]["CodeSizeZipped"] > 0
    ok("get_account_settings")

    # --- errors ------------------------------------------------------------------------
    e = expect_error(
        "ResourceNotFoundException", lambda: lam.get_function(FunctionName="nope"), 404
    )
    assert e.response["Error"]["Message"] == (
        "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope"
    ), e.response
    expect_error(
        "ResourceNotFoundException",
        lambda: lam.invoke(FunctionName="nope", Payload=b"{}"),
        404,
    )
    expect_error(
        "ResourceConflictException",
        lambda: lam.create_function(
            FunctionName=name, Runtime="python3.11", Role=ROLE,
            Handler="handler.handler", Code={"ZipFile": zip1},
        ),
        409,
    )
    expect_error(
        "InvalidParameterValueException",
        lambda: lam.create_function(
            FunctionName="too-big", Runtime="python3.11", Role=ROLE,
            Handler="handler.handler", Code={"ZipFile": zip1}, MemorySize=99999,
        ),
        400,
    )
    expect_error(
        "InvalidRequestContentException",
        lambda: lam.invoke(FunctionName=name, Payload=b"not json"),
        400,
    )
    ok("error classes")

    expect_client_error(
        "InvalidSignatureException",
        lambda: client(secret="wrong-secret-wrong-secret-wrong-secret00").list_functions(),
    )
    expect_client_error(
        "UnrecognizedClientException",
        lambda: client(key_id="SKYNOSUCHKEY0000").list_functions(),
    )
    ok("sigv4 failures")

    # --- AWS CLI v1 --------------------------------------------------------------------
    aws = str(Path(sys.executable).parent / "aws")
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID=KEY_ID,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    with tempfile.TemporaryDirectory() as d:
        out_file = os.path.join(d, "out.json")
        run = subprocess.run(
            [aws, "--endpoint-url", URL, "lambda", "invoke", "--function-name", name,
             "--payload", '{"a":1}', "--log-type", "Tail", out_file],
            env=env, capture_output=True, text=True, timeout=180,
        )
        assert run.returncode == 0, (run.stdout, run.stderr)
        printed = json.loads(run.stdout)
        assert printed["StatusCode"] == 200 and printed["ExecutedVersion"] == "$LATEST", printed
        assert "hello from v2" in base64.b64decode(printed["LogResult"]).decode(), printed
        with open(out_file) as f:
            assert json.load(f)["got"] == {"a": 1}
    run = subprocess.run(
        [aws, "--endpoint-url", URL, "lambda", "wait", "function-active",
         "--function-name", name],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert run.returncode == 0, (run.stdout, run.stderr)
    ok("aws lambda invoke / wait function-active")

    # --- delete ------------------------------------------------------------------------
    d = lam.delete_function(FunctionName=name)
    assert d["ResponseMetadata"]["HTTPStatusCode"] in (200, 204), d
    expect_error("ResourceNotFoundException", lambda: lam.get_function(FunctionName=name), 404)
    expect_error("ResourceNotFoundException", lambda: lam.delete_function(FunctionName=name), 404)
    ok("delete_function")
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
