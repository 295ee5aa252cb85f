/**
 * mTLS refuses client certificates that chain to the right CA but must not be taken
 * (docs/security.md: "certificate from another CA, expired, or not for client use: the handshake
 * fails"), on the gRPC multiplexer and the HTTPS listener of a real `teiplex serve`: an expired
 * client certificate and a serverAuth-only one (extendedKeyUsage without clientAuth), both from
 * the configured client CA. A valid client certificate from the same CA is the control.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { makeCa, makeLeaf, pem, type Pem } from '../helpers/test-certs.js';

let dir: string;
let m: ManagerProcess;
let caPem: Buffer;
const certs: Record<'valid' | 'expired' | 'serverOnly', Pem> = {} as never;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-tls-certs-'));
  const ca = makeCa(dir, 'ca');
  const server = makeLeaf(dir, 'server', ca, '/CN=localhost', ['IP:127.0.0.1', 'DNS:localhost'], 'serverAuth');
  certs.valid = pem(makeLeaf(dir, 'valid', ca, '/CN=client-valid', [], 'clientAuth'));
  certs.expired = pem(makeLeaf(dir, 'expired', ca, '/CN=client-expired', [], 'clientAuth', -1));
  certs.serverOnly = pem(makeLeaf(dir, 'server-only', ca, '/CN=client-server-only', [], 'serverAuth'));
  caPem = readFileSync(ca.cert);
  const file = path.join(dir, 'manager.toml');
  await writeFile(
    file,
    `${loopbackConfig(dir)}
[auth.mtls]
server_cert = ${JSON.stringify(server.cert)}
server_key = ${JSON.stringify(server.key)}
client_ca = ${JSON.stringify(ca.cert)}
`,
  );
  m = await startManager(file);
});

after(async () => {
  if (m) assert.equal(await m.stop(), 0, 'the manager stops cleanly');
  await rm(dir, { recursive: true, force: true });
});

/** grpc.health.v1 Check over TLS with `client`'s certificate: the status, or the error. */
function grpcCheck(client: Pem): Promise<{ status?: string; error?: grpc.ServiceError }> {
  const Ctor = grpc.makeClientConstructor(healthService as unknown as grpc.ServiceDefinition, 'grpc.health.v1.Health');
  const c = new Ctor(`127.0.0.1:${m.ready.grpc_port}`, grpc.credentials.createSsl(caPem, client.key, client.cert)) as grpc.Client & Record<string, any>;
  return new Promise<{ status?: string; error?: grpc.ServiceError }>((resolve) => {
    c.Check({ service: '' }, new grpc.Metadata(), { deadline: Date.now() + 20_000 }, (error: grpc.ServiceError | null, res: { status: string }) => resolve(error ? { error } : { status: res.status }));
  }).finally(() => c.close());
}

/** GET /health over HTTPS with `client`'s certificate: the status, or the error. */
function httpsHealth(client: Pem): Promise<{ status?: number; error?: Error }> {
  return new Promise((resolve) => {
    const req = httpsRequest({ host: '127.0.0.1', port: m.apiPort, path: '/health', ca: caPem, cert: client.cert, key: client.key, servername: 'localhost', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode }));
    });
    req.on('error', (error) => resolve({ error }));
    req.setTimeout(20_000, () => req.destroy(new Error('no answer in 20 s')));
    req.end();
  });
}

describe('mTLS: client certificates from the right CA that must not be taken', () => {
  test('control: a valid client certificate is served (gRPC health SERVING, HTTPS /health 200)', async () => {
    const g = await grpcCheck(certs.valid);
    assert.equal(g.status, 'SERVING', g.error?.details);
    const h = await httpsHealth(certs.valid);
    assert.equal(h.status, 200, h.error?.message);
  });

  for (const [name, which] of [
    ['expired', 'expired'],
    ['serverAuth only (not for client use)', 'serverOnly'],
  ] as const) {
    test(`${name}: the handshake fails (gRPC UNAVAILABLE, no gRPC status from the server; HTTPS: a connection error, no HTTP status)`, async () => {
      const g = await grpcCheck(certs[which]);
      assert.equal(g.status, undefined, 'the gRPC call was served');
      assert.equal(g.error?.code, grpc.status.UNAVAILABLE, `${g.error && grpc.status[g.error.code]}: ${g.error?.details}`);
      assert.deepEqual(g.error?.metadata.get('teiplex-error-code'), [], 'no teiplex status: the connection itself was refused');
      const h = await httpsHealth(certs[which]);
      assert.equal(h.status, undefined, `HTTPS answered ${h.status}`);
      assert.ok(h.error instanceof Error);
    });
  }
});
