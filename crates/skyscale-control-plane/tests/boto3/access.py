"""Key roles and function patterns on the Lambda API (SigV4) and on AWS_IAM function URLs,
against a real Skyscale control plane (run by access.rs). Keys are created and revoked
through /v1 with the admin key.

Environment: as skyscale_test.py. Prints `ok: ...` per step and `ALL OK`.
"""

import json
import urllib.error
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from skyscale_test import (
    KEY_ID, REGION, ROLE, SECRET, URL, client, expect_client_error, ok, zip_of,
)

HANDLER = """
def handler(event, context):
    return {"function": context.function_name, "event": event.get("rawPath", event)}
"""


def v1(method, path, body=None):
    """A /v1 call with the admin key; returns (status, parsed JSON or None)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method, headers={
        "Authorization": f"Bearer {KEY_ID}.{SECRET}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def new_key(role, *patterns):
    status, key = v1("POST", "/v1/keys", {"role": role, "functions": list(patterns)})
    assert status == 201, (status, key)
    key_id, secret = key["key"].split(".", 1)
    return key_id, secret


def url_request(url, key=None):
    """GET a function URL, SigV4-signed with `key` (id, secret) when given."""
    headers = {}
    if key is not None:
        aws = AWSRequest(method="GET", url=url, data=b"", headers={})
        SigV4Auth(Credentials(*key), "lambda", REGION).add_auth(aws)
        headers = dict(aws.headers.items())
    req = urllib.request.Request(url, method="GET", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def main():
    admin = client()
    for name in ("team-a-boto", "team-b-boto"):
        admin.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE,
                              Handler="handler.handler", Code={"ZipFile": zip_of(HANDLER)})
    invoker_a = new_key("invoker", "team-a-*")
    invoker_b = new_key("invoker", "team-b-*")
    developer_a = new_key("developer", "team-a-*")

    # --- an invoker invokes, and does nothing else ---------------------------------------
    inv = client(*invoker_a)
    out = inv.invoke(FunctionName="team-a-boto", Payload=b'{"x": 1}')
    assert out["StatusCode"] == 200, out
    assert json.load(out["Payload"])["function"] == "team-a-boto"
    dry = inv.invoke(FunctionName="team-a-boto", InvocationType="DryRun")
    assert dry["StatusCode"] == 204, dry
    denied = expect_client_error(
        "AccessDeniedException",
        lambda: inv.update_function_code(FunctionName="team-a-boto",
                                         ZipFile=zip_of(HANDLER + "\n# v2\n")),
    )
    assert "invoker" in denied.response["Error"]["Message"], denied.response
    expect_client_error("AccessDeniedException",
                        lambda: inv.get_function(FunctionName="team-a-boto"))
    expect_client_error("AccessDeniedException", lambda: inv.list_functions())
    expect_client_error("AccessDeniedException",
                        lambda: inv.invoke(FunctionName="team-b-boto", Payload=b"{}"))
    expect_client_error("AccessDeniedException",
                        lambda: inv.delete_function(FunctionName="team-a-boto"))
    ok("invoker key: invoke works; update_function_code, get, list, other functions -> 403")

    # --- a developer works on its own functions only -------------------------------------
    dev = client(*developer_a)
    names = [f["FunctionName"] for f in dev.list_functions()["Functions"]]
    assert names == ["team-a-boto"], names
    updated = dev.update_function_code(FunctionName="team-a-boto",
                                       ZipFile=zip_of(HANDLER + "\n# v2\n"))
    assert updated["FunctionName"] == "team-a-boto", updated
    expect_client_error("AccessDeniedException",
                        lambda: dev.update_function_code(FunctionName="team-b-boto",
                                                         ZipFile=zip_of(HANDLER)))
    # Outside its patterns an existing and a missing function look the same.
    existing = expect_client_error("AccessDeniedException",
                                   lambda: dev.get_function(FunctionName="team-b-boto"))
    missing = expect_client_error("AccessDeniedException",
                                  lambda: dev.get_function(FunctionName="team-b-nothing"))
    assert (existing.response["Error"]["Message"].replace("team-b-boto", "F")
            == missing.response["Error"]["Message"].replace("team-b-nothing", "F"))
    ok("developer key: lists and deploys its functions; others -> 403, existing or not")

    # --- function URLs with AWS_IAM ------------------------------------------------------
    url = admin.create_function_url_config(FunctionName="team-a-boto",
                                           AuthType="AWS_IAM")["FunctionUrl"]
    status, body = url_request(url + "hello", invoker_a)
    assert status == 200 and body == {"function": "team-a-boto", "event": "/hello"}, body
    status, body = url_request(url + "hello", invoker_b)
    assert status == 403 and "team-a-boto" in body["Message"], (status, body)
    status, body = url_request(url + "hello")
    assert status == 403, (status, body)
    public = admin.create_function_url_config(FunctionName="team-b-boto",
                                              AuthType="NONE")["FunctionUrl"]
    status, body = url_request(public + "anyone")
    assert status == 200 and body["function"] == "team-b-boto", (status, body)
    ok("AWS_IAM function URL: invoker for its pattern -> 200, for other patterns -> 403")

    # --- revocation takes effect on the next request -------------------------------------
    status, _ = v1("DELETE", f"/v1/keys/{invoker_a[0]}")
    assert status == 204, status
    revoked = expect_client_error(
        "UnrecognizedClientException",
        lambda: inv.invoke(FunctionName="team-a-boto", Payload=b"{}"))
    unknown = expect_client_error(
        "UnrecognizedClientException",
        lambda: client("SKYNOSUCHKEY0000", invoker_a[1]).list_functions())
    wrong = expect_client_error(
        "UnrecognizedClientException",
        lambda: client(developer_a[0], invoker_a[1]).list_functions())
    assert (revoked.response["Error"]["Message"] == unknown.response["Error"]["Message"]
            == wrong.response["Error"]["Message"]), (revoked, unknown, wrong)
    status, body = url_request(url + "hello", invoker_a)
    assert status == 403, (status, body)
    ok("revoked key: SigV4 calls and signed URL requests fail at once, like an unknown key")

    # --- the audit log saw it all --------------------------------------------------------
    status, audit = v1("GET", "/v1/audit?limit=100")
    assert status == 200, audit
    entries = audit["entries"]
    refused = [e for e in entries if e["key_id"] == invoker_a[0]
               and e["action"] == "function.deploy" and e["outcome"] == "refused"]
    assert refused and refused[0]["target"] == "team-a-boto", entries
    deployed = [e for e in entries if e["key_id"] == developer_a[0]
                and e["action"] == "function.deploy" and e["outcome"] == "ok"]
    assert deployed and deployed[0]["target"] == "team-a-boto", entries
    assert any(e["action"] == "key.revoke" and e["target"] == invoker_a[0]
               and e["key_id"] == KEY_ID for e in entries), entries
    ok("audit log: the refused and the accepted deploy, the revocation")
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
