"""Shared by the scripts that drive a real Skyscale control plane with boto3.

Environment: SKYSCALE_URL, SKYSCALE_KEY_ID, SKYSCALE_SECRET (set by the Rust test that runs
the script).
"""

import io
import os
import zipfile

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
