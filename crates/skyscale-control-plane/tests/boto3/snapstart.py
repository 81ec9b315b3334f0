"""boto3 against a real control plane on gVisor (run by lambda_api.rs): SnapStart as Lambda
has it. `SnapStart` on CreateFunction and UpdateFunctionConfiguration; `SnapStart` (the
`SnapStartResponse` shape: ApplyOn, OptimizationStatus) in GetFunction,
GetFunctionConfiguration, PublishVersion and ListVersionsByFunction; a published version's
snapshot taken at publish (OptimizationStatus turns On) and restored by its next cold start
(REPORT says `Restore Duration`); a bad ApplyOn refused by name.

Environment: SKYSCALE_URL, SKYSCALE_KEY_ID, SKYSCALE_SECRET. Prints one `ok: ...` line per
checked step and `ALL OK` at the end; any failure raises (non-zero exit).
"""

import base64
import json
import time

from skyscale_test import ROLE, client, expect_error, ok, zip_of

HANDLER = """
import os, uuid
import snapshot_restore_py

TOKEN = uuid.uuid4().hex
RAN = []
snapshot_restore_py.register_before_snapshot(lambda: RAN.append("before"))

@snapshot_restore_py.register_after_restore
def after():
    RAN.append("after")

def handler(event, context):
    return {"token": TOKEN, "ran": RAN, "init": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]}
"""

lam = client()
NAME = "snapstart-boto3"

created = lam.create_function(
    FunctionName=NAME, Runtime="python3.11", Role=ROLE, Handler="handler.handler",
    Code={"ZipFile": zip_of(HANDLER)}, SnapStart={"ApplyOn": "PublishedVersions"},
)
assert created["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}, created
ok("CreateFunction takes SnapStart; $LATEST reports Off before any snapshot")

conf = lam.get_function_configuration(FunctionName=NAME)
assert conf["SnapStart"]["ApplyOn"] == "PublishedVersions", conf
got = lam.get_function(FunctionName=NAME)
assert got["Configuration"]["SnapStart"]["ApplyOn"] == "PublishedVersions", got
ok("GetFunction and GetFunctionConfiguration show SnapStartResponse")

published = lam.publish_version(FunctionName=NAME)
assert published["Version"] == "1", published
assert published["SnapStart"]["ApplyOn"] == "PublishedVersions", published
assert published["SnapStart"]["OptimizationStatus"] in ("On", "Off"), published
ok("PublishVersion answers SnapStartResponse")

deadline = time.time() + 60
while True:
    conf = lam.get_function_configuration(FunctionName=NAME, Qualifier="1")
    if conf["SnapStart"]["OptimizationStatus"] == "On":
        break
    assert time.time() < deadline, conf
    time.sleep(0.2)
got = lam.get_function(FunctionName=NAME, Qualifier="1")
assert got["Configuration"]["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}, got
versions = lam.list_versions_by_function(FunctionName=NAME)["Versions"]
v1 = [v for v in versions if v["Version"] == "1"][0]
assert v1["SnapStart"]["OptimizationStatus"] == "On", v1
ok("the version's snapshot is taken at publish: OptimizationStatus On")

out = lam.invoke(FunctionName=NAME, Qualifier="1", LogType="Tail")
body = json.loads(out["Payload"].read())
logs = base64.b64decode(out["LogResult"]).decode()
assert body["init"] == "snap-start" and body["ran"] == ["before", "after"], body
assert "Restore Duration: " in logs and "Init Duration" not in logs, logs
ok("a cold start of the version restores it (REPORT: Restore Duration)")

updated = lam.update_function_configuration(FunctionName=NAME, SnapStart={"ApplyOn": "None"})
assert updated["SnapStart"] == {"ApplyOn": "None", "OptimizationStatus": "Off"}, updated
conf = lam.get_function_configuration(FunctionName=NAME, Qualifier="1")
assert conf["SnapStart"]["ApplyOn"] == "PublishedVersions", "a version keeps its own setting"
ok("UpdateFunctionConfiguration turns SnapStart off for $LATEST; version 1 keeps it")

e = expect_error(
    "InvalidParameterValueException",
    lambda: lam.update_function_configuration(FunctionName=NAME, SnapStart={"ApplyOn": "Always"}),
    400,
)
assert "Always" in e.response["Error"]["Message"], e.response
ok("a bad ApplyOn is refused by name")

lam.delete_function(FunctionName=NAME)
print("ALL OK")
