/**
 * Authorization on what a call actually reaches, on a real `teiplex serve` (router children, a
 * catalog model, gRPC and HTTP over loopback). Instances `team-emb` and `priv-a2` (one model_id),
 * `priv-b` (another), `team-emb` and `priv-b` sharing the alias `shared`; catalog model `priv-cat`
 * (alias `priv-cat-alias`). Key `team-a` may use `team-emb` only; key `cat` the catalog model (as its
 * first replica); `any` everything. Health is closed (it needs a key), the admin API open.
 *
 * - The Arrow RPCs, by the catalog model's name, alias or model_id, with `team-a`: refused, and the
 *   model is not started; once it is loaded (by `cat`), still refused.
 * - A forwarded RPC (unary and stream) by `team-a` naming the cold catalog model: refused, and
 *   the catalog and the instance list show nothing started.
 * - Balancing picks only among what the key may use: an HTTP alias and a gRPC model_id spanning
 *   allowed and forbidden instances always answer from the allowed one.
 * - Refusals to a restricted key name nothing outside its grant, and "exists but forbidden" reads
 *   exactly like "does not exist" (names, model ids, instance_index, health).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { decodeDense, encodeTexts } from '../../src/arrow/embedding-batch.js';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { assertErrorCode, assertTeiError, client } from '../helpers/data-plane.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { bidi, health, mux, unary, type AnyClient } from '../helpers/mux-client.js';

const { status } = grpc;
const KEYS = { any: 'authz-any-1', teamA: 'authz-team-a-2', cat: 'authz-cat-3' } as const;

function md(key: string): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set('authorization', `Bearer ${key}`);
  return m;
}

/** A refusal to the key: PERMISSION_DENIED with the `teiplex-error-code` trailer (docs/errors.md). */
function assertDenied(e: grpc.ServiceError | undefined, what: string): void {
  assert.ok(e !== undefined, `${what}: not refused`);
  assert.equal(e.code, status.PERMISSION_DENIED, `${what}: ${e.details}`);
  assert.deepEqual(e.metadata?.get('teiplex-error-code'), ['PERMISSION_DENIED'], `${what}: ${e.details}`);
}

/** The gRPC error of a call that must fail. */
async function failure(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('the call succeeded');
}

describe('authorization on the resolved target', () => {
  let dir: string;
  let m: ManagerProcess;
  let c: AnyClient;
  let h: AnyClient;
  let http: ReturnType<typeof client>;
  let modelA: string;
  let modelB: string;
  let modelC: string;
  /** Nothing of these may show in what team-a is told. */
  let secrets: string[];

  const arrowReq = (target: object) => ({ target, arrow_ipc: Buffer.from(encodeTexts(['hello', 'world'])) });
  const embed = (target: object, key: string) => unary(c, 'Embed', { target, request: { inputs: 'hello' } }, { deadline: Date.now() + 60_000 }, md(key));
  const assertNoSecrets = (text: string, what: string) => {
    for (const s of secrets) assert.ok(!text.includes(s), `${what} names '${s}': ${text}`);
  };
  const catalogUntouched = async () => {
    // No wait: a start is set off synchronously (the model reads 'loading' from that moment on, and a
    // replica follows), so one that a refused call set off by mistake shows once that call is answered.
    const model = (await m.api('GET', '/models/priv-cat')).body;
    assert.equal(model.state, 'available', JSON.stringify(model));
    assert.deepEqual(model.replicas, []);
    const names = (await m.api('GET', '/instances')).body.map((i: { name: string }) => i.name);
    assert.deepEqual(names, ['priv-a2', 'priv-b', 'team-emb']);
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teiplex-authz-'));
    modelA = await testModel({ kind: 'embedding', seed: 301 });
    modelB = await testModel({ kind: 'embedding', seed: 302 });
    modelC = await testModel({ kind: 'embedding', seed: 303 });
    secrets = ['priv-', modelB, modelC];
    const file = path.join(dir, 'manager.toml');
    await writeFile(
      file,
      `${loopbackConfig(dir)}startup_timeout_secs = 120
idle_timeout_secs = 600

[[instances]]
name = "team-emb"
model_id = ${JSON.stringify(modelA)}
aliases = ["shared"]

[[instances]]
name = "priv-a2"
model_id = ${JSON.stringify(modelA)}

[[instances]]
name = "priv-b"
model_id = ${JSON.stringify(modelB)}
aliases = ["shared"]

[[models]]
name = "priv-cat"
model_id = ${JSON.stringify(modelC)}
aliases = ["priv-cat-alias"]

[auth]
open_health = false
admin_requires_key = false

[[auth.api_keys]]
name = "any"
key_sha256 = "${sha256Hex(KEYS.any)}"

[[auth.api_keys]]
name = "team-a"
key_sha256 = "${sha256Hex(KEYS.teamA)}"
instances = ["team-emb"]

[[auth.api_keys]]
name = "cat"
key_sha256 = "${sha256Hex(KEYS.cat)}"
instances = ["priv-cat-1"]
`,
    );
    m = await startManager(file);
    const grpcPort = Number(m.ready.grpc_port);
    c = mux(grpcPort);
    h = health(grpcPort);
    http = client(m.apiPort, { authorization: `Bearer ${KEYS.teamA}` });
    for (const name of ['priv-a2', 'priv-b', 'team-emb']) await m.waitFor(name, (i) => i.status === 'running', 120_000);
  });

  after(async () => {
    c?.close();
    h?.close();
    if (m) assert.equal(await m.stop(), 0);
    await rm(dir, { recursive: true, force: true });
  });

  test('forwarded RPCs (unary, stream) and HTTP naming the cold catalog model with a restricted key: refused, nothing started', async () => {
    for (const name of ['priv-cat', 'priv-cat-alias', modelC]) {
      const e = await failure(embed({ model_id: name }, KEYS.teamA));
      assertDenied(e, `Embed ${name}`);
      const s = await bidi(c, 'EmbedStream', [{ target: { model_id: name }, request: { inputs: 'x' } }], { deadline: Date.now() + 60_000 }, md(KEYS.teamA));
      assertDenied(s.error, `EmbedStream ${name}`);
    }
    for (const name of ['priv-cat', 'priv-cat-alias']) {
      const r = await http.post('/v1/embeddings', { model: name, input: 'x' });
      assertErrorCode(r, 403, 'PERMISSION_DENIED', name);
    }
    await catalogUntouched();
  });

  test('Arrow RPCs naming the cold catalog model (name, alias, model_id) with a restricted key: refused, nothing started', async () => {
    for (const method of ['EmbedArrow', 'EmbedSparseArrow', 'EmbedAllArrow']) {
      for (const name of ['priv-cat', 'priv-cat-alias', modelC]) {
        const e = await failure(unary(c, method, arrowReq({ model_id: name }), { deadline: Date.now() + 60_000 }, md(KEYS.teamA)));
        assertDenied(e, `${method} ${name}`);
        assertNoSecrets(e.details.replace(name, '<asked>'), `${method} ${name}`);
      }
    }
    await catalogUntouched();
  });

  test('a key allowed the catalog model starts it; a restricted key still cannot reach its replica through any name', async () => {
    const r = await unary(c, 'EmbedArrow', arrowReq({ model_id: 'priv-cat-alias' }), { deadline: Date.now() + 120_000 }, md(KEYS.cat));
    assert.equal(decodeDense(r.res.arrow_ipc).rows, 2);
    assert.equal(r.headers.get('teiplex-instance')[0], 'priv-cat-1');
    for (const method of ['EmbedArrow', 'EmbedSparseArrow', 'EmbedAllArrow']) {
      for (const name of ['priv-cat', 'priv-cat-alias', modelC]) {
        const e = await failure(unary(c, method, arrowReq({ model_id: name }), { deadline: Date.now() + 60_000 }, md(KEYS.teamA)));
        assertDenied(e, `${method} ${name}`);
      }
      const e = await failure(unary(c, method, arrowReq({ instance_name: 'priv-cat-1' }), { deadline: Date.now() + 60_000 }, md(KEYS.teamA)));
      assertDenied(e, `${method} priv-cat-1`);
    }
    // The catalog key reaches nothing else.
    assertDenied(await failure(embed({ instance_name: 'team-emb' }, KEYS.cat)), 'cat key on team-emb');
  });

  test('balancing picks only among allowed instances: HTTP alias and model_id, gRPC model_id', async () => {
    for (let k = 0; k < 12; k++) {
      for (const model of ['shared', modelA]) {
        const r = await http.post('/v1/embeddings', { model, input: `text ${k}` });
        assert.equal(r.status, 200, `${model} #${k}: ${JSON.stringify(r.body)}`);
        assert.equal(r.headers.get('x-teiplex-instance'), 'team-emb');
      }
      const tei = await http.post('/embed', { model: 'shared', inputs: `text ${k}` });
      assert.equal(tei.status, 200, JSON.stringify(tei.body));
      assert.equal(tei.headers.get('x-teiplex-instance'), 'team-emb');
      const g = await embed({ model_id: modelA }, KEYS.teamA);
      assert.equal(g.headers.get('teiplex-instance')[0], 'team-emb');
    }
    // An unrestricted key still spreads the alias over both.
    const seen = new Set<string>();
    const anyHttp = client(m.apiPort, { authorization: `Bearer ${KEYS.any}` });
    for (let k = 0; k < 8; k++) seen.add((await anyHttp.post('/v1/embeddings', { model: 'shared', input: 'x' })).headers.get('x-teiplex-instance') ?? '');
    assert.deepEqual([...seen].sort(), ['priv-b', 'team-emb']);
  });

  test('HTTP refusals to a restricted key: forbidden reads as unknown, and no text names what is outside the grant', async () => {
    const bodies: string[] = [];
    for (const [route, body] of [
      ['/v1/embeddings', (model: string) => ({ model, input: 'x' })],
      ['/embed', (model: string) => ({ model, inputs: 'x' })],
    ] as const) {
      const answers = [];
      for (const name of ['priv-b', 'no-such-model', 'priv-cat', modelB]) {
        const r = await http.post(route, body(name));
        if (route === '/embed') assertTeiError(r, 403, 'unauthorized', `${route} ${name}`);
        else assertErrorCode(r, 403, 'PERMISSION_DENIED', `${route} ${name}`);
        const text = JSON.stringify(r.body).replaceAll(JSON.stringify(name).slice(1, -1), '<asked>');
        assertNoSecrets(text, `${route} ${name}`);
        answers.push(text);
      }
      assert.equal(new Set(answers).size, 1, `${route}: every refusal reads the same:\n${answers.join('\n')}`);
      bodies.push(answers[0]);
    }
    assert.match(bodies[0], /team-emb/, 'the hint lists what the key may use');
    // No model named: 400 naming only what the key may use (it may use one instance: that one serves).
    const only = await http.post('/v1/embeddings', { input: 'x' });
    assert.equal(only.status, 200, JSON.stringify(only.body));
    assert.equal(only.headers.get('x-teiplex-instance'), 'team-emb');
    // The model list and its 404.
    const listed = await http.get('/v1/models');
    assertNoSecrets(JSON.stringify(listed.body), '/v1/models');
    const nf = await http.get('/v1/models/priv-b');
    assertErrorCode(nf, 404, 'MODEL_NOT_FOUND');
    assertNoSecrets(JSON.stringify(nf.body).replaceAll('priv-b', '<asked>'), '/v1/models/{id}');
  });

  test('gRPC refusals to a restricted key: a forbidden name or model_id reads exactly like a missing one', async () => {
    const texts = new Set<string>();
    for (const target of [{ instance_name: 'priv-b' }, { instance_name: 'no-such' }, { model_id: modelB }, { model_id: 'no/such' }, { model_id: 'shared' }]) {
      const asked = Object.values(target)[0];
      const e = await failure(embed(target, KEYS.teamA));
      assertDenied(e, JSON.stringify(target));
      const text = e.details.replace(asked, '<asked>');
      assertNoSecrets(text, JSON.stringify(target));
      texts.add(text.replace(/model_id|instance/, '<kind>'));
    }
    assert.equal(texts.size, 1, [...texts].join('\n'));
  });

  test('instance_index: a restricted key counts in its own list (ListInstances); probing cannot tell forbidden from missing', async () => {
    // The full list has 4 instances (priv-a2, priv-b, priv-cat-1, team-emb): 1..3 exist, 4 and 50 do not.
    const probes = new Set<string>();
    for (const index of [1, 2, 3, 4, 50]) {
      const e = await failure(embed({ instance_index: index }, KEYS.teamA));
      assertDenied(e, `instance_index ${index}`);
      assertNoSecrets(e.details, `instance_index ${index}`);
      probes.add(e.details.replace(String(index), '<n>'));
    }
    assert.equal(probes.size, 1, [...probes].join('\n'));
    for (const method of ['EmbedArrow', 'EmbedAllArrow']) {
      const e = await failure(unary(c, method, arrowReq({ instance_index: 1 }), {}, md(KEYS.teamA)));
      assertDenied(e, `${method} instance_index 1`);
    }
    const list = await unary(c, 'ListInstances', {}, {}, md(KEYS.teamA));
    assert.deepEqual(list.res.instances.map((i: { name: string; instance_index?: number }) => [i.name, i.instance_index ?? 0]), [['team-emb', 0]]);
    assert.equal((await embed({ instance_index: 0 }, KEYS.teamA)).headers.get('teiplex-instance')[0], 'team-emb');
  });

  test('health (closed, so it carries the key): a forbidden instance is an unknown name to a restricted key', async () => {
    for (const service of ['priv-b', 'no-such']) {
      const e = await failure(unary(h, 'Check', { service }, {}, md(KEYS.teamA)));
      assert.equal(e.code, status.NOT_FOUND, `${service}: ${e.details}`);
    }
    assert.equal((await unary(h, 'Check', { service: 'team-emb' }, {}, md(KEYS.teamA))).res.status, 'SERVING');
    assert.equal((await unary(h, 'Check', { service: 'priv-b' }, {}, md(KEYS.any))).res.status, 'SERVING');
    const listed = await unary(h, 'List', {}, {}, md(KEYS.teamA));
    assert.deepEqual(Object.keys(listed.res.statuses).filter((k) => k.includes('-')).sort(), ['team-emb']);
    // HTTP /health/all, closed too: a restricted key sees only its own instances.
    const all = await http.get('/health/all');
    assert.equal(all.status, 200);
    assert.deepEqual(all.body.instances.map((i: { name: string }) => i.name), ['team-emb']);
    assertNoSecrets(JSON.stringify(all.body), '/health/all');
    const full = await client(m.apiPort, { authorization: `Bearer ${KEYS.any}` }).get('/health/all');
    const everything = (await m.api('GET', '/instances')).body.map((i: { name: string }) => i.name);
    assert.ok(everything.length > 1);
    assert.deepEqual(full.body.instances.map((i: { name: string }) => i.name), everything);
  });
});
