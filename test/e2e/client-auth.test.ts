/**
 * TeiplexClient and AdminClient on a manager with mTLS and API keys (real manager, a real router
 * child): a client with the CA, an allowed client certificate and a key is served on both
 * transports and on the admin API (an admin key there); a missing or unknown key is refused
 * UNAUTHENTICATED / 401 and a key outside its restriction PERMISSION_DENIED / 403, as typed
 * errors never retried; no client certificate fails the handshake (CONNECTION_FAILED); a
 * certificate outside the allow-list is UNAUTHENTICATED. The auth-free cases are in
 * client-data-plane.test.ts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AdminClient } from '../../src/client/admin.js';
import { ConnectionError, ForbiddenError, UnauthorizedError } from '../../src/client/errors.js';
import type { Transport } from '../../src/client/inference-types.js';
import type { ClientOptions, RetryEvent } from '../../src/client/options.js';
import { TeiplexClient } from '../../src/client/teiplex-client.js';
import { expectClientError } from '../helpers/client-errors.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { makeTestPki, type TestPki, mtlsToml } from '../helpers/test-certs.js';
import { until } from '../helpers/wait.js';

const KEYS = { ops: 'client-ops-secret', data: 'client-data-secret', team: 'client-team-secret' } as const;
const sha = (k: string) => createHash('sha256').update(k).digest('hex');
const TRANSPORTS: Transport[] = ['grpc', 'http'];

describe('the client with mTLS and API keys', () => {
  let dir: string;
  let pki: TestPki;
  let m: ManagerProcess;
  const retries: RetryEvent[] = [];
  const open: Array<{ close(): Promise<void> }> = [];

  /** A client of this manager over TLS with `opts` (default: the CA and client-a's certificate). */
  function make(opts: ClientOptions & { transport?: Transport } = {}): TeiplexClient {
    const c = new TeiplexClient({
      url: `https://127.0.0.1:${m.apiPort}`,
      grpcUrl: `https://127.0.0.1:${m.ready.grpc_port}`,
      tls: { ca: pki.caPem, cert: pki.clientA.cert, key: pki.clientA.key },
      retry: { attempts: 3, baseDelayMs: 1 },
      onRetry: (e) => retries.push(e),
      ...opts,
    });
    open.push(c);
    return c;
  }

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teiplex-client-auth-'));
    pki = makeTestPki(dir);
    const model = await testModel({ kind: 'embedding', seed: 331 });
    const file = path.join(dir, 'manager.toml');
    await writeFile(
      file,
      `${loopbackConfig(dir)}startup_timeout_secs = 120
[[instances]]
name = "emb"
model_id = ${JSON.stringify(model)}

${mtlsToml(pki, `allowed_subjects = ["CN=client-a,O=acme"]
`)}

[[auth.api_keys]]
name = "ops"
key_sha256 = "${sha(KEYS.ops)}"
admin = true

[[auth.api_keys]]
name = "data"
key_sha256 = "${sha(KEYS.data)}"

[[auth.api_keys]]
name = "team"
key_sha256 = "${sha(KEYS.team)}"
instances = ["emb"]
`,
    );
    m = await startManager(file);
    const ops = new AdminClient({ url: `https://127.0.0.1:${m.apiPort}`, apiKey: KEYS.ops, tls: { ca: pki.caPem, cert: pki.clientA.cert, key: pki.clientA.key } });
    open.push(ops);
    await until('emb running', async () => (await ops.instance('emb')).status === 'running', { timeoutMs: 120_000 });
  });

  after(async () => {
    for (const c of open) await c.close();
    await m?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('the right certificate and key: served on both transports; the admin API with an admin key', async () => {
    const c = make({ apiKey: KEYS.data });
    const g = await c.embed('emb', 'over tls');
    const h = await c.embed('emb', 'over tls', { transport: 'http' });
    assert.equal(g.length, h.length);
    assert.ok(g.every((x, i) => Math.abs(x - h[i]!) < 1e-5));
    assert.deepEqual((await c.instances()).map((i) => i.name), ['emb']);
    // /health is open; the rest of the admin API needs an admin key.
    assert.deepEqual(await c.admin.health(), { status: 'ok' });
    retries.length = 0;
    await expectClientError(c.admin.instances(), ForbiddenError, { code: 'PERMISSION_DENIED', status: 403 });
    assert.deepEqual(retries, [], 'a 403 is not retried');
    const ops = make({ apiKey: KEYS.ops });
    assert.equal((await ops.admin.instance('emb')).status, 'running');
    // The server's name checked against `servername` (the certificate names localhost and 127.0.0.1).
    const named = make({ apiKey: KEYS.data, tls: { ca: pki.caPem, cert: pki.clientA.cert, key: pki.clientA.key, servername: 'localhost' } });
    assert.equal((await named.embed('emb', 'by name', { transport: 'http' })).length, g.length);
    assert.equal((await named.embed('emb', 'by name')).length, g.length);
  });

  test('no key or an unknown key: UNAUTHENTICATED / 401, not retried', async () => {
    for (const apiKey of [undefined, 'not-a-key']) {
      const c = make(apiKey === undefined ? {} : { apiKey });
      retries.length = 0;
      await expectClientError(c.embed('emb', 'x'), UnauthorizedError, { code: 'UNAUTHENTICATED', grpcCode: 16 });
      await expectClientError(c.embed('emb', 'x', { transport: 'http' }), UnauthorizedError, { code: 'UNAUTHENTICATED', status: 401 });
      await expectClientError(c.admin.instances(), UnauthorizedError, { code: 'UNAUTHENTICATED', status: 401 });
      assert.deepEqual(retries, []);
    }
  });

  test('a key outside its restriction: PERMISSION_DENIED / 403', async () => {
    const c = make({ apiKey: KEYS.team });
    assert.ok((await c.embed({ instance: 'emb' }, 'allowed')).length > 0);
    await expectClientError(c.embed({ instance: 'other' }, 'x'), ForbiddenError, { code: 'PERMISSION_DENIED', grpcCode: 7, message: /may use/ });
    await expectClientError(c.embed('other', 'x', { transport: 'http' }), ForbiddenError, { code: 'PERMISSION_DENIED', status: 403 });
  });

  test('no client certificate: the handshake fails (CONNECTION_FAILED); a certificate outside the allow-list: UNAUTHENTICATED', async () => {
    const bare = make({ apiKey: KEYS.data, tls: { ca: pki.caPem }, retry: { attempts: 1 } });
    for (const transport of TRANSPORTS) await expectClientError(bare.embed('emb', 'x', { transport }), ConnectionError, { code: 'CONNECTION_FAILED' });
    const other = make({ apiKey: KEYS.data, tls: { ca: pki.caPem, cert: pki.clientB.cert, key: pki.clientB.key } });
    await expectClientError(other.embed('emb', 'x'), UnauthorizedError, { code: 'UNAUTHENTICATED', grpcCode: 16, message: /client-b/ });
    await expectClientError(other.embed('emb', 'x', { transport: 'http' }), UnauthorizedError, { code: 'UNAUTHENTICATED', status: 401 });
    // Without the private CA the server's certificate is not trusted.
    const untrusting = make({ apiKey: KEYS.data, tls: { cert: pki.clientA.cert, key: pki.clientA.key }, retry: { attempts: 1 } });
    await expectClientError(untrusting.embed('emb', 'x', { transport: 'http' }), ConnectionError, { code: 'CONNECTION_FAILED', message: /certificate/i });
  });
});
