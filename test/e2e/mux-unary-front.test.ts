/**
 * The multiplexer's unary front (src/mux/unary-front.ts) on the wire, end to end (real manager,
 * real router child): what a gRPC server must do with a unary call that the front now does
 * itself instead of grpc-js. Compressed requests (gzip, deflate) are inflated, an unknown
 * encoding is UNIMPLEMENTED, a message that inflates past the limit is RESOURCE_EXHAUSTED; a
 * non-gRPC content-type gets HTTP 415; a malformed grpc-timeout is INTERNAL; no message or two
 * messages are UNIMPLEMENTED; answers carry the child's headers and `teiplex-instance`; a client
 * that cancels a call on a hung child (SIGSTOP) leaves nothing in flight; a client deadline
 * during the call is DEADLINE_EXCEEDED (not the multiplexer's REQUEST_TIMEOUT); the other
 * RPCs still reach grpc-js (ListInstances, a stream).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync, deflateSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { INSTANCE_HEADER } from '../../src/mux/forward.js';
import { startManager, loopbackConfig, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { bidi, mux, unary, type AnyClient } from '../helpers/mux-client.js';
import { until } from '../helpers/wait.js';

const { status } = grpc;
const EMBED = '/tei_multiplexer.v1.TeiMultiplexer/Embed';
const MAX_MB = 1;

let dir: string;
let m: ManagerProcess;
let client: AnyClient;
let port: number;

/** Protobuf: a length-delimited field. */
function field(n: number, bytes: Buffer): Buffer {
  const len: number[] = [];
  let v = bytes.length;
  while (v >= 0x80) {
    len.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  len.push(v);
  return Buffer.concat([Buffer.from([(n << 3) | 2, ...len]), bytes]);
}

/** A TeiMultiplexer EmbedRequest for instance `a` with `inputs`. */
function embedRequest(inputs: string): Buffer {
  return Buffer.concat([field(1, field(1, Buffer.from('a'))), field(2, field(1, Buffer.from(inputs)))]);
}

function grpcFrame(msg: Buffer, compressed = false): Buffer {
  const head = Buffer.alloc(5);
  head[0] = compressed ? 1 : 0;
  head.writeUInt32BE(msg.length, 1);
  return Buffer.concat([head, msg]);
}

/** The embedding of an EmbedResponse (field 1, packed floats), without its timing metadata. */
function embedding(response: Buffer): Buffer {
  assert.equal(response[0], 0x0a);
  let len = 0;
  let shift = 0;
  let pos = 1;
  for (;;) {
    const b = response[pos++];
    len += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (b < 0x80) break;
  }
  return response.subarray(pos, pos + len);
}

interface RawAnswer {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
}

/** One raw HTTP/2 request to the multiplexer's port. */
function raw(headers: http2.OutgoingHttpHeaders, body: Buffer[]): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({ ':method': 'POST', ':path': EMBED, 'content-type': 'application/grpc', te: 'trailers', ...headers });
    let answer: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on('response', (h) => (answer = h));
    req.on('trailers', (t) => (trailers = t));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', reject);
    req.on('close', () => {
      session.close();
      resolve({ headers: answer, trailers, body: Buffer.concat(chunks) });
    });
    for (const b of body.slice(0, -1)) req.write(b);
    req.end(body.at(-1));
  });
}

/** The grpc-status of a raw answer (trailers, or the headers of a trailers-only answer). */
function grpcStatus(a: RawAnswer): [number, string] {
  const s = a.trailers['grpc-status'] ?? a.headers['grpc-status'];
  const msg = a.trailers['grpc-message'] ?? a.headers['grpc-message'];
  return [Number(s), decodeURIComponent(String(msg ?? ''))];
}

/**
 * The teiplex-error-code of a raw answer. The front's own transport statuses carry none (it
 * answers them as grpc-js would, src/mux/unary-front.ts), except a size refusal: PAYLOAD_TOO_LARGE.
 */
function errorCodeOf(a: RawAnswer): string | undefined {
  const c = a.trailers['teiplex-error-code'] ?? a.headers['teiplex-error-code'];
  return c === undefined ? undefined : String(c);
}

async function inflight(): Promise<number> {
  const list = await unary<{ instances: Array<{ name: string; inflight_requests: number }> }>(client, 'ListInstances', {});
  return list.res.instances.find((i) => i.name === 'a')!.inflight_requests;
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-unary-front-'));
  const model = await testModel({ kind: 'embedding' });
  const file = path.join(dir, 'mux.toml');
  await writeFile(
    file,
    `${loopbackConfig(dir)}health_check_interval_secs = 60
grpc_request_timeout_secs = 30
grpc_max_message_size_mb = ${MAX_MB}
[[instances]]
name = "a"
model_id = ${JSON.stringify(model)}
`,
  );
  m = await startManager(file, {}, 120_000); // a loaded machine: slow to boot
  await m.waitFor('a', (i) => i.status === 'running', 120_000);
  port = Number(m.ready.grpc_port);
  client = mux(port);
});

after(async () => {
  client?.close();
  if (m) assert.equal(await m.stop(), 0);
  await rm(dir, { recursive: true, force: true });
});

describe('the unary front', () => {
  test('an answer: the child embedding, the child headers, teiplex-instance in headers and trailers', async () => {
    const a = await raw({}, [grpcFrame(embedRequest('hello world'))]);
    assert.equal(a.headers[':status'], 200);
    assert.equal(a.headers['content-type'], 'application/grpc+proto');
    assert.equal(a.headers[INSTANCE_HEADER], 'a');
    assert.equal(a.trailers[INSTANCE_HEADER], 'a');
    assert.deepEqual(grpcStatus(a), [status.OK, 'OK']);
    const viaClient = await unary(client, 'Embed', { target: { instance_name: 'a' }, request: { inputs: 'hello world' } });
    // The answer is the child's bytes, framed once.
    assert.equal(a.body.readUInt32BE(1), a.body.length - 5);
    assert.equal(embedding(a.body.subarray(5)).length, viaClient.res.embeddings.length * 4);
  });

  test('gzip and deflate requests are inflated (raw, and grpc-js compressing its calls)', async () => {
    const plain = await raw({}, [grpcFrame(embedRequest('compressed text'))]);
    for (const [encoding, deflate] of [
      ['gzip', gzipSync],
      ['deflate', deflateSync],
    ] as const) {
      const a = await raw({ 'grpc-encoding': encoding }, [grpcFrame(deflate(embedRequest('compressed text')), true)]);
      assert.deepEqual(grpcStatus(a), [status.OK, 'OK'], encoding);
      assert.deepEqual(embedding(a.body.subarray(5)), embedding(plain.body.subarray(5)), encoding);
    }
    const gz = new (grpc.makeGenericClientConstructor({}, 'x'))(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.default_compression_algorithm': 2 });
    const id = (b: Buffer): Buffer => b;
    const answer = await new Promise<Buffer>((resolve, reject) => gz.makeUnaryRequest(EMBED, id, id, embedRequest('compressed text'), (err, res) => (err ? reject(err) : resolve(res!))));
    gz.close();
    assert.deepEqual(embedding(answer), embedding(plain.body.subarray(5)));
  });

  test('an unknown encoding: UNIMPLEMENTED; a message inflating past the limit: RESOURCE_EXHAUSTED', async () => {
    const br = await raw({ 'grpc-encoding': 'br' }, [grpcFrame(embedRequest('x'), true)]);
    assert.equal(grpcStatus(br)[0], status.UNIMPLEMENTED);
    assert.equal(errorCodeOf(br), undefined);
    assert.match(grpcStatus(br)[1], /unsupported encoding "br"/);
    const bomb = gzipSync(embedRequest('a'.repeat(2 * MAX_MB * 1024 * 1024)));
    assert.ok(bomb.length < 64 * 1024);
    const big = await raw({ 'grpc-encoding': 'gzip' }, [grpcFrame(bomb, true)]);
    assert.equal(grpcStatus(big)[0], status.RESOURCE_EXHAUSTED);
    assert.equal(errorCodeOf(big), 'PAYLOAD_TOO_LARGE', 'a size refusal names its code: not read as an overload');
    assert.match(grpcStatus(big)[1], /decompresses to a size larger than/);
  });

  test('a message over the limit, none, or two: RESOURCE_EXHAUSTED, UNIMPLEMENTED, UNIMPLEMENTED', async () => {
    const head = Buffer.alloc(5);
    head.writeUInt32BE(MAX_MB * 1024 * 1024 + 1, 1);
    const over = await raw({}, [head, Buffer.alloc(1000)]);
    assert.equal(grpcStatus(over)[0], status.RESOURCE_EXHAUSTED);
    assert.equal(errorCodeOf(over), 'PAYLOAD_TOO_LARGE');
    assert.match(grpcStatus(over)[1], /larger than max/);
    // The 5-byte prefix split across DATA frames: read once it is whole.
    const splitOver = await raw({}, [head.subarray(0, 2), head.subarray(2), Buffer.alloc(1000)]);
    assert.equal(grpcStatus(splitOver)[0], status.RESOURCE_EXHAUSTED);
    assert.equal(errorCodeOf(splitOver), 'PAYLOAD_TOO_LARGE');
    assert.match(grpcStatus(splitOver)[1], /larger than max/);
    const ok = grpcFrame(embedRequest('split prefix'));
    const split = await raw({}, [ok.subarray(0, 3), ok.subarray(3, 9), ok.subarray(9)]);
    assert.deepEqual(grpcStatus(split), [status.OK, 'OK']);
    const none = await raw({}, [Buffer.alloc(0)]);
    assert.equal(grpcStatus(none)[0], status.UNIMPLEMENTED);
    assert.equal(errorCodeOf(none), undefined);
    const cut = await raw({}, [grpcFrame(embedRequest('x')).subarray(0, 8)]);
    assert.equal(grpcStatus(cut)[0], status.UNIMPLEMENTED);
    assert.equal(errorCodeOf(cut), undefined);
    const two = await raw({}, [grpcFrame(embedRequest('x')), grpcFrame(embedRequest('y'))]);
    assert.equal(grpcStatus(two)[0], status.UNIMPLEMENTED);
    assert.equal(errorCodeOf(two), undefined);
    assert.match(grpcStatus(two)[1], /second request message/);
  });

  test('a non-gRPC content-type: HTTP 415; a malformed grpc-timeout: INTERNAL', async () => {
    const json = await raw({ 'content-type': 'application/json' }, [Buffer.from('{}')]);
    assert.equal(json.headers[':status'], 415);
    const bad = await raw({ 'grpc-timeout': 'soon' }, [grpcFrame(embedRequest('x'))]);
    assert.equal(grpcStatus(bad)[0], status.INTERNAL);
    assert.equal(errorCodeOf(bad), undefined);
    assert.match(grpcStatus(bad)[1], /Invalid grpc-timeout/);
  });

  test('a request that never ends within its deadline: DEADLINE_EXCEEDED', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const req = session.request({ ':method': 'POST', ':path': EMBED, 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '300m' });
      let answer: http2.IncomingHttpHeaders = {};
      req.on('response', (h) => (answer = h));
      req.on('data', () => undefined);
      req.write(grpcFrame(embedRequest('never ends')).subarray(0, 10));
      // The client never ends its request: only the server can close the stream, with the deadline's status.
      await new Promise((resolve) => req.on('close', resolve));
      assert.equal(Number(answer['grpc-status']), status.DEADLINE_EXCEEDED);
      // The client's own deadline (grpc-timeout), answered as grpc-js would: no code.
      assert.equal(answer['teiplex-error-code'], undefined);
      assert.equal(decodeURIComponent(String(answer['grpc-message'])), 'Deadline exceeded');
    } finally {
      session.close();
    }
  });

  test('a hung child: a client deadline is DEADLINE_EXCEEDED, a cancel cancels; nothing stays in flight', async () => {
    const pid = (await m.api('GET', '/instances/a')).body.pid as number;
    process.kill(pid, 'SIGSTOP');
    try {
      const req = { target: { instance_name: 'a' }, request: { inputs: 'hung' } };
      await assert.rejects(unary(client, 'Embed', req, { deadline: Date.now() + 300 }), (e: grpc.ServiceError) => {
        assert.equal(e.code, status.DEADLINE_EXCEEDED);
        assert.equal(e.metadata.get('teiplex-error-code').length, 0, 'the client deadline, not grpc_request_timeout_secs');
        return true;
      });
      const call = client.Embed(req, () => undefined);
      await until('the call in flight', async () => (await inflight()) === 1, { timeoutMs: 10_000 });
      call.cancel();
      await until('nothing in flight after the cancel', async () => (await inflight()) === 0, { timeoutMs: 10_000 });
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    const again = await unary(client, 'Embed', { target: { instance_name: 'a' }, request: { inputs: 'awake' } });
    assert.ok(again.res.embeddings.length > 0);
  });

  test('grpc-js still serves the rest on the same port: ListInstances, a forwarded stream', async () => {
    assert.equal(await inflight(), 0);
    const { responses: answers, error } = await bidi(client, 'EmbedStream', [
      { target: { instance_name: 'a' }, request: { inputs: 'one' } },
      { request: { inputs: 'two' } },
    ]);
    assert.equal(error, undefined);
    assert.equal(answers.length, 2);
  });
});
