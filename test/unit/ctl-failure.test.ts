/**
 * A failed call as `teiplex ctl` prints it (src/ctl/failure.ts): the server's code and its own
 * message (the client's call and status prefix dropped), the client's connection and timeout
 * codes with a hint naming the URL, and anything else by its message alone.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TeiplexClientError } from '../../src/client/errors.js';
import { describeFailure } from '../../src/ctl/failure.js';

const URL = 'http://127.0.0.1:9000';

test("a server error: its code and the server's message", () => {
  const e = new TeiplexClientError('INSTANCE_NOT_FOUND', "GET /instances/x: 404 INSTANCE_NOT_FOUND: instance 'x' not found", { status: 404 });
  assert.equal(describeFailure(e, URL), "INSTANCE_NOT_FOUND: instance 'x' not found");
  const denied = new TeiplexClientError('UNAUTHENTICATED', 'GET /instances: 401 UNAUTHENTICATED: missing API key', { status: 401 });
  assert.equal(describeFailure(denied, URL), 'UNAUTHENTICATED: missing API key (pass an admin API key with --api-key or TEIPLEX_API_KEY)');
});

test('a connection failure: the client message and where the manager was looked for', () => {
  const e = new TeiplexClientError('CONNECTION_FAILED', `GET /instances: cannot reach ${URL}: ECONNREFUSED`);
  assert.equal(describeFailure(e, URL), `CONNECTION_FAILED: GET /instances: cannot reach ${URL}: ECONNREFUSED (is a manager (\`teiplex serve\`) running at ${URL}? --url or TEIPLEX_URL name another)`);
  assert.match(describeFailure(new TeiplexClientError('TIMEOUT', 'GET /models: no answer in 2000 ms'), URL), /^TIMEOUT: GET \/models: no answer in 2000 ms \(the manager at http:\/\/127\.0\.0\.1:9000 did not answer within --timeout\)$/);
});

test('anything else: its message, no stack', () => {
  assert.equal(describeFailure(new Error("instance 'x' failed before it ran"), URL), "instance 'x' failed before it ran");
  assert.equal(describeFailure('plain', URL), 'plain');
});
