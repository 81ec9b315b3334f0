"""Function URLs against a real Skyscale control plane (run by lambda_api.rs): the config
operations through boto3, then plain HTTP requests to the URLs (urllib, signed with
botocore's SigV4 signer for AWS_IAM), and a FastAPI app behind mangum.

Environment: as skyscale_test.py, plus SKYSCALE_TEST_WEB_VENDOR (a directory with fastapi
and mangum installed for the sandbox's Python). Prints `ok: ...` per step and `ALL OK`.
"""

import base64
import io
import json
import os
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from skyscale_test import KEY_ID, REGION, ROLE, SECRET, client, expect_error, ok, zip_of

ECHO = """
import base64, json

def handler(event, context):
    path = event["rawPath"]
    if path == "/plain":
        return {"plain": True, "query": event.get("queryStringParameters")}
    if path == "/text":
        return "just text"
    if path == "/fail":
        raise RuntimeError("nope")
    if path == "/bad-result":
        return {"statusCode": 200, "headers": {"bad header": "x"}}
    if path == "/binary":
        return {"statusCode": 200, "headers": {"content-type": "image/png"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    return {"statusCode": 201,
            "headers": {"content-type": "application/json", "x-echo": "yes"},
            "cookies": ["s=1; Path=/", "t=2"],
            "body": json.dumps({"event": event})}
"""

APP = """
from typing import Optional

from fastapi import FastAPI
from mangum import Mangum
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    name: str
    price: float


@app.get("/items/{item_id}")
def read_item(item_id: int, q: Optional[str] = None):
    return {"item_id": item_id, "q": q}


@app.post("/items", status_code=201)
def create_item(item: Item):
    return {"created": item.name, "price": item.price}


handler = Mangum(app, lifespan="off")
"""


class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


def request(url, method="GET", body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return Resp(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Resp(e.code, e.headers, e.read())


def signed(url, method="GET", body=b"", headers=None):
    aws = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(Credentials(KEY_ID, SECRET), "lambda", REGION).add_auth(aws)
    return request(url, method, body or None, dict(aws.headers.items()))


def zip_dir(source, vendor):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("app.py", source)
        for path in sorted(Path(vendor).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                z.write(path, path.relative_to(vendor).as_posix())
    return buf.getvalue()


def main():
    lam = client()
    name = "urlfn"
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE,
                        Handler="handler.handler", Code={"ZipFile": zip_of(ECHO)}, Timeout=10)

    # --- configuration ------------------------------------------------------------------
    cors = {"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"],
            "AllowHeaders": ["content-type", "x-custom"], "ExposeHeaders": ["x-echo"],
            "MaxAge": 300}
    created = lam.create_function_url_config(FunctionName=name, AuthType="NONE", Cors=cors)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201, created
    url = created["FunctionUrl"]
    assert url.endswith(f"/url/{name}/"), url
    assert created["AuthType"] == "NONE" and created["InvokeMode"] == "BUFFERED"
    assert created["FunctionArn"].endswith(f":function:{name}"), created
    assert created["Cors"]["AllowOrigins"] == ["https://app.example"], created
    got = lam.get_function_url_config(FunctionName=name)
    assert got["FunctionUrl"] == url and got["LastModifiedTime"], got
    listed = lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]
    assert [c["FunctionUrl"] for c in listed] == [url], listed
    updated = lam.update_function_url_config(
        FunctionName=name, Cors=dict(cors, AllowCredentials=True))
    assert updated["Cors"]["AllowCredentials"] is True and updated["AuthType"] == "NONE"
    ok("create/get/list/update_function_url_config")

    expect_error("ResourceConflictException",
                 lambda: lam.create_function_url_config(FunctionName=name, AuthType="NONE"), 409)
    expect_error("ResourceNotFoundException",
                 lambda: lam.get_function_url_config(FunctionName="no-such-fn"), 404)
    expect_error("ResourceNotFoundException",
                 lambda: lam.get_function_url_config(FunctionName=name, Qualifier="nope"), 404)
    expect_error("InvalidParameterValueException",
                 lambda: lam.create_function_url_config(
                     FunctionName=name, AuthType="NONE", InvokeMode="RESPONSE_STREAM"), 400)
    expect_error("InvalidParameterValueException",
                 lambda: lam.update_function_url_config(
                     FunctionName=name, Cors={"AllowMethods": ["TRACE"]}), 400)
    ok("function URL errors")

    # --- requests ------------------------------------------------------------------------
    r = request(url + "echo/path?a=1&a=2&b=x%20y",
                headers={"Cookie": "c1=v1; c2=v2", "X-Multi": "m1", "User-Agent": "url-test"})
    assert r.status == 201, (r.status, r.body)
    assert r.headers["x-echo"] == "yes"
    assert r.headers.get_all("Set-Cookie") == ["s=1; Path=/", "t=2"], r.headers
    assert r.headers["x-amzn-RequestId"], r.headers
    event = r.json()["event"]
    assert event["version"] == "2.0" and event["routeKey"] == "$default", event
    assert event["rawPath"] == "/echo/path", event
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y", event
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}, event
    assert event["cookies"] == ["c1=v1", "c2=v2"], event
    assert "cookie" not in event["headers"] and event["headers"]["x-multi"] == "m1", event
    assert event["headers"]["x-forwarded-for"] == "127.0.0.1", event
    assert "body" not in event and event["isBase64Encoded"] is False, event
    http = event["requestContext"]["http"]
    assert http == {"method": "GET", "path": "/echo/path", "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1", "userAgent": "url-test"}, http
    assert event["requestContext"]["accountId"] == "anonymous", event
    assert "authorizer" not in event["requestContext"], event
    ok("GET with query and cookies -> payload 2.0 event; statusCode/headers/cookies mapped")

    doc = {"hello": "world", "n": [1, 2]}
    r = request(url + "post", "POST", json.dumps(doc).encode(),
                {"Content-Type": "application/json"})
    event = r.json()["event"]
    assert r.status == 201 and event["requestContext"]["http"]["method"] == "POST", event
    assert json.loads(event["body"]) == doc and event["isBase64Encoded"] is False, event
    ok("POST with a JSON body")

    blob = bytes(range(256)) * 4
    r = request(url + "upload", "PUT", blob, {"Content-Type": "application/octet-stream"})
    event = r.json()["event"]
    assert event["isBase64Encoded"] is True, event
    assert base64.b64decode(event["body"]) == blob
    ok("binary body -> base64 event body")

    r = request(url + "binary")
    assert r.status == 200 and r.body == bytes(range(256)), (r.status, r.body[:20])
    assert r.headers["content-type"] == "image/png"
    r = request(url + "plain?x=1")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {"plain": True, "query": {"x": "1"}}, r.body
    r = request(url + "text")
    assert (r.status, r.body) == (200, b"just text"), (r.status, r.body)
    ok("isBase64Encoded result, JSON and string results without statusCode")

    r = request(url + "fail")
    assert r.status == 502 and r.json() == {"Message": "Internal Server Error"}, r.body
    r = request(url + "bad-result")
    assert r.status == 502, (r.status, r.body)
    ok("function error and invalid result -> 502")

    # --- CORS ----------------------------------------------------------------------------
    r = request(url + "anything", "OPTIONS", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-custom"})
    assert r.status == 200, (r.status, r.body)
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example", r.headers
    assert r.headers["Access-Control-Allow-Methods"] == "GET,POST", r.headers
    assert r.headers["Access-Control-Allow-Headers"] == "content-type,x-custom", r.headers
    assert r.headers["Access-Control-Max-Age"] == "300", r.headers
    assert r.headers["Access-Control-Allow-Credentials"] == "true", r.headers
    r = request(url + "anything", "OPTIONS", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in r.headers, r.headers
    r = request(url + "echo", headers={"Origin": "https://app.example"})
    assert r.status == 201
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example", r.headers
    assert r.headers["Access-Control-Expose-Headers"] == "x-echo", r.headers
    ok("CORS preflight answered from the config; headers on actual responses")

    # --- AWS_IAM on an alias of $LATEST --------------------------------------------------
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="$LATEST")
    iam = lam.create_function_url_config(FunctionName=name, Qualifier="live",
                                         AuthType="AWS_IAM")
    iam_url = iam["FunctionUrl"]
    assert iam_url.endswith(f"/url/{name}:live/"), iam_url
    assert iam["FunctionArn"].endswith(f":function:{name}:live"), iam
    r = request(iam_url + "echo")
    assert r.status == 403, (r.status, r.body)
    r = signed(iam_url + "echo?signed=1")
    assert r.status == 201, (r.status, r.body)
    ctx = r.json()["event"]["requestContext"]
    assert ctx["authorizer"]["iam"]["accessKey"] == KEY_ID, ctx
    r = signed(iam_url + "echo", "POST", b'{"a": 1}', {"Content-Type": "application/json"})
    assert r.status == 201 and json.loads(r.json()["event"]["body"]) == {"a": 1}, r.body
    bad = AWSRequest(method="GET", url=iam_url + "echo")
    SigV4Auth(Credentials(KEY_ID, "wrong" + SECRET[5:]), "lambda", REGION).add_auth(bad)
    r = request(iam_url + "echo", headers=dict(bad.headers.items()))
    assert r.status == 403, (r.status, r.body)
    listed = lam.list_function_url_configs(FunctionName=name, MaxItems=1)
    assert len(listed["FunctionUrlConfigs"]) == 1 and listed["NextMarker"], listed
    ok("AWS_IAM: unsigned and wrongly signed -> 403, signed -> invoked; alias at $LATEST")

    # --- throttling, deletion ------------------------------------------------------------
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    r = request(url + "echo")
    assert r.status == 429, (r.status, r.body)
    lam.delete_function_concurrency(FunctionName=name)
    assert request(url + "echo").status == 201
    lam.delete_function_url_config(FunctionName=name)
    r = request(url + "echo")
    assert r.status == 404, (r.status, r.body)
    lam.delete_alias(FunctionName=name, Name="live")
    assert request(iam_url + "echo").status == 404
    expect_error("ResourceNotFoundException",
                 lambda: lam.get_function_url_config(FunctionName=name, Qualifier="live"), 404)
    ok("throttled -> 429; deleted URL and deleted alias -> 404")

    # --- a FastAPI app through mangum ----------------------------------------------------
    vendor = os.environ["SKYSCALE_TEST_WEB_VENDOR"]
    lam.create_function(FunctionName="webapp", Runtime="python3.11", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": zip_dir(APP, vendor)},
                        MemorySize=256, Timeout=30)
    web = lam.create_function_url_config(FunctionName="webapp", AuthType="NONE")["FunctionUrl"]
    r = request(web + "items/42?q=hello")
    assert r.status == 200, (r.status, r.body)
    assert r.json() == {"item_id": 42, "q": "hello"}, r.body
    r = request(web + "items", "POST", json.dumps({"name": "pen", "price": 1.5}).encode(),
                {"Content-Type": "application/json"})
    assert r.status == 201 and r.json() == {"created": "pen", "price": 1.5}, (r.status, r.body)
    r = request(web + "items/not-a-number")
    assert r.status == 422, (r.status, r.body)
    r = request(web + "nowhere")
    assert r.status == 404 and r.json() == {"detail": "Not Found"}, (r.status, r.body)
    ok("FastAPI + mangum: path and query parameters, JSON body, validation error, 404")

    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
