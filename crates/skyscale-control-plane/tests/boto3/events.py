"""boto3 against a real Skyscale control plane (run by events.rs): the EventInvokeConfig
operations, Invoke with InvocationType Event (202 after the commit, the event id as the
request id) and the errors for bad values.

Environment: SKYSCALE_URL, SKYSCALE_KEY_ID, SKYSCALE_SECRET, SKYSCALE_RUNTIME (a Python
runtime the server has). Prints `ok: ...` per step and `ALL OK` at the end.
"""

import datetime
import json
import os
import time
import urllib.request

import boto3
from botocore.config import Config

from skyscale_test import KEY_ID, REGION, ROLE, SECRET, URL, client, expect_error, ok, zip_of

RUNTIME = os.environ["SKYSCALE_RUNTIME"]
ARN = "arn:aws:lambda:us-east-1:000000000000:function:"

SOURCE = """
def handler(event, context):
    return {"got": event}
"""


def unvalidated():
    """A client that sends out-of-range values instead of refusing them itself."""
    return boto3.client(
        "lambda", endpoint_url=URL, region_name=REGION, aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        config=Config(parameter_validation=False, read_timeout=60),
    )


def v1(path):
    req = urllib.request.Request(URL + path, headers={"Authorization": f"Bearer {KEY_ID}.{SECRET}"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def main():
    lam = client()
    for name in ["ev", "sink"]:
        lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE,
                           Handler="handler.handler", Code={"ZipFile": zip_of(SOURCE)})

    # Put: the whole configuration.
    r = lam.put_function_event_invoke_config(
        FunctionName="ev", MaximumRetryAttempts=1, MaximumEventAgeInSeconds=120,
        DestinationConfig={"OnFailure": {"Destination": ARN + "sink"}},
    )
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200, r
    assert r["FunctionArn"] == ARN + "ev:$LATEST", r
    assert r["MaximumRetryAttempts"] == 1 and r["MaximumEventAgeInSeconds"] == 120, r
    assert r["DestinationConfig"]["OnFailure"]["Destination"] == ARN + "sink", r
    assert r["DestinationConfig"]["OnSuccess"] == {}, r
    assert isinstance(r["LastModified"], datetime.datetime), r
    ok("put_function_event_invoke_config")

    got = lam.get_function_event_invoke_config(FunctionName="ev")
    assert got["MaximumRetryAttempts"] == 1 and got["FunctionArn"] == r["FunctionArn"], got
    # Update: only what is given.
    u = lam.update_function_event_invoke_config(FunctionName="ev", MaximumRetryAttempts=0)
    assert u["MaximumRetryAttempts"] == 0 and u["MaximumEventAgeInSeconds"] == 120, u
    assert u["DestinationConfig"]["OnFailure"]["Destination"] == ARN + "sink", u
    u = lam.update_function_event_invoke_config(
        FunctionName="ev", DestinationConfig={"OnSuccess": {"Destination": "sink"}})
    assert u["DestinationConfig"]["OnSuccess"]["Destination"] == ARN + "sink", u
    ok("get and update_function_event_invoke_config")

    # Per qualifier, listed and paged.
    lam.publish_version(FunctionName="ev")
    lam.create_alias(FunctionName="ev", Name="live", FunctionVersion="1")
    lam.put_function_event_invoke_config(FunctionName="ev", Qualifier="live",
                                         MaximumRetryAttempts=2)
    lam.put_function_event_invoke_config(FunctionName="ev:1", MaximumEventAgeInSeconds=60)
    listed = lam.list_function_event_invoke_configs(FunctionName="ev")
    arns = sorted(c["FunctionArn"] for c in listed["FunctionEventInvokeConfigs"])
    assert arns == [ARN + "ev:$LATEST", ARN + "ev:1", ARN + "ev:live"], listed
    page = lam.list_function_event_invoke_configs(FunctionName="ev", MaxItems=2)
    assert len(page["FunctionEventInvokeConfigs"]) == 2 and page["NextMarker"], page
    rest = lam.list_function_event_invoke_configs(FunctionName="ev", Marker=page["NextMarker"])
    assert len(rest["FunctionEventInvokeConfigs"]) == 1 and "NextMarker" not in rest, rest
    pages = lam.get_paginator("list_function_event_invoke_configs").paginate(
        FunctionName="ev", PaginationConfig={"PageSize": 1})
    assert sum(len(p["FunctionEventInvokeConfigs"]) for p in pages) == 3
    lam.delete_function_event_invoke_config(FunctionName="ev", Qualifier="live")
    e = expect_error("ResourceNotFoundException",
                     lambda: lam.get_function_event_invoke_config(FunctionName="ev",
                                                                  Qualifier="live"), 404)
    assert "doesn't have an EventInvokeConfig" in str(e), e
    expect_error("ResourceNotFoundException",
                 lambda: lam.delete_function_event_invoke_config(FunctionName="ev",
                                                                 Qualifier="live"), 404)
    ok("configs per qualifier: list (paged), delete")

    # Bad values, as the server answers them.
    raw = unvalidated()
    for kwargs, needle in [
        ({"MaximumRetryAttempts": 3}, "MaximumRetryAttempts 3 is out of range"),
        ({"MaximumRetryAttempts": -1}, "MaximumRetryAttempts -1 is out of range"),
        ({"MaximumEventAgeInSeconds": 59}, "MaximumEventAgeInSeconds 59 is out of range"),
        ({"MaximumEventAgeInSeconds": 21601}, "MaximumEventAgeInSeconds 21601 is out of range"),
        ({"DestinationConfig": {"OnSuccess": {"Destination": "arn:aws:sqs:us-east-1:000000000000:q"}}},
         "not a Lambda function ARN"),
        ({"DestinationConfig": {"OnFailure": {"Destination": ARN + "nope"}}}, "does not exist"),
        ({"DestinationConfig": {"OnFailure": {"Destination": ARN + "ev"}}},
         "cannot be its own destination"),
    ]:
        try:
            raw.put_function_event_invoke_config(FunctionName="ev", **kwargs)
        except raw.exceptions.InvalidParameterValueException as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400, e.response
            assert needle in e.response["Error"]["Message"], (needle, e.response)
        else:
            raise AssertionError(f"{kwargs} was accepted")
    after = lam.get_function_event_invoke_config(FunctionName="ev")
    assert after["MaximumRetryAttempts"] == 0, "a refused put changed nothing"
    expect_error("ResourceNotFoundException",
                 lambda: lam.put_function_event_invoke_config(FunctionName="missing",
                                                              MaximumRetryAttempts=1), 404)
    expect_error("ResourceNotFoundException",
                 lambda: lam.get_function_event_invoke_config(FunctionName="sink"), 404)
    ok("bad values get InvalidParameterValueException naming them")

    # Invoke Event: 202 once committed; the request id is the event's id.
    r = lam.invoke(FunctionName="sink", InvocationType="Event", Payload=b'{"a": 1}')
    assert r["StatusCode"] == 202, r
    event_id = r["ResponseMetadata"]["RequestId"]
    deadline = time.time() + 60
    while True:
        recs = v1("/v1/functions/sink/invocations")["invocations"]
        mine = [x for x in recs if x.get("event_id") == event_id]
        if mine and mine[0]["status"] == "success":
            assert mine[0]["attempt"] == 1 and mine[0]["trigger"] == "event", mine
            break
        assert time.time() < deadline, recs
        time.sleep(0.2)
    expect_error("RequestTooLargeException",
                 lambda: lam.invoke(FunctionName="sink", InvocationType="Event",
                                    Payload=b'"' + b"x" * (1024 * 1024) + b'"'), 413)
    expect_error("InvalidRequestContentException",
                 lambda: lam.invoke(FunctionName="sink", InvocationType="Event",
                                    Payload=b"{nope"), 400)
    expect_error("ResourceNotFoundException",
                 lambda: lam.invoke(FunctionName="missing", InvocationType="Event",
                                    Payload=b"{}"), 404)
    ok("invoke Event: 202 after the commit, the event ran; bad payloads refused")
    print("ALL OK")


main()
