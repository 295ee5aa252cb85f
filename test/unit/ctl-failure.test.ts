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

test('a batch verb: any API key; a listener without the data plane (data_port set) named', () => {
  const denied = new TeiplexClientError('UNAUTHENTICATED', 'GET /v1/batches: 401 UNAUTHENTICATED: missing API key', { status: 401 });
  assert.equal(describeFailure(denied, URL, 'data'), 'UNAUTHENTICATED: missing API key (pass an API key with --api-key or TEIPLEX_API_KEY)');
  const noRoute = new TeiplexClientError('NOT_FOUND', 'POST /v1/files: 404 NOT_FOUND: no route POST /v1/files', { status: 404 });
  assert.equal(describeFailure(noRoute, URL, 'data'), `NOT_FOUND: no route POST /v1/files (the batch routes are on the data plane: with data_port set, --url names that port, not ${URL})`);
  assert.equal(describeFailure(noRoute, URL), 'NOT_FOUND: no route POST /v1/files', 'an admin verb: no such hint');
  const noBatch = new TeiplexClientError('NOT_FOUND', "GET /v1/batches/b: 404 NOT_FOUND: no batch 'b'", { status: 404 });
  assert.equal(describeFailure(noBatch, URL, 'data'), "NOT_FOUND: no batch 'b'", 'a batch that is not there: no hint');
});

test('a connection failure: the client message and where the manager was looked for', () => {
  const e = new TeiplexClientError('CONNECTION_FAILED', `GET /instances: cannot reach ${URL}: ECONNREFUSED`);
  assert.equal(
    describeFailure(e, URL),
    `CONNECTION_FAILED: GET /instances: cannot reach ${URL}: ECONNREFUSED (is a manager (\`teiplex serve\`) running at ${URL}? --url or TEIPLEX_URL name another)`,
  );
  assert.match(
    describeFailure(new TeiplexClientError('TIMEOUT', 'GET /models: no answer in 2000 ms'), URL),
    /^TIMEOUT: GET \/models: no answer in 2000 ms \(the manager at http:\/\/127\.0\.0\.1:9000 did not answer within --timeout\)$/,
  );
});

test('TLS failures: a hint at the flag that is missing', () => {
  const fail = (message: string, url: string) => describeFailure(new TeiplexClientError('CONNECTION_FAILED', message), url);
  assert.match(
    fail('GET /instances: cannot reach https://m:9000: SELF_SIGNED_CERT_IN_CHAIN: self-signed certificate in certificate chain', 'https://m:9000'),
    /\(the manager's certificate was not accepted: give the CA that signed it with --cacert\)$/,
  );
  assert.match(
    fail('GET /instances: cannot reach https://m:9000: UND_ERR_SOCKET: other side closed', 'https://m:9000'),
    /\(the manager closed the TLS connection: does it require a client certificate \(--cert and --key\)\?\)$/,
  );
  assert.match(
    fail('GET /instances: cannot reach http://m:9000: UND_ERR_SOCKET: other side closed', 'http://m:9000'),
    /\(the manager closed the connection: does it serve https:\/\/ \(https:\/\/m:9000\)\?\)$/,
  );
  assert.match(fail('GET /instances: cannot reach http://m:9000: ECONNREFUSED', 'http://m:9000'), /\(is a manager/);
});

test('PERMISSION_DENIED: the server says why; no hint added', () => {
  const e = new TeiplexClientError(
    'PERMISSION_DENIED',
    "GET /instances: 403 PERMISSION_DENIED: API key 'u' may not use the admin API (it lacks admin = true)",
    { status: 403 },
  );
  assert.equal(describeFailure(e, URL), "PERMISSION_DENIED: API key 'u' may not use the admin API (it lacks admin = true)");
});

test('anything else: its message, no stack', () => {
  assert.equal(describeFailure(new Error("instance 'x' failed before it ran"), URL), "instance 'x' failed before it ran");
  assert.equal(describeFailure('plain', URL), 'plain');
});
