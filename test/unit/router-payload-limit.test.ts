/**
 * A gRPC request message over the router's --payload-limit, over loopback against the real
 * server and a real engine: every tei.v1 and teiplex.v1.Batch RPC (unary, client streams,
 * bidirectional streams) refuses it with PAYLOAD_TOO_LARGE (RESOURCE_EXHAUSTED and the
 * `teiplex-error-code` trailer, a message naming the size and the limit), not with gRPC's own
 * RESOURCE_EXHAUSTED, which callers read as MODEL_OVERLOADED and retry. A message of exactly the
 * limit is served; in a stream the oversize message fails in its place; beyond the receive
 * ceiling gRPC still refuses by itself (the hard bound on what is buffered).
 *
 * Messages go out as raw bytes (a client with identity serializers): an oversize message is
 * never parsed, so any bytes do; the messages that must be served are serialized with the
 * method's own serializer.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { createEngine, type RouterEngine } from '../../src/router/engine.js';
import { receiveCeiling, startGrpcServer, type RouterGrpcServer } from '../../src/router/grpc-server.js';
import { ROUTER_SERVICES, serviceDefinition, type RouterServiceName } from '../../src/tei/proto.js';
import { testModel } from '../helpers/models.js';
import { testRouterOptions } from '../helpers/router-options.js';

const { status } = grpc;
const CODE_KEY = 'teiplex-error-code';
const INDEX_KEY = 'teiplex-error-index';
const LIMIT = 1024;

interface Outcome {
  /** Answers received (raw). */
  answers: Buffer[];
  error?: grpc.ServiceError;
}

const id = (b: Buffer): Buffer => b;

/** One call of `service`/`method` sending `messages` as they are; its answers and final error. */
function rawCall(client: grpc.Client, service: RouterServiceName, method: string, messages: Buffer[]): Promise<Outcome> {
  const def = serviceDefinition(service)[method];
  assert.ok(def, `${service}/${method}`);
  return new Promise<Outcome>((resolve) => {
    const answers: Buffer[] = [];
    const done = (err: grpc.ServiceError | null, res?: Buffer): void => {
      if (res !== undefined) answers.push(res);
      resolve(err ? { answers, error: err } : { answers });
    };
    if (!def.requestStream) {
      assert.equal(messages.length, 1, 'a unary call sends one message');
      client.makeUnaryRequest(def.path, id, id, messages[0], done);
      return;
    }
    if (!def.responseStream) {
      const call = client.makeClientStreamRequest(def.path, id, id, done);
      for (const m of messages) call.write(m);
      call.end();
      return;
    }
    const call = client.makeBidiStreamRequest(def.path, id, id);
    let error: grpc.ServiceError | undefined;
    call.on('data', (d: Buffer) => answers.push(d));
    call.on('error', (e: grpc.ServiceError) => (error = e));
    call.on('status', () => setImmediate(() => resolve(error ? { answers, error } : { answers })));
    for (const m of messages) call.write(m);
    call.end();
  });
}

/** The bytes of a request message, by the method's own serializer. */
function encode(service: RouterServiceName, method: string, req: Record<string, unknown>): Buffer {
  return serviceDefinition(service)[method].requestSerialize(req);
}

/** A Tokenize request whose serialized form is exactly `bytes` long. */
function tokenizeOf(bytes: number): Buffer {
  const text = (n: number): string => 'a '.repeat(Math.ceil(n / 2)).slice(0, n);
  const req = (n: number) => encode('tei.v1.Tokenize', 'Tokenize', { inputs: text(n), add_special_tokens: true });
  // The framing around the text (tag, a 2-byte length for 128..16383 characters, the other field).
  const framing = req(200).length - 200;
  const out = req(bytes - framing);
  assert.equal(out.length, bytes);
  return out;
}

/** The documented refusal: RESOURCE_EXHAUSTED, PAYLOAD_TOO_LARGE in the trailer, the size and the limit named. */
function assertTooLarge(error: grpc.ServiceError | undefined, bytes: number, where: string): void {
  assert.ok(error, `${where}: refused`);
  assert.equal(error.code, status.RESOURCE_EXHAUSTED, `${where}: ${error.details}`);
  assert.deepEqual(error.metadata.get(CODE_KEY), ['PAYLOAD_TOO_LARGE'], `${where}: ${error.details}`);
  assert.match(error.details, new RegExp(`\\b${bytes} bytes\\b.*--payload-limit \\(${LIMIT} bytes\\)`), where);
}

describe('router gRPC: a message over --payload-limit', () => {
  // A reranker serves every tei.v1 service the check runs in (RerankStream checks the model type first).
  let engine: RouterEngine;
  let server: RouterGrpcServer;
  let client: grpc.Client;

  before(async () => {
    const opts = testRouterOptions({ payloadLimit: LIMIT, maxConcurrentRequests: 64 });
    engine = await createEngine(opts, await testModel({ kind: 'reranker' }), () => undefined, { batchOverheadTokens: 16 });
    server = await startGrpcServer({ hostname: '127.0.0.1', port: 0, maxClientBatchSize: opts.maxClientBatchSize, payloadLimit: LIMIT });
    server.setEngine(engine);
    client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client?.close();
    await server?.drain();
    await engine?.close();
  });

  test('every tei.v1, teiplex.v1.Batch and teiplex.v1.TokenClassification RPC refuses it with PAYLOAD_TOO_LARGE, unary and streams alike', async () => {
    const oversize = Buffer.alloc(LIMIT + 1, 0x0a);
    let rpcs = 0;
    for (const service of ROUTER_SERVICES) {
      for (const [method, def] of Object.entries(serviceDefinition(service))) {
        const where = `${service}/${method}`;
        const { answers, error } = await rawCall(client, service, method, [oversize]);
        assert.equal(answers.length, 0, where);
        assertTooLarge(error, LIMIT + 1, where);
        // A stream names the failing message's position, as for any failing stream message.
        if (def.requestStream) assert.deepEqual(error!.metadata.get(INDEX_KEY), ['0'], where);
        rpcs++;
      }
    }
    // tei.v1 Info 1, Embed 6, Predict 4, Rerank 2, Tokenize 4; teiplex.v1.Batch 3; teiplex.v1.TokenClassification 1.
    assert.equal(rpcs, 21);
  });

  test('a message of exactly --payload-limit bytes is served; one byte more is refused', async () => {
    const atLimit = await rawCall(client, 'tei.v1.Tokenize', 'Tokenize', [tokenizeOf(LIMIT)]);
    assert.equal(atLimit.error, undefined, atLimit.error?.details);
    assert.equal(atLimit.answers.length, 1);
    const over = await rawCall(client, 'tei.v1.Tokenize', 'Tokenize', [tokenizeOf(LIMIT + 1)]);
    assertTooLarge(over.error, LIMIT + 1, 'Tokenize');
  });

  test('in a bidirectional stream the oversize message fails in its place, after the answers before it', async () => {
    const small = (text: string) => encode('tei.v1.Tokenize', 'TokenizeStream', { inputs: text, add_special_tokens: false });
    const { answers, error } = await rawCall(client, 'tei.v1.Tokenize', 'TokenizeStream', [small('one'), small('two'), tokenizeOf(LIMIT + 7), small('four')]);
    assert.equal(answers.length, 2);
    assertTooLarge(error, LIMIT + 7, 'TokenizeStream');
    assert.deepEqual(error!.metadata.get(INDEX_KEY), ['2']);
  });

  test('in a client stream (RerankStream) the call fails with the oversize message position', async () => {
    const pair = encode('tei.v1.Rerank', 'RerankStream', { query: 'capital of france', text: 'paris' });
    const { answers, error } = await rawCall(client, 'tei.v1.Rerank', 'RerankStream', [pair, Buffer.alloc(LIMIT + 3, 0x0a)]);
    assert.equal(answers.length, 0);
    assertTooLarge(error, LIMIT + 3, 'RerankStream');
    assert.deepEqual(error!.metadata.get(INDEX_KEY), ['1']);
    // The same stream without the oversize message is answered.
    const ok = await rawCall(client, 'tei.v1.Rerank', 'RerankStream', [pair]);
    assert.equal(ok.error, undefined, ok.error?.details);
    assert.equal(ok.answers.length, 1);
  });

  test('beyond the receive ceiling gRPC refuses by itself, before buffering the message (the hard bound)', async () => {
    assert.equal(receiveCeiling(LIMIT), LIMIT + 4 * 1024 * 1024);
    assert.equal(receiveCeiling(2_000_000), 2_000_000 + 4 * 1024 * 1024);
    assert.equal(receiveCeiling(10_000_000), 20_000_000);
    assert.equal(receiveCeiling(2 ** 31), 2 ** 31 - 1);
    const atCeiling = await rawCall(client, 'tei.v1.Embed', 'Embed', [Buffer.alloc(receiveCeiling(LIMIT), 0x0a)]);
    assertTooLarge(atCeiling.error, receiveCeiling(LIMIT), 'Embed at the ceiling');
    const beyond = await rawCall(client, 'tei.v1.Embed', 'Embed', [Buffer.alloc(receiveCeiling(LIMIT) + 1, 0x0a)]);
    assert.equal(beyond.error?.code, status.RESOURCE_EXHAUSTED);
    assert.match(beyond.error!.details, /Received message larger than max/);
    assert.deepEqual(beyond.error!.metadata.get(CODE_KEY), []);
    // The server keeps serving after every refusal.
    const after = await rawCall(client, 'tei.v1.Tokenize', 'Tokenize', [encode('tei.v1.Tokenize', 'Tokenize', { inputs: 'still here', add_special_tokens: false })]);
    assert.equal(after.error, undefined, after.error?.details);
  });
});
