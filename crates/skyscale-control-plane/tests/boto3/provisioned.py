"""boto3 against a real Skyscale control plane (run by lambda_api.rs): Put, Get, List and
DeleteProvisionedConcurrencyConfig, their shapes and statuses (IN_PROGRESS → READY), and
their errors: $LATEST, a qualifier that does not exist, an unknown function, more than the
reserved concurrency, a weighted alias, a configuration that does not exist.

Environment: SKYSCALE_URL, SKYSCALE_KEY_ID, SKYSCALE_SECRET, SKYSCALE_RUNTIME. Prints
`ok: ...` per step and `ALL OK` at the end.
"""

import base64
import json
import os
import time

from skyscale_test import ROLE, client, expect_error, ok, zip_of

RUNTIME = os.environ["SKYSCALE_RUNTIME"]
ARN = "arn:aws:lambda:us-east-1:000000000000:function:"

SOURCE = """
import os

INIT_TYPE = os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")


def handler(event, context):
    return {"init_type": INIT_TYPE, "now": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")}
"""


def wait_status(lam, qualifier, status, within=60):
    deadline = time.time() + within
    while True:
        r = lam.get_provisioned_concurrency_config(FunctionName="pc", Qualifier=qualifier)
        if r["Status"] == status:
            return r
        assert time.time() < deadline, f"{qualifier} never became {status}: {r}"
        time.sleep(0.1)


def main():
    lam = client()
    lam.create_function(FunctionName="pc", Runtime=RUNTIME, Role=ROLE,
                        Handler="handler.handler", Code={"ZipFile": zip_of(SOURCE)})
    v1 = lam.publish_version(FunctionName="pc")["Version"]
    lam.update_function_configuration(FunctionName="pc", Environment={"Variables": {"V": "2"}})
    v2 = lam.publish_version(FunctionName="pc")["Version"]
    assert (v1, v2) == ("1", "2"), (v1, v2)
    lam.create_alias(FunctionName="pc", Name="live", FunctionVersion="1")
    lam.create_alias(FunctionName="pc", Name="latest", FunctionVersion="$LATEST")

    # Nothing configured yet: the named exception, 404.
    expect_error("ProvisionedConcurrencyConfigNotFoundException",
                 lambda: lam.get_provisioned_concurrency_config(FunctionName="pc", Qualifier="live"),
                 404)
    ok("GetProvisionedConcurrencyConfig without a configuration")

    r = lam.put_provisioned_concurrency_config(FunctionName="pc", Qualifier="live",
                                               ProvisionedConcurrentExecutions=2)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 202, r
    assert r["RequestedProvisionedConcurrentExecutions"] == 2, r
    assert r["Status"] in ("IN_PROGRESS", "READY"), r
    assert r["LastModified"].endswith("+0000"), r
    ready = wait_status(lam, "live", "READY")
    assert ready["AvailableProvisionedConcurrentExecutions"] == 2, ready
    assert ready["AllocatedProvisionedConcurrentExecutions"] == 2, ready
    assert "StatusReason" not in ready, ready
    ok("PutProvisionedConcurrencyConfig: 202, IN_PROGRESS then READY with 2 allocated")

    out = lam.invoke(FunctionName="pc", Qualifier="live", LogType="Tail")
    body = json.loads(out["Payload"].read())
    assert body["init_type"] == "provisioned-concurrency", body
    assert out["ExecutedVersion"] == "1", out
    tail = base64.b64decode(out["LogResult"]).decode()
    assert "REPORT" in tail and "Init Duration" not in tail, tail
    ok("Invoke of the alias runs in a provisioned sandbox, no Init Duration")

    listed = lam.list_provisioned_concurrency_configs(FunctionName="pc")["ProvisionedConcurrencyConfigs"]
    assert [c["FunctionArn"] for c in listed] == [ARN + "pc:live"], listed
    assert listed[0]["RequestedProvisionedConcurrentExecutions"] == 2, listed
    ok("ListProvisionedConcurrencyConfigs")

    # The errors.
    e = expect_error("InvalidParameterValueException",
                     lambda: lam.put_provisioned_concurrency_config(
                         FunctionName="pc", Qualifier="$LATEST", ProvisionedConcurrentExecutions=1),
                     400)
    assert "unpublished" in e.response["Error"]["Message"], e.response
    e = expect_error("InvalidParameterValueException",
                     lambda: lam.put_provisioned_concurrency_config(
                         FunctionName="pc", Qualifier="latest", ProvisionedConcurrentExecutions=1),
                     400)
    assert "unpublished" in e.response["Error"]["Message"], e.response
    expect_error("ResourceNotFoundException",
                 lambda: lam.put_provisioned_concurrency_config(
                     FunctionName="pc", Qualifier="nope", ProvisionedConcurrentExecutions=1),
                 404)
    expect_error("ResourceNotFoundException",
                 lambda: lam.put_provisioned_concurrency_config(
                     FunctionName="pc", Qualifier="9", ProvisionedConcurrentExecutions=1),
                 404)
    e = expect_error("ResourceNotFoundException",
                     lambda: lam.get_provisioned_concurrency_config(
                         FunctionName="missing", Qualifier="1"),
                     404)
    assert "missing" in e.response["Error"]["Message"], e.response
    expect_error("ResourceNotFoundException",
                 lambda: lam.list_provisioned_concurrency_configs(FunctionName="missing"), 404)
    ok("$LATEST, an alias of $LATEST, unknown qualifiers and functions are refused")

    # An alias and its version would count the same sandboxes twice.
    e = expect_error("ResourceConflictException",
                     lambda: lam.put_provisioned_concurrency_config(
                         FunctionName="pc", Qualifier="1", ProvisionedConcurrentExecutions=1),
                     409)
    assert "live" in e.response["Error"]["Message"], e.response
    ok("a version already provisioned through an alias is a conflict")

    lam.create_alias(FunctionName="pc", Name="split", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    e = expect_error("InvalidParameterValueException",
                     lambda: lam.put_provisioned_concurrency_config(
                         FunctionName="pc", Qualifier="split", ProvisionedConcurrentExecutions=1),
                     400)
    assert "weights" in e.response["Error"]["Message"], e.response
    ok("a weighted alias is refused by name")

    # Reserved concurrency bounds the function's configurations together.
    lam.put_function_concurrency(FunctionName="pc", ReservedConcurrentExecutions=3)
    e = expect_error("InvalidParameterValueException",
                     lambda: lam.put_provisioned_concurrency_config(
                         FunctionName="pc", Qualifier="live", ProvisionedConcurrentExecutions=4),
                     400)
    assert "reservedConcurrentExecution" in e.response["Error"]["Message"], e.response
    # Nor may a reservation fall below what is provisioned (2 on live).
    e = expect_error("InvalidParameterValueException",
                     lambda: lam.put_function_concurrency(
                         FunctionName="pc", ReservedConcurrentExecutions=1),
                     400)
    assert "below the 2 provisioned" in e.response["Error"]["Message"], e.response
    assert lam.get_function_concurrency(FunctionName="pc")["ReservedConcurrentExecutions"] == 3
    lam.delete_function_concurrency(FunctionName="pc")
    # The account keeps a tenth of its concurrency unreserved.
    e = expect_error("InvalidParameterValueException",
                     lambda: lam.put_provisioned_concurrency_config(
                         FunctionName="pc", Qualifier="live", ProvisionedConcurrentExecutions=10000),
                     400)
    assert "UnreservedConcurrentExecution" in e.response["Error"]["Message"], e.response
    settings = lam.get_account_settings()["AccountLimit"]
    assert settings["UnreservedConcurrentExecutions"] == settings["ConcurrentExecutions"] - 2, settings
    ok("more than the reserved concurrency, a reservation below the provisioned, or below the "
       "account's unreserved minimum, is refused")

    lam.delete_provisioned_concurrency_config(FunctionName="pc", Qualifier="live")
    expect_error("ProvisionedConcurrencyConfigNotFoundException",
                 lambda: lam.get_provisioned_concurrency_config(FunctionName="pc", Qualifier="live"),
                 404)
    expect_error("ProvisionedConcurrencyConfigNotFoundException",
                 lambda: lam.delete_provisioned_concurrency_config(FunctionName="pc", Qualifier="live"),
                 404)
    assert lam.list_provisioned_concurrency_configs(FunctionName="pc")["ProvisionedConcurrencyConfigs"] == []
    body = json.loads(lam.invoke(FunctionName="pc", Qualifier="live")["Payload"].read())
    assert body["init_type"] == "on-demand", body
    ok("DeleteProvisionedConcurrencyConfig: gone, invocations on demand again")

    # Deleting the alias deletes its configuration.
    lam.put_provisioned_concurrency_config(FunctionName="pc", Qualifier="live",
                                           ProvisionedConcurrentExecutions=1)
    lam.delete_alias(FunctionName="pc", Name="live")
    lam.create_alias(FunctionName="pc", Name="live", FunctionVersion="1")
    expect_error("ProvisionedConcurrencyConfigNotFoundException",
                 lambda: lam.get_provisioned_concurrency_config(FunctionName="pc", Qualifier="live"),
                 404)
    ok("deleting an alias deletes its configuration")
    print("ALL OK")


if __name__ == "__main__":
    main()
