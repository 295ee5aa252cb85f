/**
 * Quotas per API key (docs/tenancy.md) on a real `teiplex serve` with router children, keys in
 * the TOML file: instances `emb` and `emb2` (two model ids).
 * - requests: the third call of a 2-per-minute key is 429 RATE_LIMIT_EXCEEDED in OpenAI's shape,
 *   with Retry-After and the `x-ratelimit-*-requests` headers;
 * - tokens: counted as the model embedded them (a long text takes more off the remaining tokens
 *   than a short one), a key driven past its limit is refused with Retry-After, and admitted again
 *   once the refill brings it above 0;
 * - a per-model limit applies to calls to that model only;
 * - a key without limits gets no `x-ratelimit-*` headers;
 * - a config reload changes a key's limit live (and `auth` is not reported as needing a restart);
 * - gRPC: a forwarded Embed is charged the child's x-compute-tokens; over quota it is RESOURCE_EXHAUSTED with the `teiplex-error-code`
 *   trailer, `retry-after` and the `x-ratelimit-*` metadata; EmbedTyped (decoded by the manager)
 *   is charged its prompt_tokens.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { assertErrorCode, client } from '../helpers/data-plane.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { errorCode, mux, unary, type AnyClient } from '../helpers/mux-client.js';
import { until } from '../helpers/wait.js';

const KEYS = { free: 'quota-free-1', req: 'quota-req-2', tok: 'quota-tok-3', cost: 'quota-cost-4', perModel: 'quota-model-5', live: 'quota-live-6', grpc: 'quota-grpc-7', typed: 'quota-typed-8' } as const;

function keysToml(liveRequests: number): string {
  const k = (name: keyof typeof KEYS, extra = '') => `[[auth.api_keys]]\nname = "${name}"\nkey_sha256 = "${sha256Hex(KEYS[name])}"\n${extra}\n`;
  return [
    k('free'),
    k('req', 'requests_per_minute = 2'),
    k('tok', 'tokens_per_minute = 3000'),
    k('cost', 'tokens_per_minute = 600'),
    k('perModel', 'tokens_per_minute = 100000\n[[auth.api_keys.limits]]\nmodel = "MODEL_B"\ntokens_per_minute = 7'),
    k('live', `requests_per_minute = ${liveRequests}`),
    k('grpc', 'requests_per_minute = 1\ntokens_per_minute = 1000'),
    k('typed', 'tokens_per_minute = 5'),
  ].join('\n');
}

const header = (h: Headers, name: string): string | null => h.get(name);

describe('quotas per API key', () => {
  let dir: string;
  let file: string;
  let m: ManagerProcess;
  let modelA: string;
  let modelB: string;
  let top: string;
  let http: ReturnType<typeof client>;
  let c: AnyClient;
  let n = 0;
  /** A text not sent before (each call embeds its own text, not an embedding-cache hit). */
  const fresh = (words: number) => `${++n} ${'lorem ipsum dolor '.repeat(words).trim()}`;
  const embed = (key: string, input: string, model = 'emb') => http.post('/v1/embeddings', { model, input }, { authorization: `Bearer ${key}` });

  const writeToml = (liveRequests: number) =>
    writeFile(
      file,
      `${top}\n[[instances]]\nname = "emb"\nmodel_id = ${JSON.stringify(modelA)}\n\n[[instances]]\nname = "emb2"\nmodel_id = ${JSON.stringify(modelB)}\n\n[auth]\nadmin_requires_key = false\n\n${keysToml(liveRequests).replace('MODEL_B', modelB)}`,
    );

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teiplex-quotas-'));
    file = path.join(dir, 'manager.toml');
    modelA = await testModel({ kind: 'embedding', seed: 401 });
    modelB = await testModel({ kind: 'embedding', seed: 402 });
    top = `${loopbackConfig(dir)}startup_timeout_secs = 120\n`;
    await writeToml(1);
    m = await startManager(file);
    http = client(m.apiPort);
    c = mux(Number(m.ready.grpc_port));
    for (const name of ['emb', 'emb2']) await m.waitFor(name, (i) => i.status === 'running', 120_000);
  });

  after(async () => {
    c?.close();
    if (m) assert.equal(await m.stop(), 0);
    await rm(dir, { recursive: true, force: true });
  });

  test('requests_per_minute: the call past the limit is 429 with Retry-After and the headers', async () => {
    const first = await embed(KEYS.req, fresh(2));
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(header(first.headers, 'x-ratelimit-limit-requests'), '2');
    assert.equal(header(first.headers, 'x-ratelimit-remaining-requests'), '1');
    assert.match(header(first.headers, 'x-ratelimit-reset-requests') ?? '', /^(\d+ms|\d+s)$/);
    assert.equal(header(first.headers, 'x-ratelimit-limit-tokens'), null, 'no token limit on this key');
    assert.equal((await embed(KEYS.req, fresh(2))).status, 200);
    const refused = await embed(KEYS.req, fresh(2));
    assertErrorCode(refused, 429, 'RATE_LIMIT_EXCEEDED', 'third call');
    assert.equal(refused.body.error.type, 'rate_limit_error');
    assert.match(refused.body.error.message, /API key 'req' is over its requests_per_minute \(2\)/);
    const retry = Number(header(refused.headers, 'retry-after'));
    assert.ok(retry >= 1 && retry <= 60, `retry-after ${retry}`);
    assert.equal(header(refused.headers, 'x-ratelimit-remaining-requests'), '0');
    assert.equal(header(refused.headers, 'x-ratelimit-limit-requests'), '2');
  });

  test('tokens: a long text costs more than a short one, as the model counted them', async () => {
    const short = await embed(KEYS.cost, fresh(1));
    assert.equal(short.status, 200, JSON.stringify(short.body));
    const shortTokens = short.body.usage.prompt_tokens as number;
    const afterShort = Number(header(short.headers, 'x-ratelimit-remaining-tokens'));
    assert.equal(afterShort, 600 - shortTokens, 'the short call took its usage tokens');
    const long = await embed(KEYS.cost, fresh(20));
    assert.equal(long.status, 200, JSON.stringify(long.body));
    const longTokens = long.body.usage.prompt_tokens as number;
    assert.ok(longTokens > shortTokens + 20, `${longTokens} vs ${shortTokens}`);
    const afterLong = Number(header(long.headers, 'x-ratelimit-remaining-tokens'));
    // The bucket refills 10 tokens a second meanwhile: the drop is the long call's tokens, less that.
    assert.ok(afterShort - afterLong > 600 - afterShort, `long drop ${afterShort - afterLong} vs short drop ${600 - afterShort}`);
    assert.ok(afterShort - afterLong <= longTokens, `drop ${afterShort - afterLong} vs ${longTokens} tokens`);
    assert.equal(header(long.headers, 'x-ratelimit-limit-tokens'), '600');
  });

  test('tokens_per_minute: refused once spent, with Retry-After; admitted again after the refill', async () => {
    let refused: Awaited<ReturnType<typeof embed>> | undefined;
    for (let i = 0; i < 200 && refused === undefined; i++) {
      const a = await embed(KEYS.tok, fresh(20));
      if (a.status !== 200) refused = a;
    }
    assert.ok(refused, 'never refused in 200 calls of a 3000-token key');
    assertErrorCode(refused, 429, 'RATE_LIMIT_EXCEEDED', 'spent');
    assert.match(refused.body.error.message, /tokens_per_minute \(3000\)/);
    assert.equal(header(refused.headers, 'x-ratelimit-remaining-tokens'), '0');
    assert.equal(header(refused.headers, 'x-ratelimit-limit-tokens'), '3000');
    assert.match(header(refused.headers, 'x-ratelimit-reset-tokens') ?? '', /^(\d+m)?\d+s$/, 'time until full again, as 1m1s');
    const retry = Number(header(refused.headers, 'retry-after'));
    assert.ok(retry >= 1 && retry <= 3, `one call overdraws by at most its tokens (~60, 50 a second): retry-after ${retry}`);
    const again = await until('the key admitted again', async () => {
      const a = await embed(KEYS.tok, fresh(1));
      if (a.status === 200) return a;
      assertErrorCode(a, 429, 'RATE_LIMIT_EXCEEDED', 'while waiting');
      return undefined;
    }, { timeoutMs: 10_000, everyMs: 200 });
    assert.equal(header(again.headers, 'x-ratelimit-limit-tokens'), '3000');
  });

  test('a per-model limit counts calls to that model only; a key without limits gets no headers', async () => {
    const a = await embed(KEYS.perModel, fresh(1), 'emb');
    assert.equal(a.status, 200, JSON.stringify(a.body));
    assert.equal(header(a.headers, 'x-ratelimit-limit-tokens'), '100000');
    const b = await embed(KEYS.perModel, fresh(10), 'emb2');
    assert.equal(b.status, 200, JSON.stringify(b.body));
    assert.equal(header(b.headers, 'x-ratelimit-limit-tokens'), '7', 'emb2 serves the model with its own limit');
    assert.equal(header(b.headers, 'x-ratelimit-remaining-tokens'), '0');
    assertErrorCode(await embed(KEYS.perModel, fresh(1), 'emb2'), 429, 'RATE_LIMIT_EXCEEDED', 'emb2 spent');
    assert.equal((await embed(KEYS.perModel, fresh(1), 'emb')).status, 200, 'the other model is not limited by it');
    const malformed = await http.post('/v1/embeddings', { model: 'emb' }, { authorization: `Bearer ${KEYS.perModel}` });
    assertErrorCode(malformed, 422, 'VALIDATION', 'no input');
    assert.equal(header(malformed.headers, 'x-ratelimit-limit-tokens'), '100000', 'an answer before admission shows the key buckets');
    const free = await embed(KEYS.free, fresh(1));
    assert.equal(free.status, 200);
    for (const name of free.headers.keys()) assert.ok(!name.startsWith('x-ratelimit-'), `unlimited key got ${name}`);
  });

  test('a config reload changes a limit live', async () => {
    assert.equal((await embed(KEYS.live, fresh(1))).status, 200);
    assertErrorCode(await embed(KEYS.live, fresh(1)), 429, 'RATE_LIMIT_EXCEEDED', 'limit 1');
    await writeToml(1000);
    const r = await m.api('POST', '/config/reload');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.ok(!r.body.restart_required.includes('auth'), JSON.stringify(r.body));
    const a = await embed(KEYS.live, fresh(1));
    assert.equal(a.status, 200, JSON.stringify(a.body));
    assert.equal(header(a.headers, 'x-ratelimit-limit-requests'), '1000');
    assert.equal(header(a.headers, 'x-ratelimit-remaining-requests'), '998', 'the one admitted call stays spent (the refused one took nothing)');
  });

  test('gRPC: a forwarded Embed over quota is RESOURCE_EXHAUSTED with retry-after and the metadata', async () => {
    const md = () => {
      const x = new grpc.Metadata();
      x.set('authorization', `Bearer ${KEYS.grpc}`);
      return x;
    };
    const ok = await unary(c, 'Embed', { target: { instance_name: 'emb' }, request: { inputs: fresh(1) } }, { deadline: Date.now() + 60_000 }, md());
    assert.deepEqual(ok.headers.get('x-ratelimit-limit-requests'), ['1']);
    assert.deepEqual(ok.headers.get('x-ratelimit-remaining-requests'), ['0']);
    const tokens = Number(ok.headers.get('x-compute-tokens')[0]);
    assert.ok(tokens > 0, 'the child reports its tokens');
    assert.deepEqual(ok.headers.get('x-ratelimit-remaining-tokens'), [String(1000 - tokens)], "charged the child's x-compute-tokens, relayed undecoded");
    let err: grpc.ServiceError | undefined;
    await unary(c, 'Embed', { target: { instance_name: 'emb' }, request: { inputs: fresh(1) } }, { deadline: Date.now() + 60_000 }, md()).catch((e: grpc.ServiceError) => {
      err = e;
    });
    assert.ok(err, 'second call admitted');
    assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED, err.details);
    assert.equal(errorCode(err), 'RATE_LIMIT_EXCEEDED');
    assert.ok(Number(err.metadata.get('retry-after')[0]) >= 1, 'retry-after');
    assert.deepEqual(err.metadata.get('x-ratelimit-remaining-requests'), ['0']);
  });

  test('gRPC: EmbedTyped is charged its prompt_tokens, then refused with the metadata', async () => {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${KEYS.typed}`);
    const ok = await unary(c, 'EmbedTyped', { target: { model_id: modelA }, inputs: [fresh(5)] }, { deadline: Date.now() + 60_000 }, md);
    assert.ok(ok.res.prompt_tokens > 5, JSON.stringify(ok.res.prompt_tokens));
    assert.deepEqual(ok.headers.get('x-ratelimit-limit-tokens'), ['5']);
    let err: grpc.ServiceError | undefined;
    await unary(c, 'EmbedTyped', { target: { model_id: modelA }, inputs: [fresh(1)] }, { deadline: Date.now() + 60_000 }, md).catch((e: grpc.ServiceError) => {
      err = e;
    });
    assert.ok(err, 'admitted although its prompt_tokens overdrew the key');
    assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED, err.details);
    assert.equal(errorCode(err), 'RATE_LIMIT_EXCEEDED');
    assert.match(err.details, /tokens_per_minute \(5\)/);
    assert.deepEqual(err.metadata.get('x-ratelimit-remaining-tokens'), ['0']);
  });
});
