"""boto3 and the AWS CLI v1 against a real Skyscale control plane (run by lambda_api.rs).

Environment: SKYSCALE_URL, SKYSCALE_KEY_ID, SKYSCALE_SECRET. Prints one `ok: ...` line per
checked step and `ALL OK` at the end; any failure raises (non-zero exit).
"""

import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from skyscale_test import (KEY_ID, REGION, ROLE, SECRET, URL, client, expect_client_error,
                           expect_error, ok, zip_of)

V1 = """
import os

def handler(event, context):
    if event.get("fail"):
        raise ValueError("boom")
    if event.get("cc"):
        cc = context.client_context
        return {"custom": cc.custom, "env": cc.env,
                "installation_id": cc.client.installation_id if cc.client else None}
    if event.get("ver"):
        return {"v": 1, "version": context.function_version,
                "env_version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"],
                "stream": context.log_stream_name, "arn": context.invoked_function_arn}
    print("hello from v1")
    return {"v": 1, "got": event, "fn": context.function_name,
            "greeting": os.environ.get("GREETING")}
"""
V2 = V1.replace('"v": 1', '"v": 2').replace("hello from v1", "hello from v2")


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
        Tags={"team": "core", "stage": "test"},
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

    # --- client context ----------------------------------------------------------------
    cc = {"custom": {"k": "v"}, "env": {"locale": "en"}, "client": {"installation_id": "i-1"}}
    r = lam.invoke(
        FunctionName=name, Payload=b'{"cc": true}',
        ClientContext=base64.b64encode(json.dumps(cc).encode()).decode(),
    )
    assert "FunctionError" not in r, r
    got_cc = json.loads(r["Payload"].read())
    assert got_cc == {"custom": {"k": "v"}, "env": {"locale": "en"},
                      "installation_id": "i-1"}, got_cc
    expect_error(
        "InvalidParameterValueException",
        lambda: lam.invoke(FunctionName=name, Payload=b"{}", ClientContext="not base64!"),
        400,
    )
    expect_error(
        "InvalidParameterValueException",
        lambda: lam.invoke(FunctionName=name, Payload=b"{}",
                           ClientContext=base64.b64encode(b"not json").decode()),
        400,
    )
    big = base64.b64encode(json.dumps({"custom": {"x": "y" * 4000}}).encode()).decode()
    expect_error(
        "InvalidParameterValueException",
        lambda: lam.invoke(FunctionName=name, Payload=b"{}", ClientContext=big),
        400,
    )
    ok("invoke with ClientContext reaches context.client_context")

    # --- tags --------------------------------------------------------------------------
    assert lam.get_function(FunctionName=name)["Tags"] == {"team": "core", "stage": "test"}
    lam.tag_resource(Resource=arn, Tags={"team": "platform", "cost": "42"})
    assert lam.list_tags(Resource=arn)["Tags"] == {
        "team": "platform", "stage": "test", "cost": "42"}
    lam.untag_resource(Resource=arn, TagKeys=["stage", "cost", "absent"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "platform"}
    assert lam.get_function(FunctionName=name)["Tags"] == {"team": "platform"}
    expect_error(
        "ResourceNotFoundException",
        lambda: lam.list_tags(Resource=arn.replace(name, "nope")),
        404,
    )
    expect_error(
        "InvalidParameterValueException",
        lambda: lam.tag_resource(Resource=arn, Tags={"aws:reserved": "x"}),
        400,
    )
    ok("tag_resource, untag_resource, list_tags, get_function Tags")

    # --- versions (1) ------------------------------------------------------------------
    v1 = lam.publish_version(FunctionName=name, Description="first")
    assert v1["ResponseMetadata"]["HTTPStatusCode"] == 201, v1
    assert v1["Version"] == "1" and v1["FunctionArn"] == f"{arn}:1", v1
    assert v1["Description"] == "first" and v1["CodeSha256"] == created["CodeSha256"]
    again = lam.publish_version(FunctionName=name)
    assert again["Version"] == "1", again
    expect_error(
        "PreconditionFailedException",
        lambda: lam.publish_version(FunctionName=name, CodeSha256="AAAA"),
        412,
    )
    ok("publish_version (unchanged function returns the latest version)")

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

    # --- versions (2) ------------------------------------------------------------------
    v2 = lam.publish_version(FunctionName=name)
    assert v2["Version"] == "2" and v2["CodeSha256"] == up["CodeSha256"], v2
    for qualifier, expect_v in (("1", 1), ("2", 2)):
        r = lam.invoke(FunctionName=name, Qualifier=qualifier, Payload=b'{"ver": true}',
                       LogType="Tail")
        assert r["ExecutedVersion"] == qualifier, r
        body = json.loads(r["Payload"].read())
        assert body["v"] == expect_v and body["version"] == qualifier, body
        assert body["env_version"] == qualifier, body
        assert f"[{qualifier}]" in body["stream"], body
        assert body["arn"] == f"{arn}:{qualifier}", body
        assert f"Version: {qualifier}" in base64.b64decode(r["LogResult"]).decode(), r
    r = lam.invoke(FunctionName=f"{name}:1", Payload=b"{}")
    assert r["ExecutedVersion"] == "1" and json.loads(r["Payload"].read())["v"] == 1
    r = lam.invoke(FunctionName=name, Payload=b'{"ver": true}')
    assert r["ExecutedVersion"] == "$LATEST", r
    assert json.loads(r["Payload"].read())["version"] == "$LATEST"
    conf = lam.get_function_configuration(FunctionName=name, Qualifier="1")
    assert conf["Version"] == "1" and conf["CodeSha256"] == created["CodeSha256"], conf
    got = lam.get_function(FunctionName=f"{arn}:2")
    assert got["Configuration"]["Version"] == "2", got
    for bad in (
        lambda: lam.get_function(FunctionName=name, Qualifier="9"),
        lambda: lam.get_function_configuration(FunctionName=f"{name}:9"),
        lambda: lam.invoke(FunctionName=name, Qualifier="9", Payload=b"{}"),
    ):
        e = expect_error("ResourceNotFoundException", bad, 404)
    assert e.response["Error"]["Message"].endswith(f"{arn}:9"), e.response
    versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"], versions
    pages = list(lam.get_paginator("list_versions_by_function").paginate(
        FunctionName=name, PaginationConfig={"PageSize": 1}))
    assert [v["Version"] for p in pages for v in p["Versions"]] == ["$LATEST", "1", "2"]
    assert len(pages) == 3, pages
    ok("versions: invoke, get, list (paginated), ExecutedVersion, 404 for unknown")

    # --- aliases -------------------------------------------------------------------------
    live = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1",
                            Description="prod")
    assert live["ResponseMetadata"]["HTTPStatusCode"] == 201, live
    assert live["AliasArn"] == f"{arn}:live" and live["FunctionVersion"] == "1", live
    assert len(live["RevisionId"]) == 36
    r = lam.invoke(FunctionName=name, Qualifier="live", Payload=b'{"ver": true}')
    assert r["ExecutedVersion"] == "1", r
    body = json.loads(r["Payload"].read())
    assert body["version"] == "1" and body["arn"] == f"{arn}:live", body
    assert lam.get_function(FunctionName=f"{name}:live")["Configuration"]["Version"] == "1"
    up_alias = lam.update_alias(FunctionName=name, Name="live",
                                RoutingConfig={"AdditionalVersionWeights": {"2": 1.0}})
    assert up_alias["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 1.0}, up_alias
    assert up_alias["RevisionId"] != live["RevisionId"]
    r = lam.invoke(FunctionName=f"{arn}:live", Payload=b"{}")
    assert r["ExecutedVersion"] == "2" and json.loads(r["Payload"].read())["v"] == 2, r
    lam.update_alias(FunctionName=name, Name="live",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    seen = {lam.invoke(FunctionName=name, Qualifier="live", Payload=b"{}")["ExecutedVersion"]
            for _ in range(16)}
    assert seen == {"1", "2"}, seen
    cleared = lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2",
                               RoutingConfig={"AdditionalVersionWeights": {}})
    assert cleared["FunctionVersion"] == "2" and "RoutingConfig" not in cleared, cleared
    assert cleared["Description"] == "prod"
    got_alias = lam.get_alias(FunctionName=name, Name="live")
    assert got_alias["FunctionVersion"] == "2" and got_alias["RevisionId"] == cleared["RevisionId"]
    lam.create_alias(FunctionName=name, Name="beta", FunctionVersion="1")
    pages = list(lam.get_paginator("list_aliases").paginate(
        FunctionName=name, PaginationConfig={"PageSize": 1}))
    assert [a["Name"] for p in pages for a in p["Aliases"]] == ["beta", "live"], pages
    only = lam.list_aliases(FunctionName=name, FunctionVersion="1")["Aliases"]
    assert [a["Name"] for a in only] == ["beta"], only
    expect_error("ResourceConflictException",
                 lambda: lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1"),
                 409)
    expect_error("ResourceNotFoundException",
                 lambda: lam.create_alias(FunctionName=name, Name="x", FunctionVersion="9"),
                 404)
    expect_error("InvalidParameterValueException",
                 lambda: lam.create_alias(
                     FunctionName=name, Name="x", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.1, "3": 0.1}}),
                 400)
    # An alias may name $LATEST, but then it cannot route to a version.
    expect_error("InvalidParameterValueException",
                 lambda: lam.create_alias(
                     FunctionName=name, Name="x", FunctionVersion="$LATEST",
                     RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}}),
                 400)
    expect_error("PreconditionFailedException",
                 lambda: lam.update_alias(FunctionName=name, Name="live",
                                          RevisionId=live["RevisionId"]),
                 412)
    expect_error("ResourceNotFoundException",
                 lambda: lam.invoke(FunctionName=name, Qualifier="nope", Payload=b"{}"), 404)
    expect_error("ResourceConflictException",
                 lambda: lam.delete_function(FunctionName=name, Qualifier="1"), 409)
    d = lam.delete_alias(FunctionName=name, Name="beta")
    assert d["ResponseMetadata"]["HTTPStatusCode"] == 204, d
    expect_error("ResourceNotFoundException",
                 lambda: lam.get_alias(FunctionName=name, Name="beta"), 404)
    expect_error("ResourceNotFoundException",
                 lambda: lam.delete_alias(FunctionName=name, Name="beta"), 404)
    ok("aliases: create/get/list (paginated)/update/delete, weighted routing, errors")

    up = lam.update_function_configuration(
        FunctionName=name, MemorySize=256, Timeout=10,
        Environment={"Variables": {"GREETING": "bonjour"}}, Description="changed",
    )
    assert up["MemorySize"] == 256 and up["Timeout"] == 10, up
    assert up["Description"] == "changed"
    r = lam.invoke(FunctionName=name, Payload=b"{}")
    assert json.loads(r["Payload"].read())["greeting"] == "bonjour"
    r = lam.invoke(FunctionName=name, Qualifier="2", Payload=b"{}")
    assert json.loads(r["Payload"].read())["greeting"] == "hello", "versions are immutable"
    ok("update_function_configuration")

    # --- versions (3): delete one --------------------------------------------------------
    d = lam.delete_function(FunctionName=name, Qualifier="1")
    assert d["ResponseMetadata"]["HTTPStatusCode"] in (200, 204), d
    expect_error("ResourceNotFoundException",
                 lambda: lam.get_function(FunctionName=name, Qualifier="1"), 404)
    expect_error("ResourceNotFoundException",
                 lambda: lam.delete_function(FunctionName=name, Qualifier="1"), 404)
    expect_error("InvalidParameterValueException",
                 lambda: lam.delete_function(FunctionName=name, Qualifier="$LATEST"), 400)
    expect_error("ResourceConflictException",
                 lambda: lam.delete_function(FunctionName=name, Qualifier="2"), 409)
    versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "2"], versions
    v3 = lam.publish_version(FunctionName=name)
    assert v3["Version"] == "3" and v3["MemorySize"] == 256, v3
    ok("delete_function with Qualifier deletes one version; numbers are not reused")

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

    # A wrong secret and an unknown key id get the same error and message (unlike AWS,
    # which tells them apart), so nobody can probe for key ids.
    wrong_secret = expect_client_error(
        "UnrecognizedClientException",
        lambda: client(secret="wrong-secret-wrong-secret-wrong-secret00").list_functions(),
    )
    unknown_id = expect_client_error(
        "UnrecognizedClientException",
        lambda: client(key_id="SKYNOSUCHKEY0000").list_functions(),
    )
    assert wrong_secret.response["Error"] == unknown_id.response["Error"], (wrong_secret, unknown_id)
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
