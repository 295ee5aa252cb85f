/**
 * `teiplex bench` end to end: the real CLI (bin/teiplex.js -> dist/, so `npm run build` first)
 * against real `teiplex router` children (tiny generated models) and a real `teiplex serve`:
 * every mode, --sparse, --duration and --warmup, failures counted by code (too-long input with
 * truncation off, wrong model type, missing API key), TLS/mTLS against loopback servers with
 * certificates made at run time, and bad flags -> exit 2. Speed is never asserted.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { encodeDense, encodeSparse } from '../../src/arrow/embedding-batch.js';
import { readTextColumn } from '../../src/arrow/text-batch.js';
import { benchServiceDefinition, MUX_SERVICE } from '../../src/bench/grpc-client.js';
import { resolveOptions } from '../../src/cli/bench.js';
import { FlagError } from '../../src/common/flags.js';
import { serviceDefinition } from '../../src/tei/proto.js';
import { startManager, type ManagerProcess, loopbackConfig } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { runCli, startRouterProcess, type RouterProcess } from '../helpers/router-process.js';

const API_KEY = 'bench-test-key';

interface Report {
  mode: string;
  target: string | null;
  endpoint: string;
  num_texts: number;
  batch_size: number;
  concurrency: number;
  num_requests: number;
  total_duration_secs: number;
  throughput_per_sec: number;
  requests_per_sec: number;
  latency_ms: { p50: number; p90: number; p99: number; max: number; mean: number } | null;
  successful: number;
  failed: number;
  errors: Record<string, number>;
  error_messages: Record<string, string>;
  [k: string]: unknown;
}

/** Run `teiplex bench ...args`; it must exit 0 with one JSON object on stdout. */
async function bench(args: string[]): Promise<Report> {
  const r = await runCli(['bench', '--no-progress', ...args]);
  assert.equal(r.code, 0, `teiplex bench ${args.join(' ')} exited ${r.code}:\n${r.stderr}`);
  return JSON.parse(r.stdout) as Report;
}

/** Everything sent, everything answered, and the report's numbers consistent. */
function assertAllOk(r: Report, texts: number, requests: number): void {
  assert.deepEqual(r.errors, {}, JSON.stringify(r.error_messages));
  assert.equal(r.failed, 0);
  assert.equal(r.successful, texts);
  assert.equal(r.num_texts, texts);
  assert.equal(r.num_requests, requests);
  assert.ok(r.total_duration_secs > 0 && r.throughput_per_sec > 0 && r.requests_per_sec > 0);
  const l = r.latency_ms!;
  assert.ok(l.p50 > 0 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max && l.mean <= l.max, JSON.stringify(l));
}

let dir: string;
let dense: RouterProcess;
let splade: RouterProcess;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-bench-'));
  const [denseModel, spladeModel] = await Promise.all([testModel({ kind: 'embedding' }), testModel({ kind: 'splade' })]);
  [dense, splade] = await Promise.all([
    startRouterProcess(['--model-id', denseModel, '--http-port', '0', '--api-key', API_KEY]),
    startRouterProcess(['--model-id', spladeModel, '--http-port', '0', '--pooling', 'splade']),
  ]);
});

after(async () => {
  await Promise.all([dense?.stop(), splade?.stop()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('against a router child', () => {
  const grpcAt = () => `127.0.0.1:${dense.grpcPort}`;
  const httpAt = () => `http://127.0.0.1:${dense.httpPort}`;

  test('--direct standard: one unary tei.v1 Embed per text; the report has every field', async () => {
    const r = await bench(['-e', grpcAt(), '--direct', '-n', '40', '-c', '4', '--api-key', API_KEY]);
    assertAllOk(r, 40, 40);
    assert.equal(r.mode, 'standard');
    assert.equal(r.target, null);
    assert.equal(r.batch_size, 1);
    assert.equal(r.concurrency, 4);
    for (const k of ['endpoint', 'successful_requests', 'failed_requests', 'errors', 'error_messages', 'texts_source', 'warmup_requests', 'duration_secs']) {
      assert.ok(k in r, `report field ${k}`);
    }
  });

  test('--direct stream: one EmbedStream of --batch-size messages per request', async () => {
    const r = await bench(['-e', grpcAt(), '--direct', '-m', 'stream', '-n', '40', '-b', '8', '-c', '2', '--api-key', API_KEY]);
    assertAllOk(r, 40, 5);
    assert.equal(r.batch_size, 8);
  });

  test('--mode http: TEI /embed with --batch-size inputs; the target goes in the body as model', async () => {
    const r = await bench(['-e', httpAt(), '-m', 'http', '-n', '40', '-b', '8', '-c', '2', '-i', 'any-name', '--api-key', API_KEY]);
    assertAllOk(r, 40, 5);
    assert.equal(r.target, 'instance_name:any-name');
  });

  test('--mode openai: /v1/embeddings, float and base64', async () => {
    // OpenAI's body has no `truncate` (the router's --auto-truncate decides, off here): short texts.
    const file = path.join(dir, 'short.txt');
    await writeFile(file, 'one short text\nanother one\na third, a little longer than the others\n');
    for (const format of ['float', 'base64']) {
      const r = await bench(['-e', httpAt(), '-m', 'openai', '--texts', file, '-n', '30', '-b', '10', '-c', '3', '--encoding-format', format, '--api-key', API_KEY]);
      assertAllOk(r, 30, 3);
    }
  });

  test('--duration cycles through the texts until time is up; --warmup requests are not counted', async () => {
    const r = await bench(['-e', grpcAt(), '--direct', '-n', '5', '-c', '2', '--duration', '0.4', '--warmup', '3', '--api-key', API_KEY]);
    assert.equal(r.duration_secs, 0.4);
    assert.equal(r.warmup_requests, 3);
    assert.ok(r.total_duration_secs >= 0.4, String(r.total_duration_secs));
    assert.ok(r.num_texts > 5, `cycled past the 5 texts: ${r.num_texts}`);
    assert.equal(r.failed, 0);
    assert.equal(r.successful, r.num_texts);
  });

  test('--sparse against a SPLADE model: EmbedSparse (direct) and /embed_sparse', async () => {
    const viaGrpc = await bench(['-e', `127.0.0.1:${splade.grpcPort}`, '--direct', '--sparse', '-n', '20', '-c', '2']);
    assertAllOk(viaGrpc, 20, 20);
    const viaStream = await bench(['-e', `127.0.0.1:${splade.grpcPort}`, '--direct', '--sparse', '-m', 'stream', '-n', '20', '-b', '10', '-c', '2']);
    assertAllOk(viaStream, 20, 2);
    const viaHttp = await bench(['-e', `127.0.0.1:${splade.httpPort}`, '-m', 'http', '--sparse', '-n', '20', '-b', '5', '-c', '2']);
    assertAllOk(viaHttp, 20, 4);
  });

  test('--direct arrow: teiplex.v1.Batch calls of at most 256 rows to the child, overloaded chunks sent again (one call of 600 rows would pass its 512-input limit, two requests of 600 its permits)', async () => {
    const r = await bench(['-e', grpcAt(), '--direct', '-m', 'arrow', '-n', '1200', '-b', '600', '-c', '2', '--api-key', API_KEY]);
    assertAllOk(r, 1200, 2);
    assert.equal(r.mode, 'arrow');
    assert.equal(r.direct, true);
    assert.equal(r.batch_size, 600);
    // 270 rows: two Batch calls (256 + 14); one request, so only the counts are checked.
    const sparse = await bench(['-e', `127.0.0.1:${splade.grpcPort}`, '--direct', '--sparse', '-m', 'arrow', '-n', '270', '-b', '270', '-c', '1']);
    assert.deepEqual(sparse.errors, {}, JSON.stringify(sparse.error_messages));
    assert.equal(sparse.successful, 270);
    assert.equal(sparse.num_requests, 1);
    // EmbedBatch (dense) on a SPLADE model: the router refuses it, and every text counts as failed.
    const wrongType = await bench(['-e', `127.0.0.1:${splade.grpcPort}`, '--direct', '-m', 'arrow', '-n', '10', '-b', '10', '-c', '1']);
    assert.equal(wrongType.failed, 10);
    assert.equal(wrongType.successful, 0);
  });

  test('failed requests are counted by code, and the run still exits 0', async () => {
    // A text far past the tiny model's 128 tokens, between two short ones, with truncation off.
    const file = path.join(dir, 'texts.txt');
    await writeFile(file, ['a short text', Array.from({ length: 400 }, (_, i) => `word${i}`).join(' '), '', 'another short text', ''].join('\n'));
    const tooLong = await bench(['-e', grpcAt(), '--direct', '--texts', file, '--no-truncate', '-c', '1', '--api-key', API_KEY]);
    assert.equal(tooLong.num_texts, 3, 'blank lines are not texts');
    assert.equal(tooLong.successful, 2);
    assert.equal(tooLong.failed, 1);
    assert.deepEqual(tooLong.errors, { INVALID_ARGUMENT: 1 });
    assert.match(tooLong.error_messages.INVALID_ARGUMENT!, /128/);
    const viaHttp = await bench(['-e', httpAt(), '-m', 'http', '--texts', file, '--no-truncate', '-b', '1', '-c', '1', '--api-key', API_KEY]);
    assert.deepEqual(viaHttp.errors, { HTTP_422: 1 });

    // EmbedSparse on a dense embedding model: the router refuses it.
    const wrongType = await bench(['-e', grpcAt(), '--direct', '--sparse', '-n', '6', '-c', '2', '--api-key', API_KEY]);
    assert.equal(wrongType.failed, 6);
    assert.deepEqual(wrongType.errors, { FAILED_PRECONDITION: 6 });
    assert.equal(wrongType.latency_ms, null, 'no successful request, no latency');

    // No API key.
    const noKey = await bench(['-e', grpcAt(), '--direct', '-n', '4', '-c', '2']);
    assert.deepEqual(noKey.errors, { UNAUTHENTICATED: 4 });
    const noKeyHttp = await bench(['-e', httpAt(), '-m', 'http', '-n', '4', '-b', '2', '-c', '2']);
    assert.deepEqual(noKeyHttp.errors, { HTTP_401: 2 });
    assert.equal(noKeyHttp.failed, 4, 'failed counts texts, errors count requests');
  });
});

describe('bad flags', () => {
  test('exit 2 with a message naming the flag', async () => {
    for (const [args, message] of [
      [['--no-such-flag'], /no-such-flag/],
      [['-m', 'carrier-pigeon', '--direct'], /--mode must be one of standard, stream, arrow, http, openai/],
      [['-m', 'arrow', '-n', '10'], /needs a target/],
    ] as const) {
      const r = await runCli(['bench', ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(r.stdout, '');
    }
  });

  test('conflicting or out-of-range flags are refused before anything is sent', async () => {
    const refuse = async (args: string[], message: RegExp): Promise<void> => {
      await assert.rejects(resolveOptions(args, {}, () => {}), (err: unknown) => err instanceof FlagError && message.test(err.message), args.join(' '));
    };
    await refuse(['--direct', '-m', 'http'], /--direct works with --mode standard, stream or arrow/);
    await refuse(['--direct', '-m', 'openai'], /--direct works with --mode standard, stream or arrow/);
    await refuse(['--direct', '-m', 'arrow', '--noop'], /--noop is answered by the multiplexer/);
    await refuse(['--direct', '-m', 'arrow', '--no-compress'], /--no-compress is for Arrow bodies/);
    await refuse(['-i', 'a', '--model', 'b'], /give one target/);
    await refuse(['-i', 'a', '--noop'], /--noop is for --mode arrow/);
    await refuse(['-m', 'openai', '--sparse'], /--sparse has no OpenAI route/);
    await refuse(['-m', 'http', '--instance-index', '0'], /--instance-index is for gRPC modes/);
    await refuse(['-i', 'a', '-n', '0'], /--num-texts must be an integer >= 1/);
    await refuse(['-i', 'a', '-c', 'many'], /--concurrency must be an integer >= 1/);
    await refuse(['-i', 'a', '--duration', '0'], /--duration must be a number > 0/);
    await refuse(['-e', 'https://127.0.0.1:1', '-i', 'a', '--cert', 'c.pem'], /--cert and --key go together/);
    await refuse(['-e', '127.0.0.1:1', '-i', 'a', '--ca', 'ca.pem'], /need an https:\/\/ endpoint/);
    await refuse(['-e', 'ftp://x:1', '-i', 'a'], /scheme must be http/);
    await refuse(['-i', 'a', '--texts', path.join(dir, 'missing.txt')], /--texts: cannot read/);
    await refuse(['-m', 'http', '--encoding-format', 'base64'], /--encoding-format is for --mode openai/);
  });

  test('defaults and tei-manager parity: -b in standard mode without -c is the concurrency', async () => {
    const notes: string[] = [];
    const o = await resolveOptions(['-i', 'x', '-b', '7', '-n', '3'], { TEIPLEX_API_KEY: 'from-env' }, (m) => notes.push(m));
    assert.ok(o !== 'help');
    assert.equal(o.concurrency, 7);
    assert.match(notes.join('\n'), /sets the concurrency/);
    assert.equal(o.apiKey, 'from-env');
    assert.equal(o.endpoint.authority, '127.0.0.1:9001');
    assert.deepEqual(o.target, { kind: 'instance_name', value: 'x' });
    assert.equal(o.texts.length, 3);
    const h = await resolveOptions(['-m', 'http', '-e', 'https://example.test/base/'], {}, () => {});
    assert.ok(h !== 'help');
    assert.deepEqual([h.endpoint.origin, h.endpoint.basePath, h.endpoint.tls], ['https://example.test:443', '/base', true]);
  });
});

describe('TLS and mTLS (loopback servers, certificates made at run time)', () => {
  let certs: Record<'ca' | 'serverCert' | 'serverKey' | 'clientCert' | 'clientKey', string>;
  let grpcServer: grpc.Server;
  let grpcPort: number;
  let httpsServer: HttpsServer;
  let httpsPort: number;

  before(async () => {
    const tls = path.join(dir, 'tls');
    execFileSync('mkdir', ['-p', tls]);
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: tls, stdio: 'pipe' });
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=bench test CA');
    for (const [name, san] of [['server', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], ['client', 'extendedKeyUsage=clientAuth']]) {
      await writeFile(path.join(tls, `${name}.ext`), `${san}\n`);
      ssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
      ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '1', '-extfile', `${name}.ext`);
    }
    certs = {
      ca: path.join(tls, 'ca.pem'),
      serverCert: path.join(tls, 'server.pem'),
      serverKey: path.join(tls, 'server.key'),
      clientCert: path.join(tls, 'client.pem'),
      clientKey: path.join(tls, 'client.key'),
    };
    const [ca, cert, key] = await Promise.all([readFile(certs.ca), readFile(certs.serverCert), readFile(certs.serverKey)]);

    // tei.v1 Embed over mTLS: a fixed vector for every text.
    grpcServer = new grpc.Server();
    grpcServer.addService(serviceDefinition('tei.v1.Embed'), {
      Embed: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { embeddings: [0.6, 0.8] }),
    });
    grpcPort = await new Promise<number>((resolve, reject) =>
      grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], true), (err, port) => (err ? reject(err) : resolve(port))),
    );

    // TEI's /embed over mTLS, with an API key.
    httpsServer = createHttpsServer({ ca, cert, key, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (d: string) => (body += d));
      req.on('end', () => {
        if (req.headers.authorization !== `Bearer ${API_KEY}`) {
          res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'no key', error_type: 'unauthorized' }));
          return;
        }
        const { inputs } = JSON.parse(body) as { inputs: string[] };
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(inputs.map(() => [0.6, 0.8])));
      });
    });
    await new Promise<void>((resolve) => httpsServer.listen(0, '127.0.0.1', resolve));
    httpsPort = (httpsServer.address() as AddressInfo).port;
  });

  after(async () => {
    grpcServer?.forceShutdown();
    await new Promise((resolve) => (httpsServer ? httpsServer.close(resolve) : resolve(undefined)));
  });

  test('gRPC: https:// with --ca --cert --key succeeds; without a client certificate the handshake fails', async () => {
    const tls = ['-e', `https://127.0.0.1:${grpcPort}`, '--direct', '-n', '10', '-c', '2', '--ca', certs.ca, '--connect-timeout', '0.5'];
    assertAllOk(await bench([...tls, '--cert', certs.clientCert, '--key', certs.clientKey]), 10, 10);
    const noClientCert = await bench(tls);
    assert.equal(noClientCert.successful, 0);
    assert.deepEqual(Object.keys(noClientCert.errors), ['UNAVAILABLE']);
  });

  test('HTTP: https:// with --ca --cert --key and --api-key succeeds; an unknown server CA fails', async () => {
    const base = ['-e', `https://127.0.0.1:${httpsPort}`, '-m', 'http', '-n', '12', '-b', '4', '-c', '2', '--cert', certs.clientCert, '--key', certs.clientKey];
    assertAllOk(await bench([...base, '--ca', certs.ca, '--api-key', API_KEY]), 12, 3);
    const untrusted = await bench([...base, '--api-key', API_KEY]);
    assert.equal(untrusted.successful, 0);
    assert.equal(untrusted.failed, 12);
    assert.match(Object.keys(untrusted.errors).join(), /CERT|VERIFY/, 'the TLS error code is counted');
  });
});

describe('arrow mode against a stand-in multiplexer', () => {
  // Until the multiplexer's own Arrow RPCs land: a TeiMultiplexer server that reads the text
  // column and answers one row per text (one row short when a text says so).
  let server: grpc.Server;
  let at: string;
  const seen: Array<{ method: string; target: unknown; rows: number; noop: boolean; truncate: boolean }> = [];

  before(async () => {
    server = new grpc.Server();
    const handler =
      (method: string) =>
      (call: grpc.ServerUnaryCall<{ target: unknown; arrow_ipc: Buffer; noop?: boolean; truncate?: boolean }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        const texts = readTextColumn(call.request.arrow_ipc);
        seen.push({ method, target: call.request.target, rows: texts.length, noop: call.request.noop ?? false, truncate: call.request.truncate ?? false });
        const rows = texts.includes('answer one row short') ? texts.length - 1 : texts.length;
        const ipc = method === 'EmbedArrow' ? encodeDense(new Float32Array(rows * 4), 4) : encodeSparse(Array.from({ length: rows }, () => ({ indices: Uint32Array.of(7), values: Float32Array.of(0.5) })));
        cb(null, { arrow_ipc: Buffer.from(ipc) });
      };
    server.addService(benchServiceDefinition(MUX_SERVICE), { EmbedArrow: handler('EmbedArrow'), EmbedSparseArrow: handler('EmbedSparseArrow') });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    at = `127.0.0.1:${port}`;
  });

  after(() => server?.forceShutdown());

  test('EmbedArrow batches of --batch-size rows with the target; --noop and --no-compress pass through', async () => {
    assertAllOk(await bench(['-e', at, '-i', 'emb', '-m', 'arrow', '-n', '50', '-b', '20', '-c', '2']), 50, 3);
    assert.deepEqual(
      seen.map((s) => s.rows).sort((a, b) => a - b),
      [10, 20, 20],
    );
    assert.deepEqual(seen[0]!.target, { instance_name: 'emb', routing: 'instance_name' });
    assert.ok(seen.every((s) => s.method === 'EmbedArrow' && !s.noop && s.truncate));
    seen.length = 0;
    assertAllOk(await bench(['-e', at, '--instance-index', '0', '-m', 'arrow', '--sparse', '--noop', '--no-compress', '-n', '10', '-b', '5', '-c', '1']), 10, 2);
    assert.ok(seen.every((s) => s.method === 'EmbedSparseArrow' && s.noop), JSON.stringify(seen));
    assert.deepEqual(seen[0]!.target, { instance_index: 0, routing: 'instance_index' });
  });

  test('an answer with fewer rows than texts is a failure (BAD_RESPONSE), not a success', async () => {
    const file = path.join(dir, 'short-answer.txt');
    await writeFile(file, 'fine\nanswer one row short\nfine too\n');
    const r = await bench(['-e', at, '-i', 'emb', '-m', 'arrow', '--texts', file, '-b', '1', '-c', '1']);
    assert.deepEqual(r.errors, { BAD_RESPONSE: 1 });
    assert.match(r.error_messages.BAD_RESPONSE!, /EmbedArrow: 0 results for 1 texts/);
    assert.equal(r.successful, 2);
  });
});

describe('through the multiplexer (teiplex serve)', () => {
  let m: ManagerProcess;
  let muxAt: string;

  before(async () => {
    const file = path.join(dir, 'manager.toml');
    await writeFile(
      file,
      `${loopbackConfig(dir)}arrow_allow_noop = true
[[instances]]
name = "emb"
model_id = ${JSON.stringify(await testModel({ kind: 'embedding' }))}
`,
    );
    m = await startManager(file);
    await m.waitFor('emb', (i) => i.status === 'running', 120_000);
    muxAt = `127.0.0.1:${Number(m.ready.grpc_port)}`;
  });

  after(async () => {
    await m?.stop();
  });

  test('standard mode by instance name, stream mode by model id', async () => {
    assertAllOk(await bench(['-e', muxAt, '-i', 'emb', '-n', '30', '-c', '4']), 30, 30);
    const byModel = await bench(['-e', muxAt, '--model', await testModel({ kind: 'embedding' }), '-m', 'stream', '-n', '30', '-b', '10', '-c', '2']);
    assertAllOk(byModel, 30, 3);
    const unknown = await bench(['-e', muxAt, '-i', 'nope', '-n', '3', '-c', '1']);
    assert.deepEqual(unknown.errors, { NOT_FOUND: 3 });
  });

  test('arrow mode: EmbedArrow batches of --batch-size rows', async () => {
    const r = await bench(['-e', muxAt, '-i', 'emb', '-m', 'arrow', '-n', '50', '-b', '20', '-c', '2']);
    assertAllOk(r, 50, 3);
    const noop = await bench(['-e', muxAt, '-i', 'emb', '-m', 'arrow', '--noop', '-n', '50', '-b', '25', '-c', '1']);
    assertAllOk(noop, 50, 2);
  });
});
