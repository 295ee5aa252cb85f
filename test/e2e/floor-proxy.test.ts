/**
 * bench/floor-proxy.ts, the bare node:http2 forwarding proxy of bench/front-ends.ts, as its own
 * process in front of real upstreams in this process: a grpc-js tei.v1.Embed server (answers,
 * headers and trailers, errors as trailers-only answers, a client's cancel reaching the server)
 * and a plain node:http2 server (an upstream reset reaching the client with its code).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { projectPath } from '../../src/common/paths.js';
import { serviceClient, serviceDefinition } from '../../src/tei/proto.js';
import { findReadyLine } from '../helpers/router-process.js';
import { until } from '../helpers/wait.js';

const procs: ChildProcess[] = [];

async function startProxy(upstreamPort: number): Promise<number> {
  const proc = spawn(process.execPath, ['--import', 'tsx', projectPath('bench', 'floor-proxy.ts'), '--upstream', `127.0.0.1:${upstreamPort}`], {
    cwd: projectPath(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.push(proc);
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const ready = await until('the floor proxy ready line (or its exit)', () => findReadyLine(out) ?? (proc.exitCode !== null && { exited: proc.exitCode }), {
    timeoutMs: 60_000,
    context: () => out,
  });
  if ('exited' in ready) throw new Error(`floor proxy did not start (exit code ${ready.exited}):\n${out}`);
  assert.equal(ready.pid, proc.pid, 'the ready line names the process to read /proc/<pid>/stat of');
  return Number(ready.port);
}

let server: grpc.Server;
let raw: http2.Http2Server;
let grpcProxy: number;
let rawProxy: number;
let client: grpc.Client & Record<string, any>;
const seen: { metadata?: grpc.Metadata; cancelled: number } = { cancelled: 0 };
let streamCancelled: () => void = () => {};

before(async () => {
  server = new grpc.Server();
  server.addService(serviceDefinition('tei.v1.Embed'), {
    Embed(call: grpc.ServerUnaryCall<{ inputs: string }, unknown>, cb: grpc.sendUnaryData<unknown>) {
      seen.metadata = call.metadata;
      if (call.request.inputs === 'fail') {
        const trailer = new grpc.Metadata();
        trailer.set('teiplex-error-code', 'VALIDATION');
        cb({ code: grpc.status.INVALID_ARGUMENT, details: 'input "fail" refused', metadata: trailer });
        return;
      }
      const md = new grpc.Metadata();
      md.set('x-header', 'h');
      call.sendMetadata(md);
      const trailer = new grpc.Metadata();
      trailer.set('x-trailer', 't');
      cb(null, { embeddings: [1, 2, 3] }, trailer);
    },
    EmbedStream(call: grpc.ServerDuplexStream<unknown, unknown>) {
      call.on('data', () => call.write({ embeddings: [1] }));
      call.on('cancelled', () => {
        seen.cancelled++;
        streamCancelled();
      });
    },
  });
  const grpcPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );
  raw = http2.createServer();
  raw.on('stream', (stream) => {
    stream.on('error', () => {}); // closing with an error code is reported on the closing side too
    stream.respond({ ':status': 200 });
    // A reset once the partial answer is on its way.
    stream.write('partial', () => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
  });
  await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
  [grpcProxy, rawProxy] = await Promise.all([startProxy(grpcPort), startProxy((raw.address() as AddressInfo).port)]);
  const Embed = serviceClient('tei.v1.Embed');
  client = new Embed(`127.0.0.1:${grpcProxy}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, any>;
});

after(async () => {
  client?.close();
  for (const p of procs) p.kill('SIGTERM');
  await Promise.all(procs.map((p) => (p.exitCode === null ? new Promise((r) => p.once('exit', r)) : undefined)));
  server?.forceShutdown();
  raw?.close();
});

test('a unary call: request metadata, the answer, response headers and trailers pass', async () => {
  const md = new grpc.Metadata();
  md.set('x-request', 'r');
  let headers: grpc.Metadata | undefined;
  let trailers!: Promise<grpc.Metadata>;
  const res = await new Promise<{ embeddings: number[] }>((resolve, reject) => {
    const call = client.Embed({ inputs: 'hello', truncate: true }, md, (err: Error | null, v: { embeddings: number[] }) => (err ? reject(err) : resolve(v)));
    call.on('metadata', (m: grpc.Metadata) => (headers = m));
    trailers = new Promise((r) => call.on('status', (s: grpc.StatusObject) => r(s.metadata)));
  });
  assert.deepEqual(res.embeddings, [1, 2, 3]);
  assert.deepEqual(seen.metadata?.get('x-request'), ['r']);
  assert.deepEqual(headers?.get('x-header'), ['h']);
  assert.deepEqual((await trailers).get('x-trailer'), ['t']);
});

test('a gRPC error (a trailers-only answer) reaches the client with its code, message and trailers', async () => {
  const err = await new Promise<grpc.ServiceError>((resolve) => client.Embed({ inputs: 'fail' }, (e: grpc.ServiceError) => resolve(e)));
  assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
  assert.equal(err.details, 'input "fail" refused');
  assert.deepEqual(err.metadata.get('teiplex-error-code'), ['VALIDATION']);
});

test("the client's cancel reaches the upstream server", async () => {
  const cancelled = new Promise<void>((r) => (streamCancelled = r));
  const call = client.EmbedStream() as grpc.ClientDuplexStream<unknown, unknown>;
  call.on('error', () => {});
  await new Promise<void>((resolve) => {
    call.once('data', () => resolve());
    call.write({ inputs: 'one' });
  });
  call.cancel();
  await cancelled;
  assert.equal(seen.cancelled, 1);
});

test("the upstream's reset reaches the client with its code", async () => {
  const session = http2.connect(`http://127.0.0.1:${rawProxy}`);
  try {
    const req = session.request({ ':method': 'POST', ':path': '/x' });
    req.write('body'); // the request stays open, so the upstream's close is a reset (not an END_STREAM)
    req.resume();
    req.on('error', () => {});
    await new Promise((r) => req.once('close', r));
    assert.equal(req.rstCode, http2.constants.NGHTTP2_INTERNAL_ERROR);
  } finally {
    session.close();
  }
});
