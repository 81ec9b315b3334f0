"""boto3 against a real control plane (run by layers.rs, on the process driver and on runc):
layers as Lambda has them. A layer published with boto3 and attached to two functions, both
import from it; layer order (a module in both layers resolves to the later one); /opt/bin on
PATH, /opt/lib on LD_LIBRARY_PATH, /opt/python and its site-packages on sys.path after the
function's code; /opt read-only (SKYSCALE_TEST_OPT_READONLY=1: isolated drivers only);
deleting a layer version leaves the functions that use it working; the 250 MB limit of code
and layers; bad ARNs and more than five layers refused by name.

Environment: SKYSCALE_URL, SKYSCALE_KEY_ID, SKYSCALE_SECRET, SKYSCALE_TEST_RUNTIME (the
python3.X the functions use). Prints one `ok: ...` line per checked step and `ALL OK` at the
end; any failure raises (non-zero exit).
"""

import io
import json
import os
import urllib.error
import urllib.request
import zipfile

from skyscale_test import (
    KEY_ID, ROLE, SECRET, URL, client, expect_client_error, expect_error, ok, zip_of,
)

RUNTIME = os.environ["SKYSCALE_TEST_RUNTIME"]
PYVER = RUNTIME.removeprefix("python")
READONLY = os.environ.get("SKYSCALE_TEST_OPT_READONLY") == "1"
ACCOUNT_PREFIX = "arn:aws:lambda:us-east-1:000000000000:layer:"
LIMIT = 262_144_000

HANDLER = """
import os, subprocess, sys
import shared_mod, order_mod, sitepkg_mod

def handler(event, context):
    wrote = None
    if event.get("try_write"):
        try:
            with open("/opt/python/written.txt", "w") as f:
                f.write("x")
            wrote = "wrote"
        except OSError as e:
            wrote = "errno %d" % e.errno
    tool = subprocess.run(["layer-tool"], capture_output=True, text=True).stdout.strip()
    return {
        "shared": shared_mod.WHO, "order": order_mod.WHO, "site": sitepkg_mod.WHO,
        "tool": tool, "wrote": wrote, "path": sys.path[:3],
        "ld": os.environ.get("LD_LIBRARY_PATH", ""),
        "leaked": [k for k in os.environ if k.startswith("_SKYSCALE")],
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
    }
"""


def layer_zip(files):
    """A zip of (path, text, executable) entries."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path, text, executable in files:
            info = zipfile.ZipInfo(path)
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, text)
    return buf.getvalue()


def zeros_zip(name, size):
    """A layer of `size` zero bytes in one file: a few hundred KB zipped."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open(name, "w") as f:
            chunk = bytes(1 << 20)
            left = size
            while left:
                n = min(left, len(chunk))
                f.write(chunk[:n])
                left -= n
    return buf.getvalue()


def new_key(role):
    """A new key of `role` (through /v1 with the admin key): (id, secret)."""
    req = urllib.request.Request(
        URL + "/v1/keys", data=json.dumps({"role": role}).encode(), method="POST",
        headers={"Authorization": f"Bearer {KEY_ID}.{SECRET}",
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        key = json.loads(r.read())
    key_id, secret = key["key"].split(".", 1)
    return key_id, secret


def invoke(lam, name, event=b"{}"):
    r = lam.invoke(FunctionName=name, Payload=event)
    body = r["Payload"].read()
    assert "FunctionError" not in r, body
    return json.loads(body)


def main():
    lam = client()

    # Publish: two layers; `common` has a module of its own, one in site-packages, a tool in
    # bin/ and a library directory; both have `order_mod`.
    common = lam.publish_layer_version(
        LayerName="common",
        Description="shared code",
        Content={"ZipFile": layer_zip([
            ("python/shared_mod.py", "WHO = 'common'\n", False),
            ("python/order_mod.py", "WHO = 'common'\n", False),
            (f"python/lib/python{PYVER}/site-packages/sitepkg_mod.py", "WHO = 'site'\n", False),
            ("bin/layer-tool", "#!/bin/sh\necho tool ran\n", True),
            ("lib/README", "libraries go here\n", False),
        ])},
        CompatibleRuntimes=[RUNTIME],
        LicenseInfo="MIT",
    )
    assert common["Version"] == 1, common
    assert common["LayerVersionArn"] == ACCOUNT_PREFIX + "common:1", common
    assert common["LayerArn"] == ACCOUNT_PREFIX + "common", common
    assert common["CompatibleRuntimes"] == [RUNTIME], common
    assert common["LicenseInfo"] == "MIT", common
    assert common["Content"]["CodeSize"] > 0 and common["Content"]["CodeSha256"], common
    override = lam.publish_layer_version(
        LayerName="override",
        Content={"ZipFile": layer_zip([("python/order_mod.py", "WHO = 'override'\n", False)])},
    )
    assert override["Version"] == 1 and "CompatibleRuntimes" not in override, override
    ok("PublishLayerVersion: versions, ARNs, content")

    got = lam.get_layer_version(LayerName="common", VersionNumber=1)
    assert got["LayerVersionArn"] == common["LayerVersionArn"], got
    assert got["Description"] == "shared code", got
    by_arn = lam.get_layer_version_by_arn(Arn=common["LayerVersionArn"])
    assert by_arn["Content"]["CodeSha256"] == common["Content"]["CodeSha256"], by_arn
    listed = lam.list_layers()["Layers"]
    assert [l["LayerName"] for l in listed] == ["common", "override"], listed
    assert listed[0]["LatestMatchingVersion"]["Version"] == 1, listed
    compatible = lam.list_layers(CompatibleRuntime=RUNTIME)["Layers"]
    assert [l["LayerName"] for l in compatible] == ["common"], compatible
    versions = lam.list_layer_versions(LayerName="common")["LayerVersions"]
    assert [v["Version"] for v in versions] == [1], versions
    ok("GetLayerVersion, GetLayerVersionByArn, ListLayers, ListLayerVersions")

    # Two functions use both layers; the later layer wins on order_mod.
    both = [common["LayerVersionArn"], override["LayerVersionArn"]]
    for name in ("f1", "f2"):
        f = lam.create_function(
            FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="handler.handler",
            Code={"ZipFile": zip_of(HANDLER)}, Layers=both,
        )
        assert [l["Arn"] for l in f["Layers"]] == both, f
        assert f["Layers"][0]["CodeSize"] == common["Content"]["CodeSize"], f
    cfg = lam.get_function(FunctionName="f1")["Configuration"]
    assert [l["Arn"] for l in cfg["Layers"]] == both, cfg
    cfg = lam.get_function_configuration(FunctionName="f2")
    assert [l["Arn"] for l in cfg["Layers"]] == both, cfg
    wrote = None
    for name in ("f1", "f2"):
        out = invoke(lam, name, json.dumps({"try_write": READONLY}).encode())
        assert out["shared"] == "common" and out["site"] == "site", out
        assert out["order"] == "override", out
        assert out["tool"] == "tool ran", out
        assert out["ld"].endswith("/lib"), out
        assert out["leaked"] == [], out
        path = out["path"]
        assert path[0] == out["task_root"], out
        assert path[1].endswith(f"/python/lib/python{PYVER}/site-packages"), out
        assert path[2].endswith("/python") and path[1].startswith(path[2]), out
        if READONLY:
            # EROFS (runc: the read-only bind answers first) or EACCES (gVisor checks the
            # permissions first: the directory is not the sandbox user's either).
            assert out["wrote"] in ("errno 30", "errno 13"), out
            wrote = out["wrote"]
    ok("two functions import from the layers; the later layer wins; PATH, LD_LIBRARY_PATH, sys.path")
    if READONLY:
        ok(f"/opt is read-only (writing fails: {wrote})")

    # The other order: common wins.
    f2 = lam.update_function_configuration(FunctionName="f2", Layers=list(reversed(both)))
    assert [l["Arn"] for l in f2["Layers"]] == list(reversed(both)), f2
    assert invoke(lam, "f2")["order"] == "common"
    ok("changing the layers' order changes which module wins")

    # Deleting a layer version: the functions that use it keep working, also cold.
    lam.delete_layer_version(LayerName="common", VersionNumber=1)
    lam.delete_layer_version(LayerName="common", VersionNumber=1)  # idempotent, as Lambda
    expect_error(
        "ResourceNotFoundException",
        lambda: lam.get_layer_version(LayerName="common", VersionNumber=1),
        404,
    )
    lam.update_function_configuration(FunctionName="f1", Environment={"Variables": {"COLD": "1"}})
    out = invoke(lam, "f1")
    assert out["shared"] == "common" and out["order"] == "override", out
    assert [l["Arn"] for l in lam.get_function(FunctionName="f1")["Configuration"]["Layers"]] == both
    again = lam.publish_layer_version(
        LayerName="common",
        Content={"ZipFile": layer_zip([("python/shared_mod.py", "WHO = 'common v2'\n", False)])},
    )
    assert again["Version"] == 2, again
    ok("a deleted layer version keeps working for its functions; its number is not reused")

    # Refusals, each naming what was wrong.
    def create(name, layers, runtime=RUNTIME):
        return lambda: lam.create_function(
            FunctionName=name, Runtime=runtime, Role=ROLE, Handler="handler.handler",
            Code={"ZipFile": zip_of(HANDLER)}, Layers=layers,
        )

    deleted = common["LayerVersionArn"]
    e = expect_error("InvalidParameterValueException", create("bad1", [deleted]), 400)
    assert deleted in e.response["Error"]["Message"], e.response
    malformed = ACCOUNT_PREFIX + "common"
    e = expect_error("InvalidParameterValueException", create("bad2", [malformed]), 400)
    assert malformed in e.response["Error"]["Message"], e.response
    other = "arn:aws:lambda:eu-west-1:123456789012:layer:common:2"
    e = expect_error("InvalidParameterValueException", create("bad3", [other]), 400)
    assert other in e.response["Error"]["Message"], e.response
    six = [ACCOUNT_PREFIX + f"l{i}:1" for i in range(6)]
    e = expect_error("InvalidParameterValueException", create("bad4", six), 400)
    assert "at most 5" in e.response["Error"]["Message"], e.response
    twice = [again["LayerVersionArn"], again["LayerVersionArn"]]
    e = expect_error("InvalidParameterValueException", create("bad5", twice), 400)
    assert again["LayerVersionArn"] in e.response["Error"]["Message"], e.response
    custom = lam.publish_layer_version(
        LayerName="custom-only",
        Content={"ZipFile": layer_zip([("bin/tool", "#!/bin/sh\n", True)])},
        CompatibleRuntimes=["provided.al2023"],
    )
    e = expect_error(
        "InvalidParameterValueException", create("bad6", [custom["LayerVersionArn"]]), 400
    )
    assert custom["LayerVersionArn"] in e.response["Error"]["Message"], e.response
    assert "provided.al2023" in e.response["Error"]["Message"], e.response
    e = expect_error(
        "InvalidParameterValueException",
        lambda: lam.update_function_configuration(FunctionName="f1", Layers=[deleted]),
        400,
    )
    assert deleted in e.response["Error"]["Message"], e.response
    assert [l["Arn"] for l in lam.get_function(FunctionName="f1")["Configuration"]["Layers"]] == both
    for name in ("bad1", "bad2", "bad3", "bad4", "bad5", "bad6"):
        expect_error("ResourceNotFoundException", lambda: lam.get_function(FunctionName=name), 404)
    ok("deleted, malformed, foreign, duplicate, incompatible and six layers: refused by name")

    # 250 MB of code and layers, unzipped: each layer fits, the two together do not.
    big1 = lam.publish_layer_version(
        LayerName="big1", Content={"ZipFile": zeros_zip("big1.bin", 150_000_000)}
    )
    big2 = lam.publish_layer_version(
        LayerName="big2", Content={"ZipFile": zeros_zip("big2.bin", 120_000_000)}
    )
    e = expect_error(
        "InvalidParameterValueException",
        create("toobig", [big1["LayerVersionArn"], big2["LayerVersionArn"]]),
        400,
    )
    message = e.response["Error"]["Message"]
    assert str(LIMIT) in message and big2["LayerVersionArn"] in message, message
    e = expect_error(
        "InvalidParameterValueException",
        lambda: lam.update_function_configuration(
            FunctionName="f2", Layers=[big1["LayerVersionArn"], big2["LayerVersionArn"]]
        ),
        400,
    )
    assert str(LIMIT) in e.response["Error"]["Message"], e.response
    fits = lam.update_function_configuration(FunctionName="f2", Layers=[big1["LayerVersionArn"]])
    assert [l["Arn"] for l in fits["Layers"]] == [big1["LayerVersionArn"]], fits
    e = expect_error(
        "InvalidParameterValueException",
        lambda: lam.update_function_code(
            FunctionName="f2", ZipFile=zeros_zip("handler.py", 120_000_000)
        ),
        400,
    )
    assert str(LIMIT) in e.response["Error"]["Message"], e.response
    after = lam.get_function_configuration(FunctionName="f2")
    assert after["CodeSha256"] == fits["CodeSha256"], "the failed deploy changed nothing"
    ok("code and layers past 262144000 bytes unzipped: refused with the sizes")

    # Who may: a developer publishes and deletes; an invoker may not publish, delete or read layers.
    dev = client(*new_key("developer"))
    mine = dev.publish_layer_version(
        LayerName="dev-layer", Content={"ZipFile": layer_zip([("python/d.py", "", False)])}
    )
    dev.delete_layer_version(LayerName="dev-layer", VersionNumber=mine["Version"])
    inv = client(*new_key("invoker"))
    for call in [
        lambda: inv.publish_layer_version(
            LayerName="nope", Content={"ZipFile": layer_zip([("python/n.py", "", False)])}
        ),
        lambda: inv.delete_layer_version(LayerName="override", VersionNumber=1),
        lambda: inv.list_layers(),
        lambda: inv.get_layer_version(LayerName="override", VersionNumber=1),
    ]:
        e = expect_client_error("AccessDeniedException", call)
        assert "invoker" in e.response["Error"]["Message"], e.response
    assert lam.get_layer_version(LayerName="override", VersionNumber=1)["Version"] == 1
    assert "nope" not in [l["LayerName"] for l in lam.list_layers()["Layers"]]
    ok("developers publish and delete layers; invokers may not touch them")

    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
