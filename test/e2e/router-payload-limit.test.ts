/**
 * A request over a router child's --payload-limit, end to end (real processes, dist/, so
 * `npm run build` first):
 * - straight to a `teiplex router` process over gRPC: PAYLOAD_TOO_LARGE in `teiplex-error-code`,
 *   the size and the limit named (the router's own refusal; unit-tested per RPC in
 *   test/unit/router-payload-limit.test.ts);
 * - through the manager's data plane (`/v1/embeddings` with `model`): 413 `payload_too_large`,
 *   never 429 MODEL_OVERLOADED. Two children with the same small limit: `known` runs as
 *   `teiplex router` with `--payload-limit` in its extra_args, so the manager knows the limit and
 *   refuses the message itself before sending it; `unknown` is the same router behind a
 *   `command` runtime (the flag inside its script), so the manager cannot know the limit, sends
 *   the message, and reads the router's own refusal from its trailer.
 * - `teiplex router --dense-path 2_Dense --disable-spans` (TEI's flags, accepted) starts and serves.
 */
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { projectPath } from '../../src/common/paths.js';
import { ERROR_CODE_KEY } from '../../src/tei/grpc-status.js';
import { client, instanceToml, writeConfig } from '../helpers/data-plane.js';
import { startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { direct, health, unary, type AnyClient } from '../helpers/mux-client.js';
import { startRouterProcess, type RouterProcess } from '../helpers/router-process.js';

const LIMIT = 4096;
/** One input well over LIMIT and well under the data plane's body limit. */
const BIG = 'word '.repeat(4000);
const SMALL = 'a small input';

describe('a teiplex router process over gRPC', () => {
  let router: RouterProcess;
  const clients: AnyClient[] = [];
  const open = (c: AnyClient): AnyClient => (clients.push(c), c);

  before(async () => {
    const model = await testModel({ kind: 'embedding' });
    router = await startRouterProcess(['--model-id', model, '--threads', '1', '--payload-limit', String(LIMIT)]);
  });
  after(async () => {
    for (const c of clients) c.close();
    await router?.stop('SIGKILL');
  });

  test('refuses a message over --payload-limit with PAYLOAD_TOO_LARGE, and keeps serving', async () => {
    const embed = open(direct(router.grpcPort, 'tei.v1.Embed'));
    const err = await unary(embed, 'Embed', { inputs: BIG }).then(
      () => assert.fail('an oversize message was answered'),
      (e: grpc.ServiceError) => e,
    );
    assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED, err.details);
    assert.deepEqual(err.metadata.get(ERROR_CODE_KEY), ['PAYLOAD_TOO_LARGE']);
    assert.match(err.details, new RegExp(`request message of \\d+ bytes is larger than the router's --payload-limit \\(${LIMIT} bytes\\)`));
    const batch = open(direct(router.grpcPort, 'teiplex.v1.Batch'));
    const batchErr = await unary(batch, 'EmbedBatch', { inputs: [SMALL, BIG] }).then(
      () => assert.fail('an oversize batch was answered'),
      (e: grpc.ServiceError) => e,
    );
    assert.equal(batchErr.code, grpc.status.RESOURCE_EXHAUSTED, batchErr.details);
    assert.deepEqual(batchErr.metadata.get(ERROR_CODE_KEY), ['PAYLOAD_TOO_LARGE']);
    const ok = await unary(embed, 'Embed', { inputs: SMALL });
    assert.ok(ok.res.embeddings.length > 0);
  });
});

describe('the data plane in front of a router child with a small --payload-limit', () => {
  let dir: string;
  let m: ManagerProcess;
  let api: ReturnType<typeof client>;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teiplex-payload-'));
    const model = await testModel({ kind: 'embedding' });
    // The same router, but the manager only sees "some executable": it cannot know its limit.
    const script = path.join(dir, 'router-with-limit.sh');
    await writeFile(script, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(projectPath('bin', 'teiplex.js'))} router --payload-limit ${LIMIT} "$@"\n`);
    await chmod(script, 0o755);
    const file = await writeConfig(
      dir,
      '',
      instanceToml('known', model, `extra_args = ["--payload-limit", "${LIMIT}"]`) +
        instanceToml('unknown', model, `runtime = "command"\ncommand = ${JSON.stringify(script)}`),
    );
    m = await startManager(file);
    for (const name of ['known', 'unknown']) await m.waitFor(name, (i) => i.status === 'running', 120_000);
    api = client(m.apiPort);
  });
  after(async () => {
    if (m) assert.equal(await m.stop(), 0, 'the manager stops cleanly');
    await rm(dir, { recursive: true, force: true });
  });

  for (const [name, says] of [
    // The manager refuses by itself: the instance's spec names the limit.
    ['known', /more than the instance's child accepts \(4096 bytes, its --payload-limit\); the multiplexer did not send it/],
    // The router refuses, and its code crosses the process boundary in the trailer.
    ['unknown', /larger than the router's --payload-limit \(4096 bytes\)/],
  ] as const) {
    test(`/v1/embeddings to '${name}': 413 payload_too_large, not 429 overloaded`, async () => {
      const res = await api.post('/v1/embeddings', { model: name, input: BIG });
      assert.equal(res.status, 413, JSON.stringify(res.body));
      assert.equal(res.body.error?.code, 'payload_too_large', JSON.stringify(res.body));
      assert.equal(res.body.error?.type, 'invalid_request_error');
      assert.match(res.body.error?.message ?? '', says);
      assert.equal(res.headers.get('retry-after'), null, 'nothing to retry');
      // A small input to the same instance is answered.
      const ok = await api.post('/v1/embeddings', { model: name, input: SMALL });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.equal(ok.body.data.length, 1);
    });
  }
});

describe('teiplex router --dense-path 2_Dense --disable-spans', () => {
  let router: RouterProcess;
  const clients: AnyClient[] = [];

  before(async () => {
    // A model without a Dense module: TEI's flags are accepted and change nothing.
    const model = await testModel({ kind: 'embedding' });
    router = await startRouterProcess(['--model-id', model, '--threads', '1', '--dense-path', '2_Dense', '--disable-spans', '--http-port', '0']);
  });
  after(async () => {
    for (const c of clients) c.close();
    await router?.stop('SIGKILL');
  });

  test('starts and serves gRPC and HTTP', async () => {
    const h = health(router.grpcPort);
    const embed = direct(router.grpcPort, 'tei.v1.Embed');
    clients.push(h, embed);
    assert.equal((await unary(h, 'Check', { service: 'tei.v1.Embed' })).res.status, 'SERVING');
    const viaGrpc = await unary(embed, 'Embed', { inputs: SMALL });
    assert.ok(viaGrpc.res.embeddings.length > 0);
    assert.ok(router.httpPort, `an HTTP port in the ready line: ${JSON.stringify(router.ready)}`);
    const viaHttp = await client(router.httpPort).post('/embed', { inputs: SMALL });
    assert.equal(viaHttp.status, 200, JSON.stringify(viaHttp.body));
    assert.equal(viaHttp.body[0].length, viaGrpc.res.embeddings.length);
  });
});
