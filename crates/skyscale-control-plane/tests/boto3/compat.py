"""What real deploy tools and SDKs trip over (issue 11), with boto3 against a real Skyscale
control plane (run by lambda_api.rs). Prints one `ok: ...` line per checked step and
`ALL OK` at the end; any failure raises.
"""

import io
import json
import subprocess
import tempfile
import zipfile
from pathlib import Path

from botocore.exceptions import ClientError

from skyscale_test import KEY_ID, ROLE, SECRET, client, expect_error, ok, zip_of

HERE = Path(__file__).parent

V1 = """
def handler(event, context):
    return {"v": 1}
"""


def client_error(code, status, fn):
    try:
        fn()
    except ClientError as e:
        assert e.response["Error"]["Code"] == code, e.response
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == status, e.response
        return e.response["Error"]["Message"]
    raise AssertionError(f"expected {code}")


def compiled_bootstrap_zip():
    """The C runtime in bootstrap.c, compiled here, as an executable `bootstrap`."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "bootstrap"
        subprocess.run(["cc", "-O2", "-o", str(out), str(HERE / "bootstrap.c")], check=True)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            info = zipfile.ZipInfo("bootstrap")
            info.external_attr = 0o755 << 16
            z.writestr(info, out.read_bytes())
        return buf.getvalue()


def unsupported_operations(lam):
    for op, call in [
        ("GetFunctionCodeSigningConfig", lambda: lam.get_function_code_signing_config(
            FunctionName="f")),
        ("GetLayerVersionPolicy", lambda: lam.get_layer_version_policy(
            LayerName="l", VersionNumber=1)),
        ("ListEventSourceMappings", lambda: lam.list_event_source_mappings()),
        ("ListCodeSigningConfigs", lambda: lam.list_code_signing_configs()),
        ("GetRuntimeManagementConfig", lambda: lam.get_runtime_management_config(
            FunctionName="f")),
    ]:
        message = client_error("UnsupportedOperationException", 400, call)
        assert f"{op} is not supported by Skyscale" in message, message
    ok("unsupported operations raise UnsupportedOperationException naming the operation")


def provided_bootstrap_handler(lam):
    lam.create_function(
        FunctionName="native", Runtime="provided.al2023", Role=ROLE, Handler="bootstrap",
        Code={"ZipFile": compiled_bootstrap_zip()},
    )
    r = lam.invoke(FunctionName="native", Payload=json.dumps({"n": 7}))
    assert "FunctionError" not in r, r["Payload"].read()
    assert json.loads(r["Payload"].read()) == {"handler": "bootstrap", "event": {"n": 7}}
    # A Python function still needs module.function.
    expect_error("InvalidParameterValueException", lambda: lam.create_function(
        FunctionName="py-bootstrap", Runtime="python3.11", Role=ROLE, Handler="bootstrap",
        Code={"ZipFile": zip_of(V1)}), 400)
    ok("provided.al2023 with Handler bootstrap runs a compiled program")


def publish(lam):
    created = lam.create_function(
        FunctionName="pub", Runtime="python3.11", Role=ROLE, Handler="handler.handler",
        Code={"ZipFile": zip_of(V1)}, Publish=True,
    )
    assert created["Version"] == "1", created["Version"]
    assert created["FunctionArn"].endswith(":pub:1"), created["FunctionArn"]
    updated = lam.update_function_code(
        FunctionName="pub", ZipFile=zip_of(V1.replace("1", "2")), Publish=True)
    assert updated["Version"] == "2", updated["Version"]
    r = lam.invoke(FunctionName="pub", Qualifier="1")
    assert json.loads(r["Payload"].read()) == {"v": 1}
    r = lam.invoke(FunctionName="pub", Qualifier="2")
    assert json.loads(r["Payload"].read()) == {"v": 2}
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName="pub")["Versions"]]
    assert versions == ["$LATEST", "1", "2"], versions
    listed = [
        (f["FunctionName"], f["Version"])
        for page in lam.get_paginator("list_functions").paginate(FunctionVersion="ALL")
        for f in page["Functions"]
    ]
    for v in ["$LATEST", "1", "2"]:
        assert ("pub", v) in listed, listed
    plain = [f["Version"] for f in lam.list_functions()["Functions"] if f["FunctionName"] == "pub"]
    assert plain == ["$LATEST"], plain
    ok("Publish=True on create and code update returns versions 1 and 2; FunctionVersion=ALL lists them")


def revision_ids(lam):
    conf = lam.get_function_configuration(FunctionName="pub")
    stale = conf["RevisionId"]
    lam.update_function_configuration(FunctionName="pub", Description="moved on",
                                      RevisionId=stale)
    for call in [
        lambda: lam.update_function_configuration(FunctionName="pub", Timeout=9, RevisionId=stale),
        lambda: lam.update_function_code(FunctionName="pub", ZipFile=zip_of(V1), RevisionId=stale),
        lambda: lam.update_function_configuration(
            FunctionName="pub", Timeout=9, RevisionId="00000000-0000-0000-0000-000000000000"),
    ]:
        expect_error("PreconditionFailedException", call, 412)
    assert lam.get_function_configuration(FunctionName="pub")["Timeout"] == 3, "nothing applied"
    fresh = lam.get_function_configuration(FunctionName="pub")["RevisionId"]
    lam.update_function_code(FunctionName="pub", ZipFile=zip_of(V1), RevisionId=fresh)
    ok("a stale or invented RevisionId is refused on both updates; the current one works")


def refused_settings(lam):
    for member, value in [
        ("TracingConfig", {"Mode": "Active"}),
        ("DeadLetterConfig", {"TargetArn": "arn:aws:sqs:us-east-1:000000000000:dlq"}),
        ("VpcConfig", {"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}),
        ("KMSKeyArn", "arn:aws:kms:us-east-1:000000000000:key/k"),
    ]:
        e = expect_error("InvalidParameterValueException", lambda: lam.create_function(
            FunctionName="refused", Runtime="python3.11", Role=ROLE, Handler="handler.handler",
            Code={"ZipFile": zip_of(V1)}, **{member: value}), 400)
        assert e.response["Error"]["Message"].startswith(member), e.response
        e = expect_error("InvalidParameterValueException",
                         lambda: lam.update_function_configuration(
                             FunctionName="pub", **{member: value}), 400)
        assert e.response["Error"]["Message"].startswith(member), e.response
    names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert "refused" not in names, names
    # The values that ask for nothing are accepted.
    lam.update_function_configuration(FunctionName="pub", Layers=[],
                                      TracingConfig={"Mode": "PassThrough"})
    ok("TracingConfig, DeadLetterConfig, VpcConfig, KMSKeyArn refused by name")


BIG = """
def handler(event, context):
    if event.get("big"):
        return "x" * (7 * 1024 * 1024)
    if event.get("bytes"):
        return b"raw"
    return {"ok": True}
"""


def responses(lam):
    lam.create_function(FunctionName="big", Runtime="python3.11", Role=ROLE,
                        Handler="handler.handler", Code={"ZipFile": zip_of(BIG)}, MemorySize=512)
    lam.invoke(FunctionName="big", Payload=b"{}")  # the cold start
    r = lam.invoke(FunctionName="big", Payload=b'{"big": true}')
    assert r["FunctionError"] == "Unhandled", r
    doc = json.loads(r["Payload"].read())
    assert doc["errorType"] == "Function.ResponseSizeTooLarge", doc
    r = lam.invoke(FunctionName="big", Payload=b"{}", LogType="Tail")
    assert json.loads(r["Payload"].read()) == {"ok": True}
    import base64
    tail = base64.b64decode(r["LogResult"]).decode()
    assert "REPORT" in tail and "Init Duration" not in tail, tail
    r = lam.invoke(FunctionName="big", Payload=b'{"bytes": true}')
    assert r["FunctionError"] == "Unhandled", r
    doc = json.loads(r["Payload"].read())
    assert doc["errorType"] == "Runtime.MarshalError", doc
    ok("a 7 MB response is Function.ResponseSizeTooLarge and the next call is warm; "
       "bytes are Runtime.MarshalError")


def code_location_and_url_wording(lam):
    import base64
    import hashlib
    import urllib.error
    import urllib.request
    got = lam.get_function(FunctionName="pub", Qualifier="1")
    location = got["Code"]["Location"]
    with urllib.request.urlopen(location) as r:
        package = r.read()
    assert base64.b64encode(hashlib.sha256(package).digest()).decode() == \
        got["Configuration"]["CodeSha256"], "the exact package"
    zipfile.ZipFile(io.BytesIO(package)).testzip()
    for bad in [location.replace("signature=", "signature=00"),
                location.replace("expires=", "expires=1")]:
        try:
            urllib.request.urlopen(bad)
            raise AssertionError("a tampered location was served")
        except urllib.error.HTTPError as e:
            assert e.code == 403, e.code
    ok("GetFunction's Code.Location downloads the exact package; a tampered one is 403")

    lam.create_function_url_config(FunctionName="pub", AuthType="NONE")
    lam.delete_function_url_config(FunctionName="pub")
    e = expect_error("ResourceNotFoundException",
                     lambda: lam.get_function_url_config(FunctionName="pub"), 404)
    assert e.response["Error"]["Message"] == "The resource you requested does not exist.", \
        e.response
    e = expect_error("ResourceNotFoundException",
                     lambda: lam.get_function_url_config(FunctionName="no-such-fn"), 404)
    assert e.response["Error"]["Message"].startswith("Function not found"), e.response
    ok("a deleted function URL is 'resource does not exist', a missing function 'not found'")


def new_key(role, functions):
    """A key made through /v1 with the admin key, as (id, secret)."""
    import os
    import urllib.request
    req = urllib.request.Request(
        os.environ["SKYSCALE_URL"] + "/v1/keys",
        data=json.dumps({"role": role, "functions": functions}).encode(),
        headers={"Authorization": f"Bearer {KEY_ID}.{SECRET}",
                 "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req) as r:
        return json.load(r)["key"].split(".", 1)


def permissions(lam):
    lam.create_function(FunctionName="shared", Runtime="python3.11", Role=ROLE,
                        Handler="handler.handler", Code={"ZipFile": zip_of(V1)})
    other_id, other_secret = new_key("invoker", ["team-b-*"])
    other = client(other_id, other_secret)
    client_error("AccessDeniedException", 403, lambda: other.invoke(FunctionName="shared"))
    expect_error("ResourceNotFoundException", lambda: lam.get_policy(FunctionName="shared"), 404)
    added = lam.add_permission(FunctionName="shared", StatementId="share-with-b",
                               Action="lambda:InvokeFunction", Principal=other_id)
    statement = json.loads(added["Statement"])
    assert statement["Sid"] == "share-with-b" and statement["Principal"] == {"AWS": other_id}, statement
    r = other.invoke(FunctionName="shared", Payload=b"{}")
    assert json.loads(r["Payload"].read()) == {"v": 1}, "the statement lets the other key invoke"
    client_error("AccessDeniedException", 403, lambda: other.get_function(FunctionName="shared"))
    lam.add_permission(FunctionName="shared", StatementId="apigw",
                       Action="lambda:InvokeFunction", Principal="apigateway.amazonaws.com",
                       SourceArn="arn:aws:execute-api:us-east-1:000000000000:abc/*",
                       SourceAccount="000000000000")
    expect_error("ResourceConflictException", lambda: lam.add_permission(
        FunctionName="shared", StatementId="apigw", Action="lambda:InvokeFunction",
        Principal="*"), 409)
    expect_error("InvalidParameterValueException", lambda: lam.add_permission(
        FunctionName="shared", StatementId="read", Action="lambda:GetFunction",
        Principal=other_id), 400)
    policy = json.loads(lam.get_policy(FunctionName="shared")["Policy"])
    sids = {s["Sid"]: s for s in policy["Statement"]}
    assert set(sids) == {"share-with-b", "apigw"}, sids
    assert sids["apigw"]["Principal"] == {"Service": "apigateway.amazonaws.com"}, sids
    assert sids["apigw"]["Condition"]["ArnLike"]["AWS:SourceArn"].endswith("abc/*"), sids
    assert sids["apigw"]["Condition"]["StringEquals"]["AWS:SourceAccount"] == "000000000000"
    lam.remove_permission(FunctionName="shared", StatementId="share-with-b")
    client_error("AccessDeniedException", 403, lambda: other.invoke(FunctionName="shared"))
    e = expect_error("ResourceNotFoundException", lambda: lam.remove_permission(
        FunctionName="shared", StatementId="share-with-b"), 404)
    assert e.response["Error"]["Message"] == "The resource you requested does not exist."
    ok("AddPermission lets another key invoke; GetPolicy shows the statements and "
       "conditions; RemovePermission takes it back")


SDK = """
import boto3, botocore

def handler(event, context):
    return {"boto3": boto3.__version__, "botocore": botocore.__version__,
            "from": boto3.__file__}
"""


def python_sdk(lam):
    import os
    import urllib.request
    req = urllib.request.Request(os.environ["SKYSCALE_URL"] + "/v1/runtimes",
                                 headers={"Authorization": f"Bearer {KEY_ID}.{SECRET}"})
    with urllib.request.urlopen(req) as r:
        runtimes = {x["name"]: x["packages"] for x in json.load(r)["runtimes"]}
    shipped = runtimes["python3.11"]
    assert "boto3" in shipped and "botocore" in shipped, runtimes
    lam.create_function(FunctionName="uses-boto3", Runtime="python3.11", Role=ROLE,
                        Handler="handler.handler", Code={"ZipFile": zip_of(SDK)})
    got = json.loads(lam.invoke(FunctionName="uses-boto3")["Payload"].read())
    assert got["boto3"] == shipped["boto3"] and got["botocore"] == shipped["botocore"], got
    assert got["from"].startswith("/var/runtime/sdk/"), got
    # A function that bundles its own boto3 gets its own.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", SDK)
        z.writestr("boto3/__init__.py", "__version__ = 'bundled'\n")
    lam.create_function(FunctionName="own-boto3", Runtime="python3.11", Role=ROLE,
                        Handler="handler.handler", Code={"ZipFile": buf.getvalue()})
    got = json.loads(lam.invoke(FunctionName="own-boto3")["Payload"].read())
    assert got["boto3"] == "bundled" and got["from"].startswith("/var/task/"), got
    assert "provided.al2023" in runtimes and runtimes["provided.al2023"] == {}, runtimes
    ok(f"import boto3 works (boto3 {shipped['boto3']} from the runtime); a bundled boto3 wins")


def aws_cli():
    """The AWS CLI v1 where it has the command."""
    import os
    import sys
    aws = str(Path(sys.executable).parent / "aws")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET,
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null")

    def run(*args):
        return subprocess.run([aws, "--endpoint-url", os.environ["SKYSCALE_URL"], "lambda",
                               *args], env=env, capture_output=True, text=True, timeout=180)

    r = run("list-layers")
    assert r.returncode == 0 and '"Layers"' in r.stdout, r
    r = run("list-event-source-mappings")
    assert r.returncode != 0 and "UnsupportedOperationException" in r.stderr, r
    assert "ListEventSourceMappings is not supported by Skyscale" in r.stderr, r.stderr
    r = run("add-permission", "--function-name", "pub", "--statement-id", "cli",
            "--action", "lambda:InvokeFunction", "--principal", "SKYSOMEONE000001")
    assert r.returncode == 0, r
    r = run("get-policy", "--function-name", "pub")
    assert r.returncode == 0 and '\\"Sid\\":\\"cli\\"' in r.stdout, r
    r = run("remove-permission", "--function-name", "pub", "--statement-id", "cli")
    assert r.returncode == 0, r
    r = run("list-functions", "--function-version", "ALL")
    versions = {(f["FunctionName"], f["Version"]) for f in json.loads(r.stdout)["Functions"]}
    assert {("pub", "1"), ("pub", "2")} <= versions, versions
    r = run("update-function-configuration", "--function-name", "pub", "--revision-id",
            "00000000-0000-0000-0000-000000000000", "--timeout", "5")
    assert r.returncode != 0 and "PreconditionFailedException" in r.stderr, r
    r = run("update-function-configuration", "--function-name", "pub",
            "--tracing-config", "Mode=Active")
    assert r.returncode != 0 and "TracingConfig is not supported" in r.stderr, r
    ok("AWS CLI: unsupported operation, policies, FunctionVersion ALL, RevisionId, refusals")


def main():
    lam = client()
    unsupported_operations(lam)
    provided_bootstrap_handler(lam)
    publish(lam)
    revision_ids(lam)
    refused_settings(lam)
    responses(lam)
    code_location_and_url_wording(lam)
    permissions(lam)
    python_sdk(lam)
    aws_cli()
    print("ALL OK")


if __name__ == "__main__":
    main()
