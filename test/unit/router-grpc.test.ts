/**
 * The router's gRPC front end over loopback: a real Engine on generated models, the real server,
 * and @grpc/grpc-js clients built from the same protos. Every tei.v1 RPC (streams included),
 * teiplex.v1.Batch, health, reflection, API key, error statuses and draining.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { createEngine, type RouterEngine } from '../../src/router/engine.js';
import { startGrpcServer, type GrpcServerOptions, type RouterGrpcServer } from '../../src/router/grpc-server.js';
import { ROUTER_SERVICES, serviceClient, type RouterServiceName } from '../../src/tei/proto.js';
import type { RouterOptions } from '../../src/router/options.js';
import { testModel, type TestModelSpec } from '../helpers/models.js';
import { testRouterOptions } from '../helpers/router-options.js';
import { bidi, clientStream, grpcError, reflect, unary, type AnyClient } from '../helpers/mux-client.js';
import { norm } from '../helpers/vectors.js';

const { status } = grpc;
const CODE_KEY = 'teiplex-error-code';

/** A refusal as docs/errors.md documents it: the gRPC status, the machine code in the `teiplex-error-code` trailer, and the message when given. */
function refused(code: grpc.status, machine: string, re?: RegExp) {
  const statusOk = grpcError(code, re);
  return (err: grpc.ServiceError): boolean => {
    statusOk(err);
    assert.deepEqual(err.metadata?.get(CODE_KEY), [machine], `${CODE_KEY} of: ${err.details}`);
    return true;
  };
}

// ---- setup helpers -------------------------------------------------------------------------------

const options = (over: Partial<RouterOptions> = {}): RouterOptions => testRouterOptions({ maxConcurrentRequests: 64, ...over });

function serverOptions(opts: RouterOptions, over: Partial<GrpcServerOptions> = {}): GrpcServerOptions {
  return { hostname: '127.0.0.1', port: 0, maxClientBatchSize: opts.maxClientBatchSize, payloadLimit: opts.payloadLimit, ...over };
}

async function engineFor(spec: TestModelSpec, opts: RouterOptions): Promise<RouterEngine> {
  return createEngine(opts, await testModel(spec), () => undefined, { batchOverheadTokens: 16 });
}

type Msg = Record<string, any>;

/** One client per service of a server. */
class Clients {
  private readonly all = new Map<string, AnyClient>();
  constructor(readonly port: number) {}
  get(name: RouterServiceName): AnyClient {
    let c = this.all.get(name);
    if (!c) {
      const Ctor = serviceClient(name);
      c = new Ctor(`127.0.0.1:${this.port}`, grpc.credentials.createInsecure()) as AnyClient;
      this.all.set(name, c);
    }
    return c;
  }
  health(): AnyClient {
    const Ctor = grpc.makeClientConstructor(healthService as grpc.ServiceDefinition, 'grpc.health.v1.Health');
    const c = new Ctor(`127.0.0.1:${this.port}`, grpc.credentials.createInsecure()) as AnyClient;
    this.all.set('health', c);
    return c;
  }
  close(): void {
    for (const c of this.all.values()) c.close();
  }
}

/** A model loaded and served over gRPC for the tests of one describe block (its before/after hooks). */
function served(spec: TestModelSpec, opts: RouterOptions): { engine: RouterEngine; clients: Clients } {
  const ctx = {} as { engine: RouterEngine; clients: Clients; server: RouterGrpcServer };
  before(async () => {
    ctx.engine = await engineFor(spec, opts);
    ctx.server = await startGrpcServer(serverOptions(opts));
    ctx.server.setEngine(ctx.engine);
    ctx.clients = new Clients(ctx.server.port);
  });
  after(async () => {
    ctx.clients?.close();
    await ctx.server?.drain();
    await ctx.engine?.close();
  });
  return ctx;
}

const rpc = async (client: AnyClient, method: string, req: Msg, md?: grpc.Metadata): Promise<Msg> => (await unary<Msg>(client, method, req, {}, md)).res;

async function healthOf(clients: Clients, service: string): Promise<string> {
  return (await rpc(clients.health(), 'Check', { service })).status as string;
}

const WORDS = 'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau'.split(' ');
function text(n: number, seed = 0): string {
  let s = (seed * 2654435761 + 1) >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return WORDS[(s >>> 8) % WORDS.length];
  }).join(' ');
}

function close(a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-5): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol, `[${i}] ${a[i]} vs ${b[i]}`);
}

const f32 = (b: Buffer): Float32Array => {
  const out = new Float32Array(b.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = b.readFloatLE(i * 4);
  return out;
};
const u32 = (b: Buffer): number[] => Array.from({ length: b.length / 4 }, (_, i) => b.readUInt32LE(i * 4));

const LEFT = 'TRUNCATION_DIRECTION_LEFT';

// ---- embedding model: lifecycle, every Embed/Tokenize RPC, batch, errors, drain -----------------------

describe('embedding model over gRPC', () => {
  const opts = options({ maxBatchRequests: 16 });
  let server: RouterGrpcServer;
  let engine: RouterEngine;
  let clients: Clients;
  const embed = () => clients.get('tei.v1.Embed');

  before(async () => {
    server = await startGrpcServer(serverOptions(opts, { payloadLimit: 100_000 }));
    clients = new Clients(server.port);
  });
  after(async () => {
    clients?.close();
    server?.forceClose();
    await engine?.close();
  });

  test('before the model is loaded: NOT_SERVING health and UNAVAILABLE data RPCs; reflection lists the services', async () => {
    assert.ok(server.port > 0);
    for (const name of ['', ...ROUTER_SERVICES]) assert.equal(await healthOf(clients, name), 'NOT_SERVING', name);
    await assert.rejects(rpc(embed(), 'Embed', { inputs: 'hello' }), refused(status.UNAVAILABLE, 'UNHEALTHY', /model is loading/));
    await assert.rejects(rpc(clients.get('tei.v1.Info'), 'Info', {}), refused(status.UNAVAILABLE, 'UNHEALTHY'));
    await assert.rejects(rpc(clients.get('teiplex.v1.Batch'), 'EmbedBatch', { inputs: ['a'] }), refused(status.UNAVAILABLE, 'UNHEALTHY'));
    const { error } = await bidi(embed(), 'EmbedStream', [{ inputs: 'a' }]);
    assert.equal(error?.code, status.UNAVAILABLE);
    assert.deepEqual(error?.metadata.get(CODE_KEY), ['UNHEALTHY']);

    for (const version of ['v1', 'v1alpha'] as const) {
      const { services, files } = await reflect(server.port, version, 'tei.v1.Embed');
      for (const name of [...ROUTER_SERVICES, 'grpc.health.v1.Health']) assert.ok(services.includes(name), `${version} lists ${name}: ${services.join(', ')}`);
      assert.ok(files.length >= 1);
    }

    process.env.TEIPLEX_GIT_SHA = 'abc123';
    process.env.TEIPLEX_DOCKER_LABEL = 'sha-abc123';
    try {
      engine = await engineFor({ kind: 'embedding', prompts: { query: 'query: ', passage: 'passage: ' } }, opts);
    } finally {
      delete process.env.TEIPLEX_GIT_SHA;
      delete process.env.TEIPLEX_DOCKER_LABEL;
    }
    server.setEngine(engine);
    for (const name of ['', 'tei.v1.Info', 'tei.v1.Embed', 'tei.v1.Tokenize', 'teiplex.v1.Batch']) assert.equal(await healthOf(clients, name), 'SERVING', name);
    for (const name of ['tei.v1.Predict', 'tei.v1.Rerank', 'teiplex.v1.TokenClassification']) assert.equal(await healthOf(clients, name), 'NOT_SERVING', name);
  });

  test('Info reports fields 1-13', async () => {
    const info = await rpc(clients.get('tei.v1.Info'), 'Info', {});
    assert.equal(info.version, engine.info.version);
    assert.equal(info.sha, 'abc123');
    assert.equal(info.docker_label, 'sha-abc123');
    assert.equal(info.model_id, 'test-model');
    assert.equal(info.model_sha, undefined);
    assert.equal(info.model_dtype, engine.info.modelDtype);
    assert.equal(info.model_type, 'MODEL_TYPE_EMBEDDING');
    assert.equal(info.max_concurrent_requests, 64);
    assert.equal(info.max_input_length, engine.model.maxInputLength);
    assert.equal(info.max_batch_tokens, 16384);
    assert.equal(info.max_batch_requests, 16);
    assert.equal(info.max_client_batch_size, 32);
    assert.equal(info.tokenization_workers, engine.info.tokenizationWorkers);
    assert.ok(info.tokenization_workers > 0);
  });

  test('Embed: same vector as the engine; normalize default, dimensions, prompt_name, truncation; Metadata and headers', async () => {
    const input = text(12, 1);
    const { res: response, headers } = await unary<Msg>(embed(), 'Embed', { inputs: input });
    const expected = (await engine.embed([input], { truncate: false, truncationDirection: 'right', normalize: true })).results[0];
    close(response.embeddings, expected);
    assert.ok(Math.abs(norm(response.embeddings) - 1) < 1e-5);
    const m = response.metadata;
    assert.equal(m.compute_chars, input.length);
    assert.ok(m.compute_tokens > 12);
    for (const k of ['total_time_ns', 'tokenization_time_ns', 'queue_time_ns', 'inference_time_ns']) assert.match(m[k], /^\d+$/, k);
    assert.ok(BigInt(m.total_time_ns) > 0n);
    assert.equal(headers.get('x-compute-tokens')[0], String(m.compute_tokens));
    assert.equal(headers.get('x-compute-characters')[0], String(input.length));
    for (const h of ['x-compute-time', 'x-total-time', 'x-tokenization-time', 'x-queue-time', 'x-inference-time']) assert.match(String(headers.get(h)[0]), /^\d+$/, h);

    const raw = await rpc(embed(), 'Embed', { inputs: input, normalize: false });
    close(raw.embeddings, (await engine.embed([input], { truncate: false, truncationDirection: 'right', normalize: false })).results[0]);
    assert.ok(Math.abs(norm(raw.embeddings) - 1) > 1e-3);

    const cut = await rpc(embed(), 'Embed', { inputs: input, dimensions: 8 });
    assert.equal(cut.embeddings.length, 8);
    assert.ok(Math.abs(norm(cut.embeddings) - 1) < 1e-5);

    const prompted = await rpc(embed(), 'Embed', { inputs: input, prompt_name: 'query' });
    close(prompted.embeddings, (await engine.embed(['query: ' + input], { truncate: false, truncationDirection: 'right', normalize: true })).results[0]);
    assert.ok(prompted.metadata.compute_tokens > m.compute_tokens);

    const long = text(400, 2);
    const right = await rpc(embed(), 'Embed', { inputs: long, truncate: true });
    const left = await rpc(embed(), 'Embed', { inputs: long, truncate: true, truncation_direction: LEFT });
    close(left.embeddings, (await engine.embed([long], { truncate: true, truncationDirection: 'left', normalize: true })).results[0]);
    close(right.embeddings, (await engine.embed([long], { truncate: true, truncationDirection: 'right', normalize: true })).results[0]);
    assert.equal(right.metadata.compute_tokens, engine.model.maxInputLength);
    assert.ok(right.embeddings.some((x: number, i: number) => Math.abs(x - left.embeddings[i]) > 1e-4));
  });

  test('EmbedStream answers in request order under concurrency, each as unary Embed', async () => {
    // Mixed lengths: short messages behind long ones finish first inside the engine.
    const inputs = Array.from({ length: 40 }, (_, i) => text(i % 5 === 0 ? 90 : 1 + (i % 7), i));
    const { responses, error } = await bidi(embed(), 'EmbedStream', inputs.map((inputs) => ({ inputs })));
    assert.equal(error, undefined);
    assert.equal(responses.length, inputs.length);
    const expected = await engine.embed(inputs, { truncate: false, truncationDirection: 'right', normalize: true });
    responses.forEach((r, i) => {
      close(r.embeddings, expected.results[i]);
      assert.equal(r.metadata.compute_chars, inputs[i].length);
    });
  });

  test('a failing stream message ends the stream with its status after the answers before it', async () => {
    const { responses, error } = await bidi(embed(), 'EmbedStream', [{ inputs: 'one' }, { inputs: 'two' }, { inputs: '' }, { inputs: 'four' }]);
    assert.equal(responses.length, 2);
    assert.equal(error?.code, status.INVALID_ARGUMENT);
    assert.deepEqual(error?.metadata.get(CODE_KEY), ['VALIDATION']);
    assert.match(error!.details, /cannot be empty/);
  });

  test('EmbedAll and EmbedAllStream: one row per token', async () => {
    const input = text(6, 3);
    const one = await rpc(embed(), 'EmbedAll', { inputs: input });
    const expected = (await engine.embedAll([input], { truncate: false, truncationDirection: 'right' })).results[0];
    assert.equal(one.token_embeddings.length, one.metadata.compute_tokens);
    assert.equal(one.token_embeddings.length, expected.tokens);
    one.token_embeddings.forEach((row: Msg, t: number) => close(row.embeddings, expected.values.subarray(t * expected.dim, (t + 1) * expected.dim)));
    const inputs = [text(30, 4), 'short', text(3, 5)];
    const { responses, error } = await bidi(embed(), 'EmbedAllStream', inputs.map((inputs) => ({ inputs })));
    assert.equal(error, undefined);
    for (let i = 0; i < inputs.length; i++) {
      const single = await rpc(embed(), 'EmbedAll', { inputs: inputs[i] });
      assert.equal(responses[i].token_embeddings.length, single.token_embeddings.length);
      close(responses[i].token_embeddings[0].embeddings, single.token_embeddings[0].embeddings);
    }
  });

  test('Tokenize, TokenizeStream, Decode, DecodeStream', async () => {
    const tok = clients.get('tei.v1.Tokenize');
    const { tokens } = await rpc(tok, 'Tokenize', { inputs: 'hello world', add_special_tokens: true });
    assert.ok(tokens.length >= 4);
    assert.equal(tokens[0].special, true);
    assert.equal(tokens[0].start, undefined);
    const words = tokens.filter((t: Msg) => !t.special);
    assert.equal(words[0].text, 'hello');
    assert.equal(words[0].start, 0);
    assert.equal(words[0].stop, 5);
    const plain = await rpc(tok, 'Tokenize', { inputs: 'hello world', add_special_tokens: false });
    assert.equal(plain.tokens.length, tokens.length - 2);
    const prompted = await rpc(tok, 'Tokenize', { inputs: 'hello world', add_special_tokens: false, prompt_name: 'query' });
    assert.ok(prompted.tokens.length > plain.tokens.length);

    const ids = tokens.map((t: Msg) => t.id);
    assert.equal((await rpc(tok, 'Decode', { ids, skip_special_tokens: true })).text, 'hello world');
    assert.match((await rpc(tok, 'Decode', { ids, skip_special_tokens: false })).text, /\[CLS\]/);

    const texts = ['first text', text(50, 6), 'third'];
    const ts = await bidi(tok, 'TokenizeStream', texts.map((inputs) => ({ inputs, add_special_tokens: false })));
    assert.equal(ts.error, undefined);
    const ds = await bidi(tok, 'DecodeStream', ts.responses.map((r) => ({ ids: r.tokens.map((t: Msg) => t.id), skip_special_tokens: true })));
    assert.equal(ds.error, undefined);
    assert.deepEqual(
      ds.responses.map((r) => r.text),
      texts,
    );
  });

  test('bad input gets INVALID_ARGUMENT / FAILED_PRECONDITION, and the server keeps serving', async () => {
    await assert.rejects(rpc(embed(), 'Embed', { inputs: '' }), refused(status.INVALID_ARGUMENT, 'VALIDATION', /cannot be empty/));
    await assert.rejects(rpc(embed(), 'Embed', { inputs: text(400, 7), truncate: false }), refused(status.INVALID_ARGUMENT, 'VALIDATION'));
    await assert.rejects(rpc(embed(), 'Embed', { inputs: 'x', prompt_name: 'nope' }), refused(status.INVALID_ARGUMENT, 'VALIDATION', /nope/));
    for (const name of ['constructor', 'toString', '__proto__']) {
      const unknown = refused(status.INVALID_ARGUMENT, 'VALIDATION', new RegExp(`prompt_name \`${name}\` is not a prompt of this model`));
      await assert.rejects(rpc(embed(), 'Embed', { inputs: 'x', prompt_name: name }), unknown);
      await assert.rejects(rpc(clients.get('tei.v1.Tokenize'), 'Tokenize', { inputs: 'x', add_special_tokens: true, prompt_name: name }), unknown);
    }
    assert.equal((await rpc(embed(), 'Embed', { inputs: 'x', prompt_name: 'query' })).embeddings.length, engine.model.hiddenSize);
    // Token ids past the vocabulary: INVALID_ARGUMENT naming the id and the vocabulary size.
    const tok = clients.get('tei.v1.Tokenize');
    const outside = refused(status.INVALID_ARGUMENT, 'VALIDATION', /token id 99999 at position 1 .*\(vocabulary size 30522\)/);
    await assert.rejects(rpc(tok, 'Decode', { ids: [101, 99999], skip_special_tokens: true }), outside);
    const ds = await bidi(tok, 'DecodeStream', [{ ids: [101, 102], skip_special_tokens: true }, { ids: [101, 99999], skip_special_tokens: true }]);
    assert.equal(ds.error?.code, status.INVALID_ARGUMENT);
    assert.deepEqual(ds.error?.metadata.get(CODE_KEY), ['VALIDATION']);
    assert.match(ds.error?.details ?? '', /token id 99999/);
    assert.equal((await rpc(tok, 'Decode', { ids: [101, 7592, 102], skip_special_tokens: true })).text, 'hello');
    await assert.rejects(rpc(embed(), 'Embed', { inputs: 'x', dimensions: 100000 }), refused(status.INVALID_ARGUMENT, 'VALIDATION', /dimensions/));
    await assert.rejects(rpc(embed(), 'EmbedSparse', { inputs: 'x' }), refused(status.FAILED_PRECONDITION, 'WRONG_MODEL_TYPE'));
    const sparse = await bidi(embed(), 'EmbedSparseStream', [{ inputs: 'x' }]);
    assert.equal(sparse.error?.code, status.FAILED_PRECONDITION);
    assert.deepEqual(sparse.error?.metadata.get(CODE_KEY), ['WRONG_MODEL_TYPE']);
    await assert.rejects(rpc(clients.get('tei.v1.Predict'), 'Predict', { inputs: 'x' }), refused(status.FAILED_PRECONDITION, 'WRONG_MODEL_TYPE'));
    await assert.rejects(rpc(clients.get('tei.v1.Rerank'), 'Rerank', { query: 'q', texts: ['a'] }), refused(status.FAILED_PRECONDITION, 'WRONG_MODEL_TYPE', /not a classifier/));
    await assert.rejects(clientStream(clients.get('tei.v1.Rerank'), 'RerankStream', [{ query: 'q', text: 'a' }]), refused(status.FAILED_PRECONDITION, 'WRONG_MODEL_TYPE'));
    // Over --payload-limit: PAYLOAD_TOO_LARGE with its trailer (test/unit/router-payload-limit.test.ts covers every RPC).
    await assert.rejects(rpc(embed(), 'Embed', { inputs: 'x'.repeat(150_000) }), refused(status.RESOURCE_EXHAUSTED, 'PAYLOAD_TOO_LARGE', /150004 bytes .*--payload-limit \(100000 bytes\)/));
    assert.equal((await rpc(embed(), 'Embed', { inputs: 'still serving' })).embeddings.length, engine.model.hiddenSize);
  });

  test('Batch: EmbedBatch and EmbedAllBatch equal per-input Embed/EmbedAll; limits', async () => {
    const batch = clients.get('teiplex.v1.Batch');
    const inputs = [text(20, 8), 'b', text(5, 9), text(60, 10)];
    const dense = await rpc(batch, 'EmbedBatch', { inputs, dimensions: 16, prompt_name: 'passage' });
    assert.equal(dense.dim, 16);
    const vecs = f32(dense.embeddings);
    assert.equal(vecs.length, inputs.length * 16);
    let chars = 0;
    for (let i = 0; i < inputs.length; i++) {
      const single = await rpc(embed(), 'Embed', { inputs: inputs[i], dimensions: 16, prompt_name: 'passage' });
      close(vecs.subarray(i * 16, (i + 1) * 16), single.embeddings);
      chars += single.metadata.compute_chars;
    }
    assert.equal(dense.metadata.compute_chars, chars);

    const all = await rpc(batch, 'EmbedAllBatch', { inputs });
    assert.equal(all.dim, engine.model.hiddenSize);
    assert.equal(all.offsets.length, inputs.length + 1);
    const rows = f32(all.embeddings);
    for (let i = 0; i < inputs.length; i++) {
      const single = await rpc(embed(), 'EmbedAll', { inputs: inputs[i] });
      assert.equal(all.offsets[i + 1] - all.offsets[i], single.token_embeddings.length);
      single.token_embeddings.forEach((row: Msg, t: number) => close(rows.subarray((all.offsets[i] + t) * all.dim, (all.offsets[i] + t + 1) * all.dim), row.embeddings));
    }

    await assert.rejects(rpc(batch, 'EmbedBatch', { inputs: Array.from({ length: 65 }, () => 'x') }), refused(status.INVALID_ARGUMENT, 'VALIDATION', /maxBatchInputs \(64/));
    await assert.rejects(rpc(batch, 'EmbedBatch', { inputs: [] }), refused(status.INVALID_ARGUMENT, 'EMPTY'));
    await assert.rejects(rpc(batch, 'EmbedBatch', { inputs: ['ok', ''] }), refused(status.INVALID_ARGUMENT, 'VALIDATION', /cannot be empty/));
    await assert.rejects(rpc(batch, 'EmbedSparseBatch', { inputs: ['x'] }), refused(status.FAILED_PRECONDITION, 'WRONG_MODEL_TYPE'));
  });

  test('API key: every data call needs it, health and reflection stay open', async () => {
    const keyed = await startGrpcServer(serverOptions(opts, { apiKey: 'secret' }));
    const c = new Clients(keyed.port);
    try {
      keyed.setEngine(engine);
      const good = new grpc.Metadata();
      good.set('authorization', 'Bearer secret');
      const bad = new grpc.Metadata();
      bad.set('authorization', 'Bearer wrong');
      await assert.rejects(rpc(c.get('tei.v1.Embed'), 'Embed', { inputs: 'x' }), refused(status.UNAUTHENTICATED, 'UNAUTHENTICATED'));
      await assert.rejects(rpc(c.get('tei.v1.Info'), 'Info', {}, bad), refused(status.UNAUTHENTICATED, 'UNAUTHENTICATED'));
      await assert.rejects(clientStream(c.get('tei.v1.Rerank'), 'RerankStream', [{ query: 'q', text: 'a' }]), refused(status.UNAUTHENTICATED, 'UNAUTHENTICATED'));
      const stream = await bidi(c.get('tei.v1.Embed'), 'EmbedStream', [{ inputs: 'x' }]);
      assert.equal(stream.error?.code, status.UNAUTHENTICATED);
      assert.deepEqual(stream.error?.metadata.get(CODE_KEY), ['UNAUTHENTICATED']);
      assert.equal((await rpc(c.get('tei.v1.Embed'), 'Embed', { inputs: 'x' }, good)).embeddings.length, engine.model.hiddenSize);
      assert.equal((await bidi(c.get('tei.v1.Embed'), 'EmbedStream', [{ inputs: 'x' }], {}, good)).responses.length, 1);
      assert.equal((await rpc(c.get('teiplex.v1.Batch'), 'EmbedBatch', { inputs: ['x'] }, good)).dim, engine.model.hiddenSize);
      assert.equal(await healthOf(c, ''), 'SERVING');
      assert.ok((await reflect(keyed.port, 'v1', 'tei.v1.Info')).services.includes('tei.v1.Info'));
    } finally {
      c.close();
      keyed.forceClose();
    }
  });

  test('drain: in-flight streams finish, then the server closes', async () => {
    const call = embed().EmbedStream(new grpc.Metadata()) as grpc.ClientDuplexStream<Msg, Msg>;
    const responses: Msg[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      call.on('end', resolve);
      call.on('error', reject);
    });
    const next = () => new Promise<void>((resolve) => call.once('data', (r: Msg) => (responses.push(r), resolve())));
    call.write({ inputs: 'first' });
    await next();
    let drained = false;
    const draining = server.drain().then(() => (drained = true));
    call.write({ inputs: 'second' });
    await next();
    assert.equal(drained, false, 'the stream still answers, and the drain waits for it');
    call.end();
    await ended;
    await draining;
    assert.equal(responses.length, 2);
    const fresh = new Clients(server.port);
    try {
      // Nobody listens any more: the client's own UNAVAILABLE (no server answered, so no trailer).
      await assert.rejects(rpc(fresh.get('tei.v1.Info'), 'Info', {}), grpcError(status.UNAVAILABLE));
    } finally {
      fresh.close();
    }
  });
});

// ---- SPLADE ------------------------------------------------------------------------------------------

describe('SPLADE model over gRPC', () => {
  const ctx = served({ kind: 'splade' }, options({ pooling: 'splade' }));

  test('EmbedSparse, EmbedSparseStream and EmbedSparseBatch agree with the engine', async () => {
    const embed = ctx.clients.get('tei.v1.Embed');
    assert.equal(await healthOf(ctx.clients, 'tei.v1.Embed'), 'SERVING');
    assert.equal(await healthOf(ctx.clients, 'tei.v1.Predict'), 'NOT_SERVING');
    const inputs = [text(40, 11), 'tiny', text(8, 12)];
    const expected = await ctx.engine.embedSparse(inputs, { truncate: false, truncationDirection: 'right' });
    const one = await rpc(embed, 'EmbedSparse', { inputs: inputs[0] });
    assert.deepEqual(
      one.sparse_embeddings.map((s: Msg) => s.index),
      Array.from(expected.results[0].indices),
    );
    close(
      one.sparse_embeddings.map((s: Msg) => s.value),
      expected.results[0].values,
    );
    assert.ok(one.sparse_embeddings.every((s: Msg) => s.value !== 0));

    const { responses, error } = await bidi(embed, 'EmbedSparseStream', inputs.map((inputs) => ({ inputs })));
    assert.equal(error, undefined);
    responses.forEach((r, i) => assert.deepEqual(r.sparse_embeddings.map((s: Msg) => s.index), Array.from(expected.results[i].indices)));

    const batch = await rpc(ctx.clients.get('teiplex.v1.Batch'), 'EmbedSparseBatch', { inputs });
    assert.equal(batch.offsets.length, inputs.length + 1);
    const indices = u32(batch.indices);
    const values = f32(batch.values);
    for (let i = 0; i < inputs.length; i++) {
      const [a, b] = [batch.offsets[i], batch.offsets[i + 1]];
      assert.deepEqual(indices.slice(a, b), Array.from(expected.results[i].indices));
      close(values.subarray(a, b), expected.results[i].values);
    }

    const dense = await rpc(embed, 'Embed', { inputs: 'tiny', normalize: false });
    assert.equal(dense.embeddings.length, ctx.engine.model.vocabSize);
    await assert.rejects(rpc(embed, 'EmbedAll', { inputs: 'x' }), refused(status.FAILED_PRECONDITION, 'WRONG_MODEL_TYPE'));
  });
});

// ---- reranker ----------------------------------------------------------------------------------------

describe('reranker model over gRPC', () => {
  const query = 'what is the capital of france';
  const texts = ['paris is the capital', text(30, 13), 'berlin', 'the capital of france is paris'];
  // Few permits: unary calls over the limit are refused, stream messages wait for admission.
  const ctx = served({ kind: 'reranker' }, options({ maxConcurrentRequests: 4, maxClientBatchSize: 8 }));

  test('Rerank: scores, order, return_text, raw_scores; Info and health', async () => {
    const rerank = ctx.clients.get('tei.v1.Rerank');
    assert.equal((await rpc(ctx.clients.get('tei.v1.Info'), 'Info', {})).model_type, 'MODEL_TYPE_RERANKER');
    for (const name of ['tei.v1.Predict', 'tei.v1.Rerank']) assert.equal(await healthOf(ctx.clients, name), 'SERVING');
    for (const name of ['tei.v1.Embed', 'teiplex.v1.TokenClassification']) assert.equal(await healthOf(ctx.clients, name), 'NOT_SERVING', name);

    const { res: response, headers } = await unary<Msg>(rerank, 'Rerank', { query, texts, return_text: true });
    const expected = await ctx.engine.rerank(query, texts, { truncate: false, truncationDirection: 'right', rawScores: false, returnText: true });
    assert.deepEqual(
      response.ranks.map((r: Msg) => r.index),
      expected.ranks.map((r) => r.index),
    );
    response.ranks.forEach((r: Msg, k: number) => {
      assert.ok(Math.abs(r.score - expected.ranks[k].score) < 1e-6);
      assert.equal(r.text, texts[r.index]);
    });
    assert.ok(response.metadata.compute_tokens > 0);
    assert.equal(headers.get('x-compute-tokens')[0], String(response.metadata.compute_tokens));
    const raw = await rpc(rerank, 'Rerank', { query, texts, raw_scores: true });
    assert.ok(raw.ranks.every((r: Msg) => r.text === undefined));
    const sigmoidOf = new Map<number, number>(raw.ranks.map((r: Msg) => [r.index, 1 / (1 + Math.exp(-r.score))]));
    for (const r of response.ranks) assert.ok(Math.abs(sigmoidOf.get(r.index)! - r.score) < 1e-5, `text ${r.index}`);
  });

  test('RerankStream (client stream) equals Rerank; waits for admission beyond max_concurrent_requests', async () => {
    const rerank = ctx.clients.get('tei.v1.Rerank');
    const unaryRes = await rpc(rerank, 'Rerank', { query, texts, return_text: true });
    const streamed = await clientStream(
      rerank,
      'RerankStream',
      texts.map((t, i) => ({ query, text: t, return_text: i === 0, raw_scores: false })),
    );
    assert.deepEqual(streamed.ranks, unaryRes.ranks);
    assert.ok(streamed.metadata.compute_chars >= texts.reduce((s, t) => s + t.length, 0));

    const many = Array.from({ length: 12 }, (_, i) => text(2 + (i % 9), 20 + i));
    const big = await clientStream(rerank, 'RerankStream', many.map((t) => ({ query, text: t })));
    assert.equal(big.ranks.length, 12);
    assert.deepEqual([...big.ranks.map((r: Msg) => r.index)].sort((a, b) => a - b), [...Array(12).keys()]);
    await assert.rejects(clientStream(rerank, 'RerankStream', [{ query, text: 'ok' }, { query, text: '' }]), refused(status.INVALID_ARGUMENT, 'VALIDATION'));
    await assert.rejects(clientStream(rerank, 'RerankStream', []), refused(status.INVALID_ARGUMENT, 'EMPTY', /texts/));
  });

  test('rerank limits: empty texts, > max_client_batch_size, > max_concurrent_requests', async () => {
    const rerank = ctx.clients.get('tei.v1.Rerank');
    await assert.rejects(rpc(rerank, 'Rerank', { query, texts: [] }), refused(status.INVALID_ARGUMENT, 'EMPTY', /texts/));
    await assert.rejects(rpc(rerank, 'Rerank', { query, texts: Array(9).fill('t') }), refused(status.INVALID_ARGUMENT, 'VALIDATION', /batch size 9 > maximum allowed batch size 8/));
    await assert.rejects(rpc(rerank, 'Rerank', { query, texts: Array(6).fill('t') }), refused(status.RESOURCE_EXHAUSTED, 'MODEL_OVERLOADED', /overloaded/));
    assert.equal((await rpc(rerank, 'Rerank', { query, texts: ['still', 'serving'] })).ranks.length, 2);
  });

  test('Predict, PredictPair and PredictPairStream on pairs', async () => {
    const predict = ctx.clients.get('tei.v1.Predict');
    const pair = await rpc(predict, 'PredictPair', { inputs: [query, texts[0]] });
    const ranked = await rpc(ctx.clients.get('tei.v1.Rerank'), 'Rerank', { query, texts: [texts[0]] });
    assert.equal(pair.predictions.length, 1);
    assert.ok(Math.abs(pair.predictions[0].score - ranked.ranks[0].score) < 1e-6);
    const single = await rpc(predict, 'Predict', { inputs: texts[1] });
    const alsoSingle = await rpc(predict, 'PredictPair', { inputs: [texts[1]] });
    assert.ok(Math.abs(single.predictions[0].score - alsoSingle.predictions[0].score) < 1e-6);
    await assert.rejects(rpc(predict, 'PredictPair', { inputs: ['a', 'b', 'c'] }), refused(status.INVALID_ARGUMENT, 'VALIDATION', /single or two elements/));

    // 20 pairs through a 4-permit engine: messages wait for admission and keep their order.
    const pairs = Array.from({ length: 20 }, (_, i) => [query, text(1 + ((i * 7) % 30), 40 + i)]);
    const { responses, error } = await bidi(predict, 'PredictPairStream', pairs.map((inputs) => ({ inputs })));
    assert.equal(error, undefined);
    assert.equal(responses.length, 20);
    for (const i of [0, 7, 19]) {
      const one = await rpc(predict, 'PredictPair', { inputs: pairs[i] });
      assert.ok(Math.abs(responses[i].predictions[0].score - one.predictions[0].score) < 1e-6, `message ${i}`);
    }
    await assert.rejects(rpc(ctx.clients.get('tei.v1.Embed'), 'Embed', { inputs: 'x' }), refused(status.FAILED_PRECONDITION, 'WRONG_MODEL_TYPE'));
  });
});

// ---- classifier --------------------------------------------------------------------------------------

describe('classifier model over gRPC', () => {
  const ctx = served({ kind: 'classifier', numLabels: 3 }, options());

  test('Predict and PredictStream: labels sorted by score, as the engine; raw_scores; wrong RPCs', async () => {
    const predict = ctx.clients.get('tei.v1.Predict');
    assert.equal((await rpc(ctx.clients.get('tei.v1.Info'), 'Info', {})).model_type, 'MODEL_TYPE_CLASSIFIER');
    const inputs = [text(25, 30), 'i love it', text(3, 31), text(60, 32)];
    const expected = await ctx.engine.predict(inputs, { truncate: false, truncationDirection: 'right', rawScores: false });
    const one = await rpc(predict, 'Predict', { inputs: inputs[0] });
    assert.deepEqual(
      one.predictions.map((p: Msg) => p.label),
      expected.results[0].map((p) => p.label),
    );
    close(
      one.predictions.map((p: Msg) => p.score),
      expected.results[0].map((p) => p.score),
    );
    assert.ok(Math.abs(one.predictions.reduce((s: number, p: Msg) => s + p.score, 0) - 1) < 1e-5);
    const raw = await rpc(predict, 'Predict', { inputs: inputs[0], raw_scores: true });
    const rawExpected = await ctx.engine.predict([inputs[0]], { truncate: false, truncationDirection: 'right', rawScores: true });
    close(
      raw.predictions.map((p: Msg) => p.score),
      rawExpected.results[0].map((p) => p.score),
    );

    const { responses, error } = await bidi(predict, 'PredictStream', inputs.map((inputs) => ({ inputs })));
    assert.equal(error, undefined);
    responses.forEach((r, i) => assert.deepEqual(r.predictions.map((p: Msg) => p.label), expected.results[i].map((p) => p.label)));
    const pairs = await bidi(predict, 'PredictPairStream', [{ inputs: ['a', 'b'] }, { inputs: [inputs[1]] }]);
    assert.equal(pairs.error, undefined);
    assert.equal(pairs.responses.length, 2);
    close(
      pairs.responses[1].predictions.map((p: Msg) => p.score),
      expected.results[1].map((p) => p.score),
    );

    await assert.rejects(rpc(ctx.clients.get('tei.v1.Rerank'), 'Rerank', { query: 'q', texts: ['a'] }), refused(status.FAILED_PRECONDITION, 'WRONG_MODEL_TYPE', /not a re-ranker/));
    await assert.rejects(rpc(predict, 'Predict', { inputs: '' }), refused(status.INVALID_ARGUMENT, 'VALIDATION'));
    assert.equal((await rpc(predict, 'Predict', { inputs: 'still serving' })).predictions.length, 3);
  });
});
