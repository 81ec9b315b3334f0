// The AWS SDK for JavaScript v3 against a real Skyscale control plane (run by
// lambda_api.rs), so a second SDK guards the wire format. Environment: SKYSCALE_URL,
// SKYSCALE_KEY_ID, SKYSCALE_SECRET, SKYSCALE_TEST_ZIP (a zip with handler.py), NODE_PATH.
// Prints `ok: ...` per step and `ALL OK` at the end; any failure exits non-zero.
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";
import { createRequire } from "node:module";

const require = createRequire(process.env.NODE_PATH + "/");
const {
  LambdaClient, CreateFunctionCommand, InvokeCommand, PublishVersionCommand,
  CreateAliasCommand, GetFunctionCommand, ListEventSourceMappingsCommand,
  ResourceNotFoundException, waitUntilFunctionActiveV2,
} = require("@aws-sdk/client-lambda");

const ok = (what) => console.log(`ok: ${what}`);
const lambda = new LambdaClient({
  endpoint: process.env.SKYSCALE_URL,
  region: "us-east-1",
  credentials: {
    accessKeyId: process.env.SKYSCALE_KEY_ID,
    secretAccessKey: process.env.SKYSCALE_SECRET,
  },
  maxAttempts: 1,
});
const text = (bytes) => new TextDecoder().decode(bytes);

const created = await lambda.send(new CreateFunctionCommand({
  FunctionName: "js-sdk",
  Runtime: "python3.11",
  Role: "arn:aws:iam::000000000000:role/ignored",
  Handler: "handler.handler",
  Code: { ZipFile: readFileSync(process.env.SKYSCALE_TEST_ZIP) },
}));
assert.equal(created.FunctionName, "js-sdk");
assert.equal(created.State, "Active");
await waitUntilFunctionActiveV2({ client: lambda, maxWaitTime: 30 }, { FunctionName: "js-sdk" });
ok("create and wait for Active");

const invoked = await lambda.send(new InvokeCommand({
  FunctionName: "js-sdk", Payload: JSON.stringify({ name: "js" }), LogType: "Tail",
}));
assert.equal(invoked.StatusCode, 200);
assert.deepEqual(JSON.parse(text(invoked.Payload)), { hello: "js" });
const tail = Buffer.from(invoked.LogResult, "base64").toString();
assert.match(tail, /printed for js/);
assert.match(tail, /REPORT RequestId:/);
ok("invoke with the log tail");

const version = await lambda.send(new PublishVersionCommand({ FunctionName: "js-sdk" }));
assert.equal(version.Version, "1");
const alias = await lambda.send(new CreateAliasCommand({
  FunctionName: "js-sdk", Name: "live", FunctionVersion: "1",
}));
assert.match(alias.AliasArn, /:function:js-sdk:live$/);
const viaAlias = await lambda.send(new InvokeCommand({
  FunctionName: "js-sdk", Qualifier: "live", Payload: "{}",
}));
assert.equal(viaAlias.ExecutedVersion, "1");
ok("publish a version, alias it, invoke through the alias");

try {
  await lambda.send(new GetFunctionCommand({ FunctionName: "no-such-function" }));
  assert.fail("expected ResourceNotFoundException");
} catch (e) {
  assert.ok(e instanceof ResourceNotFoundException, `got ${e.name}`);
  assert.equal(e.$metadata.httpStatusCode, 404);
  assert.match(e.message, /Function not found/);
}
try {
  await lambda.send(new ListEventSourceMappingsCommand({}));
  assert.fail("expected UnsupportedOperationException");
} catch (e) {
  assert.equal(e.name, "UnsupportedOperationException");
  assert.match(e.message, /ListEventSourceMappings is not supported by Skyscale/);
}
ok("named errors: ResourceNotFoundException, UnsupportedOperationException");
console.log("ALL OK");
