/**
 * mTLS and API keys on a real `teiplex serve`:
 * - with [auth.mtls] (allow-lists) and keys, two router children: gRPC and HTTPS accept an
 *   allow-listed client certificate with a key; no certificate or another CA's fails the
 *   handshake; a certificate outside the allow-lists is UNAUTHENTICATED / 401; missing or unknown
 *   keys are UNAUTHENTICATED / 401; a key restricted to one instance (or model) is
 *   PERMISSION_DENIED / 403 elsewhere; health, reflection and metrics stay open; refused calls
 *   are counted in the metrics;
 * - keys without TLS and with health and metrics closed, the admin API left open;
 * - an unreadable certificate file: exit 2 naming the file before anything starts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { projectPath } from '../../src/common/paths.js';
import { muxClient } from '../../src/mux/protos.js';
import { loadProtos } from '../../src/tei/proto.js';
import { assertErrorCode } from '../helpers/data-plane.js';
import { startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { grpcError, type AnyClient } from '../helpers/mux-client.js';
import { makeTestPki, type Pem, type TestPki, mtlsToml } from '../helpers/test-certs.js';
import { until } from '../helpers/wait.js';

const { status } = grpc;
const KEYS = { ops: 'ops-secret-1', any: 'any-secret-2', teamA: 'team-a-secret-3', modelB: 'model-b-secret-4' } as const;

let dir: string;
let pki: TestPki;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-auth-e2e-'));
  pki = makeTestPki(dir);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function baseToml(name: string): string {
  return `api_port = 0
grpc_port = 0
listen_host = "127.0.0.1"
state_file = ${JSON.stringify(path.join(dir, `${name}-state.toml`))}
log_dir = ${JSON.stringify(path.join(dir, `${name}-logs`))}
auto_restore = false
startup_timeout_secs = 120
instance_port_start = ${20000 + Math.floor(Math.random() * 20000)}
instance_port_end = 45000
`;
}

/** assert.rejects matcher for a teiplex refusal: the gRPC status and the `teiplex-error-code` trailer (docs/errors.md). */
function refused(code: grpc.status, machineCode: string, re?: RegExp) {
  return (err: grpc.ServiceError): boolean => {
    grpcError(code, re)(err);
    assert.deepEqual(err.metadata?.get('teiplex-error-code'), [machineCode], err.details);
    return true;
  };
}

function metadata(key?: string): grpc.Metadata {
  const md = new grpc.Metadata();
  if (key !== undefined) md.set('authorization', `Bearer ${key}`);
  return md;
}

function call<T = any>(client: AnyClient, method: string, req: unknown, key?: string): Promise<T> {
  return new Promise((resolve, reject) => {
    client[method](req, metadata(key), { deadline: Date.now() + 15_000 }, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res)));
  });
}

/** EmbedStream with `key`: the first error, or the answers. */
function embedStream(client: AnyClient, target: object, key: string): Promise<{ answers: number; error?: grpc.ServiceError }> {
  return new Promise((resolve) => {
    const s = client.EmbedStream(metadata(key), { deadline: Date.now() + 15_000 }) as grpc.ClientDuplexStream<unknown, unknown>;
    let answers = 0;
    let error: grpc.ServiceError | undefined;
    s.on('data', () => answers++);
    s.on('error', (e: grpc.ServiceError) => (error = e));
    s.on('status', () => setImmediate(() => resolve({ answers, error })));
    s.write({ target, request: { inputs: 'one' } });
    s.write({ request: { inputs: 'two' } });
    s.end();
  });
}

interface HttpAnswer {
  status: number;
  body: any;
  headers: Record<string, string | string[] | undefined>;
}

/** One request; TLS with `client` (or none) when `tls`. */
function http(port: number, method: string, urlPath: string, opts: { tls?: boolean; client?: Pem; ca?: Buffer; key?: string; body?: unknown } = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (opts.key !== undefined) headers.authorization = `Bearer ${opts.key}`;
    const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    if (payload !== undefined) headers['content-type'] = 'application/json';
    const common = { host: '127.0.0.1', port, method, path: urlPath, headers, agent: false as const };
    const onResponse = (res: import('node:http').IncomingMessage) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          /* text */
        }
        resolve({ status: res.statusCode ?? 0, body, headers: res.headers });
      });
      res.on('error', reject);
    };
    const req = opts.tls
      ? httpsRequest({ ...common, ca: opts.ca ?? pki.caPem, cert: opts.client?.cert, key: opts.client?.key }, onResponse)
      : httpRequest(common, onResponse);
    req.setTimeout(15_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(payload);
  });
}

describe('mTLS with allow-lists, and API keys', () => {
  let m: ManagerProcess;
  let apiPort: number;
  let grpcPort: number;
  let modelA: string;
  let modelB: string;
  const clients: grpc.Client[] = [];

  const creds = (client?: Pem, ca = pki.caPem) => (client === undefined ? grpc.credentials.createSsl(ca) : grpc.credentials.createSsl(ca, client.key, client.cert));
  function mux(client?: Pem, ca?: Buffer): AnyClient {
    const Ctor = muxClient();
    const c = new Ctor(`localhost:${grpcPort}`, creds(client, ca)) as AnyClient;
    clients.push(c);
    return c;
  }
  function health(client: Pem): AnyClient {
    const Ctor = grpc.makeClientConstructor(healthService as unknown as grpc.ServiceDefinition, 'grpc.health.v1.Health');
    const c = new Ctor(`localhost:${grpcPort}`, creds(client)) as AnyClient;
    clients.push(c);
    return c;
  }
  const https = (method: string, urlPath: string, client: Pem | undefined, key?: string, extra: { ca?: Buffer; body?: unknown } = {}) =>
    http(apiPort, method, urlPath, { tls: true, client, key, ...extra });
  const embed = (client: AnyClient, target: object, key?: string) => call(client, 'Embed', { target, request: { inputs: 'hello' } }, key);

  before(async () => {
    modelA = await testModel({ kind: 'embedding' });
    modelB = await testModel({ kind: 'embedding', seed: 7 });
    const file = path.join(dir, 'mtls.toml');
    await writeFile(
      file,
      `${baseToml('mtls')}
[[instances]]
name = "emb-a"
model_id = ${JSON.stringify(modelA)}

[[instances]]
name = "emb-b"
model_id = ${JSON.stringify(modelB)}

${mtlsToml(pki, `allowed_subjects = ["CN=client-a,O=acme"]
allowed_sans = ["spiffe://acme/client-s"]
`)}

[[auth.api_keys]]
name = "ops"
key_sha256 = "${sha256Hex(KEYS.ops)}"
admin = true

[[auth.api_keys]]
name = "any"
key_sha256 = "${sha256Hex(KEYS.any).toUpperCase()}"

[[auth.api_keys]]
name = "team-a"
key_sha256 = "${sha256Hex(KEYS.teamA)}"
instances = ["emb-a"]

[[auth.api_keys]]
name = "model-b"
key_sha256 = "${sha256Hex(KEYS.modelB)}"
models = [${JSON.stringify(modelB)}]
`,
    );
    m = await startManager(file);
    apiPort = m.apiPort;
    grpcPort = Number(m.ready.grpc_port);
    // Health is open: even client-b (outside the allow-lists) may ask, without a key.
    const h = health(pki.clientB);
    for (const service of ['emb-a', 'emb-b']) {
      await until(`${service} SERVING`, async () => (await call(h, 'Check', { service })).status === 'SERVING', { timeoutMs: 120_000, everyMs: 200, context: () => m.output().slice(-3000) });
    }
  });

  after(async () => {
    for (const c of clients) c.close();
    if (m) assert.equal(await m.stop(), 0);
  });

  test('gRPC: an allow-listed certificate (by subject or by SAN) with a key is served', async () => {
    for (const cert of [pki.clientA, pki.clientS]) {
      const res = await embed(mux(cert), { instance_name: 'emb-a' }, KEYS.any);
      assert.equal(res.embeddings.length > 0, true);
    }
    const all = await call(mux(pki.clientA), 'ListInstances', {}, KEYS.any);
    assert.deepEqual(all.instances.map((i: { name: string }) => i.name), ['emb-a', 'emb-b']);
    // A restricted key lists what it may use; instance_index is the position in that list.
    const modelB = await call(mux(pki.clientA), 'ListInstances', {}, KEYS.modelB);
    assert.deepEqual(modelB.instances.map((i: { name: string; instance_index?: number }) => [i.name, i.instance_index ?? 0]), [['emb-b', 0]]);
    const teamA = await call(mux(pki.clientA), 'ListInstances', {}, KEYS.teamA);
    assert.deepEqual(teamA.instances.map((i: { name: string }) => i.name), ['emb-a']);
  });

  test('gRPC: no client certificate, or one from another CA: the handshake fails', async () => {
    await assert.rejects(embed(mux(), { instance_name: 'emb-a' }, KEYS.any), grpcError(status.UNAVAILABLE));
    await assert.rejects(embed(mux(pki.foreign), { instance_name: 'emb-a' }, KEYS.any), grpcError(status.UNAVAILABLE));
  });

  test('gRPC: a certificate outside the allow-lists is UNAUTHENTICATED, whatever the key', async () => {
    await assert.rejects(embed(mux(pki.clientB), { instance_name: 'emb-a' }, KEYS.any), refused(status.UNAUTHENTICATED, 'UNAUTHENTICATED', /client certificate 'O=other,CN=client-b'.*not in auth\.mtls\.allowed_subjects/));
  });

  test('gRPC: missing, malformed or unknown key: UNAUTHENTICATED', async () => {
    const c = mux(pki.clientA);
    await assert.rejects(embed(c, { instance_name: 'emb-a' }), refused(status.UNAUTHENTICATED, 'UNAUTHENTICATED', /missing API key/));
    await assert.rejects(embed(c, { instance_name: 'emb-a' }, 'not-a-key'), refused(status.UNAUTHENTICATED, 'UNAUTHENTICATED', /unknown API key/));
    await assert.rejects(call(c, 'ListInstances', {}), refused(status.UNAUTHENTICATED, 'UNAUTHENTICATED'));
    const md = new grpc.Metadata();
    md.set('authorization', KEYS.any);
    await assert.rejects(
      new Promise((resolve, reject) => c.Embed({ target: { instance_name: 'emb-a' }, request: { inputs: 'x' } }, md, (e: Error | null, r: unknown) => (e ? reject(e) : resolve(r)))),
      refused(status.UNAUTHENTICATED, 'UNAUTHENTICATED', /malformed authorization/),
    );
  });

  test('gRPC: restricted keys: PERMISSION_DENIED outside their instances or models (unary and streams, every target kind)', async () => {
    const c = mux(pki.clientA);
    await embed(c, { instance_name: 'emb-a' }, KEYS.teamA);
    await embed(c, { model_id: modelA }, KEYS.teamA);
    await assert.rejects(embed(c, { instance_name: 'emb-b' }, KEYS.teamA), refused(status.PERMISSION_DENIED, 'PERMISSION_DENIED', /API key 'team-a' cannot use instance 'emb-b': .*it may use instances 'emb-a'/));
    await assert.rejects(embed(c, { model_id: modelB }, KEYS.teamA), refused(status.PERMISSION_DENIED, 'PERMISSION_DENIED', /cannot use model_id '.*': it does not exist or is not one this key may use/));
    await assert.rejects(embed(c, { instance_index: 1 }, KEYS.teamA), refused(status.PERMISSION_DENIED, 'PERMISSION_DENIED'));
    await embed(c, { model_id: modelB }, KEYS.modelB);
    await embed(c, { instance_index: 0 }, KEYS.modelB);
    await assert.rejects(embed(c, { instance_name: 'emb-a' }, KEYS.modelB), refused(status.PERMISSION_DENIED, 'PERMISSION_DENIED', /'model-b' cannot use instance 'emb-a'/));

    // Every RPC, whatever its handler: the Arrow batch call too.
    await assert.rejects(call(c, 'EmbedArrow', { target: { instance_name: 'emb-b' }, arrow_ipc: Buffer.alloc(0) }, KEYS.teamA), refused(status.PERMISSION_DENIED, 'PERMISSION_DENIED'));

    const ok = await embedStream(c, { instance_name: 'emb-a' }, KEYS.teamA);
    assert.deepEqual(ok, { answers: 2, error: undefined });
    const denied = await embedStream(c, { instance_name: 'emb-b' }, KEYS.teamA);
    assert.equal(denied.answers, 0);
    assert.ok(denied.error !== undefined, 'the stream was refused');
    refused(status.PERMISSION_DENIED, 'PERMISSION_DENIED')(denied.error);
  });

  test('gRPC: health and reflection stay open (no key, certificate outside the allow-lists)', async () => {
    assert.equal((await call(health(pki.clientB), 'Check', { service: '' })).status, 'SERVING');
    const def = loadProtos(['grpc/reflection/v1/reflection.proto']);
    const Ctor = grpc.makeClientConstructor(def['grpc.reflection.v1.ServerReflection'] as grpc.ServiceDefinition, 'grpc.reflection.v1.ServerReflection');
    const r = new Ctor(`localhost:${grpcPort}`, creds(pki.clientB)) as AnyClient;
    clients.push(r);
    const services = await new Promise<string[]>((resolve, reject) => {
      const s = r.ServerReflectionInfo();
      s.on('data', (d: { list_services_response: { service: Array<{ name: string }> } }) => resolve(d.list_services_response.service.map((x) => x.name)));
      s.on('error', reject);
      s.write({ list_services: '' });
      s.end();
    });
    assert.ok(services.includes('tei_multiplexer.v1.TeiMultiplexer'), services.join());
  });

  test('HTTPS: handshake fails without a certificate or with another CA; the server certificate verifies', async () => {
    await assert.rejects(https('GET', '/health', undefined));
    await assert.rejects(https('GET', '/health', pki.foreign));
    // The client checks the server too: a client trusting another CA refuses the manager.
    await assert.rejects(https('GET', '/health', pki.clientA, undefined, { ca: (await import('node:fs')).readFileSync(path.join(dir, 'other-ca.crt')) }), /self-signed|unable to verify|certificate/i);
  });

  test('HTTPS: admin API needs an allow-listed certificate and an admin key', async () => {
    const ok = await https('GET', '/instances', pki.clientA, KEYS.ops);
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body.map((i: { name: string }) => i.name), ['emb-a', 'emb-b']);
    assert.equal((await https('GET', '/instances/emb-a', pki.clientS, KEYS.ops)).status, 200);
    const outside = await https('GET', '/instances', pki.clientB, KEYS.ops);
    assert.equal(outside.status, 401);
    assert.equal(outside.body.code, 'UNAUTHENTICATED');
    assert.match(outside.body.error, /CN=client-b/);
    const noKey = await https('GET', '/instances', pki.clientA);
    assertErrorCode(noKey, 401, 'UNAUTHENTICATED');
    assert.equal(noKey.headers['www-authenticate'], 'Bearer realm="teiplex"');
    assertErrorCode(await https('GET', '/instances', pki.clientA, 'wrong'), 401, 'UNAUTHENTICATED');
    const notAdmin = await https('POST', '/instances/emb-a/stop', pki.clientA, KEYS.any);
    assert.equal(notAdmin.status, 403);
    assert.equal(notAdmin.body.code, 'PERMISSION_DENIED');
    // The catalog and the config reload are admin routes too.
    for (const [method, route] of [['POST', '/models'], ['GET', '/models'], ['POST', '/config/reload'], ['GET', '/memory']]) {
      const r = await https(method, route, pki.clientA, KEYS.any, method === 'POST' ? { body: { model_id: 'org/x' } } : undefined);
      assertErrorCode(r, 403, 'PERMISSION_DENIED', `${method} ${route}`);
    }
    assert.equal((await https('GET', '/models', pki.clientA, KEYS.ops)).status, 200);
  });

  test('HTTPS: data-plane paths need a key; health and metrics stay open; refused gRPC calls are counted', async () => {
    assertErrorCode(await https('POST', '/v1/embeddings', pki.clientA, undefined, { body: { model: 'emb-a', input: 'x' } }), 401, 'UNAUTHENTICATED', 'no key');
    assertErrorCode(await https('POST', '/v1/embeddings', pki.clientB, KEYS.any, { body: { model: 'emb-a', input: 'x' } }), 401, 'UNAUTHENTICATED', 'outside the allow-lists');
    const health = await https('GET', '/health', pki.clientB);
    assert.deepEqual([health.status, health.body], [200, { status: 'ok' }]);
    const metrics = await https('GET', '/metrics', pki.clientB);
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /teiplex_requests_total\{instance="",model="",method="Embed",code="UNAUTHENTICATED"\} [1-9]/);
    assert.match(metrics.body, /teiplex_requests_total\{instance="",model="",method="Embed",code="PERMISSION_DENIED"\} [1-9]/);
  });
});

describe('API keys without TLS; health and metrics closed; admin API open', () => {
  let m: ManagerProcess;
  let grpcPort: number;
  before(async () => {
    const file = path.join(dir, 'keys.toml');
    await writeFile(
      file,
      `${baseToml('keys')}
[auth]
open_health = false
open_metrics = false
admin_requires_key = false

[[auth.api_keys]]
name = "k"
key_sha256 = "${sha256Hex(KEYS.any)}"
`,
    );
    m = await startManager(file);
    grpcPort = Number(m.ready.grpc_port);
  });
  after(async () => {
    if (m) assert.equal(await m.stop(), 0);
  });

  test('HTTP', async () => {
    const get = (p: string, key?: string) => http(m.apiPort, 'GET', p, { key });
    assertErrorCode(await get('/health'), 401, 'UNAUTHENTICATED', '/health');
    assert.equal((await get('/health', KEYS.any)).status, 200);
    assertErrorCode(await get('/metrics'), 401, 'UNAUTHENTICATED', '/metrics');
    assert.equal((await get('/metrics', KEYS.any)).status, 200);
    assert.equal((await get('/instances')).status, 200);
    assert.equal((await get('/docs/json')).status, 200, 'the OpenAPI document follows open_reflection (open)');
  });

  test('gRPC: health needs the key, reflection stays open, ListInstances needs the key', async () => {
    const H = grpc.makeClientConstructor(healthService as unknown as grpc.ServiceDefinition, 'grpc.health.v1.Health');
    const h = new H(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure()) as AnyClient;
    const Mux = muxClient();
    const c = new Mux(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure()) as AnyClient;
    try {
      await assert.rejects(call(h, 'Check', { service: '' }), refused(status.UNAUTHENTICATED, 'UNAUTHENTICATED'));
      assert.equal((await call(h, 'Check', { service: '' }, KEYS.any)).status, 'SERVING');
      await assert.rejects(call(c, 'ListInstances', {}), refused(status.UNAUTHENTICATED, 'UNAUTHENTICATED'));
      assert.deepEqual((await call(c, 'ListInstances', {}, KEYS.any)).instances ?? [], []);
    } finally {
      h.close();
      c.close();
    }
  });
});

test('an unreadable certificate file: exit 2 naming the file, before anything starts', async () => {
  const file = path.join(dir, 'bad.toml');
  const missing = path.join(dir, 'nope.crt');
  await writeFile(file, `${baseToml('bad')}\n[auth.mtls]\nserver_cert = ${JSON.stringify(missing)}\nserver_key = ${JSON.stringify(pki.server.key)}\nclient_ca = ${JSON.stringify(pki.ca.cert)}\n`);
  const r = spawnSync(process.execPath, [projectPath('bin', 'teiplex.js'), 'serve', '--config', file], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, new RegExp(`auth\\.mtls\\.server_cert: cannot read '${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'`));
  assert.doesNotMatch(r.stdout, /"ready"/);
});
