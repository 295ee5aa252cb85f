/**
 * "Request metadata of the client is not forwarded to children" (docs/multiplexer.md), the API
 * key above all: a real `teiplex serve` with API keys, its child the FAKE tei.v1 child
 * (test/helpers/fake-tei-child.ts), which logs the metadata of every call it receives. A client's
 * `authorization` and its own headers reach no child, through the gRPC multiplexer (unary and
 * stream) or the HTTP data plane (TEI and OpenAI routes). A control call straight to the child
 * shows the fake does log such metadata when it gets it.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { client, writeConfig } from '../helpers/data-plane.js';
import { fakeCallsOf, fakeChildScript, fakeInstanceToml, type FakeCall } from '../helpers/fake-tei-child.js';
import { startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { bidi, direct, mux, unary, type AnyClient } from '../helpers/mux-client.js';
import { until } from '../helpers/wait.js';

const KEY = 'privacy-test-key-0123456789';
const SECRET = 'client-secret-value-42';

let dir: string;
let m: ManagerProcess;
let c: AnyClient;
let childPort: number;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-metadata-'));
  const script = await fakeChildScript(dir);
  // The admin API stays keyless (the test's own polling); the data plane needs the key.
  const keys = `[auth]\nadmin_requires_key = false\n[[auth.api_keys]]\nname = "client"\nkey_sha256 = "${createHash('sha256').update(KEY).digest('hex')}"\n`;
  const file = await writeConfig(dir, '', fakeInstanceToml('fake', script) + keys);
  m = await startManager(file);
  childPort = (await m.waitFor('fake', (i) => i.status === 'running', 120_000)).port;
  c = mux(Number(m.ready.grpc_port));
});

after(async () => {
  c?.close();
  if (m) assert.equal(await m.stop(), 0, 'the manager stops cleanly');
  await rm(dir, { recursive: true, force: true });
});

function clientMetadata(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${KEY}`);
  md.set('x-client-secret', SECRET);
  md.set('cookie', `session=${SECRET}`);
  return md;
}

/** The fake's logged call carrying `input`, once it is in the log. */
function callWith(input: string): Promise<FakeCall> {
  return until(`the child logged the call with '${input}'`, () => fakeCallsOf(path.join(dir, 'logs'), 'fake').find((f) => f.inputs.includes(input)));
}

/** Nothing of the client's credentials or own headers in what the child received. */
function assertClean(call: FakeCall, via: string): void {
  const keys = Object.keys(call.metadata).map((k) => k.toLowerCase());
  for (const k of ['authorization', 'x-client-secret', 'cookie']) assert.ok(!keys.includes(k), `${via}: the child received '${k}' (${JSON.stringify(call.metadata)})`);
  const all = JSON.stringify(call.metadata);
  assert.ok(!all.includes(KEY), `${via}: the API key reached the child: ${all}`);
  assert.ok(!all.includes(SECRET), `${via}: the client's header value reached the child: ${all}`);
}

describe('client metadata never reaches a child (fake child logging what it receives)', () => {
  test('control: a call straight to the child with the same metadata is logged with it', async () => {
    const embed = direct(childPort, 'tei.v1.Embed');
    try {
      await unary(embed, 'Embed', { inputs: 'control-direct' }, {}, clientMetadata());
    } finally {
      embed.close();
    }
    const call = await callWith('control-direct');
    assert.deepEqual(call.metadata.authorization, `Bearer ${KEY}`);
    assert.equal(call.metadata['x-client-secret'], SECRET);
  });

  test('gRPC multiplexer, unary Embed: no authorization, no client header at the child', async () => {
    const r = await unary(c, 'Embed', { target: { instance_name: 'fake' }, request: { inputs: 'via-grpc-unary' } }, {}, clientMetadata());
    assert.deepEqual(r.res.embeddings, ['via-grpc-unary'.length, 1, 0, 0]);
    assertClean(await callWith('via-grpc-unary'), 'gRPC unary');
  });

  test('gRPC multiplexer, EmbedStream: no authorization, no client header at the child', async () => {
    const r = await bidi(c, 'EmbedStream', [{ target: { instance_name: 'fake' }, request: { inputs: 'via-grpc-stream-1' } }, { request: { inputs: 'via-grpc-stream-2' } }], {}, clientMetadata());
    assert.equal(r.error, undefined, r.error?.details);
    assert.equal(r.responses.length, 2);
    assertClean(await callWith('via-grpc-stream-2'), 'gRPC stream');
  });

  test('HTTP data plane, /embed and /v1/embeddings (one input and a batch): no Authorization, no client header at the child', async () => {
    const api = client(m.apiPort, { authorization: `Bearer ${KEY}`, 'x-client-secret': SECRET, cookie: `session=${SECRET}` });
    const one = await api.post('/embed', { model: 'fake', inputs: 'via-http-one' });
    assert.equal(one.status, 200, JSON.stringify(one.body));
    assertClean(await callWith('via-http-one'), 'HTTP /embed');
    const many = await api.post('/v1/embeddings', { model: 'fake', input: ['via-http-a', 'via-http-b'] });
    assert.equal(many.status, 200, JSON.stringify(many.body));
    assertClean(await callWith('via-http-b'), 'HTTP /v1/embeddings batch');
  });
});
