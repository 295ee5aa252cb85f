/**
 * Bounded work per HTTP request (real manager, real router and command children, raw sockets):
 * - a client that sends nothing, or headers and then its body a byte at a time, is answered 408
 *   and disconnected after http_request_timeout_secs; an idle keep-alive connection is closed;
 * - after a 401 or a 413 the connection is closed (its unread body is not waited for);
 * - /embed_all whose answer would exceed http_response_limit_mb is 413 naming the limit; a large
 *   /embed_all answer is streamed while /health keeps answering (many times before the answer is
 *   done), and a client that stops reading it is disconnected after http_send_timeout_secs;
 * - cold-start waiters: their bodies count against cold_start_queue_mb (over it: 503
 *   COLD_START_QUEUE_FULL), and a waiter whose client went away leaves the queue;
 * - DELETE /models/{name} and unload while the replica is starting return at once, SIGTERM the
 *   starting child, and no new child is spawned.
 * What is asserted is what happened, in order: who closed a connection (the server, before the
 * client gave up), what it answered, how often /health answered while another request was being
 * handled. Waits are bounded; the bounds guard against a hang and are not the assertion.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { encodeTexts } from '../../../src/arrow/embedding-batch.js';
import { sha256Hex } from '../../../src/auth/api-keys.js';
import { client, instanceToml, writeConfig } from '../../helpers/data-plane.js';
import { startManager, type ManagerProcess } from '../../helpers/manager-process.js';
import { testModel } from '../../helpers/models.js';
import { errorCode, mux } from '../../helpers/mux-client.js';
import { elapse, until as poll } from '../../helpers/wait.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-bounded-http-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface RawResult {
  /** Who closed the connection: the server, or the client when it gave up waiting. */
  closedBy: 'server' | 'client';
  /** ms from connecting until the server closed the connection (for lower bounds only). */
  closedAfterMs: number | undefined;
  text: string;
}

/** A raw TCP client: `send` drives it; resolves when the server closes it, or when the client gives up after `giveUpMs`. */
function raw(port: number, send: (s: net.Socket) => void, giveUpMs: number): Promise<RawResult> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    let text = '';
    const s = net.connect(port, '127.0.0.1', () => send(s));
    s.setEncoding('utf8');
    s.on('data', (d: string) => (text += d));
    s.on('error', () => undefined);
    const timer = setTimeout(() => {
      resolve({ closedBy: 'client', closedAfterMs: undefined, text });
      s.destroy();
    }, giveUpMs);
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ closedBy: 'server', closedAfterMs: Date.now() - t0, text });
    });
  });
}

/**
 * Poll the manager's /health back to back (20 ms apart) from a process of its own until `done`
 * settles: the number of 200 answers it got meanwhile. A poller of its own, so that what this
 * test process does meanwhile (decoding a 170 MB answer at once, its GC) is not counted as the
 * manager's.
 */
async function healthAnswersWhile(port: number, done: Promise<unknown>): Promise<number> {
  const script = `
    const http = require('node:http');
    let answered = 0, stop = false;
    process.stdin.on('end', () => (stop = true)).resume();
    const poll = () => {
      if (stop) return process.stdout.write(JSON.stringify({ answered }), () => process.exit(0));
      http.get({ host: '127.0.0.1', port: ${port}, path: '/health' }, (res) => {
        res.resume();
        res.on('end', () => { if (res.statusCode === 200 && !stop) answered++; setTimeout(poll, 20); });
      }).on('error', () => setTimeout(poll, 20));
    };
    poll();`;
  const poller = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  poller.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => poller.once('exit', () => resolve()));
  await done.catch(() => undefined);
  poller.stdin.end();
  await exited;
  return (JSON.parse(out) as { answered: number }).answered;
}

/**
 * The kernel's state of the server's end of a loopback IPv4 TCP connection, local port `server`,
 * remote port `client` (Linux /proc/net/tcp): '01' established, '04' FIN_WAIT1 (the server closed
 * it; its FIN waits behind the answer the client has not read), undefined when gone. The client,
 * reading nothing, cannot see that close itself: the FIN only reaches it after the unread bytes.
 */
function serverTcpState(server: number, client: number): string | undefined {
  const hex = (p: number) => `:${p.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(hex(server)) && f[2]?.endsWith(hex(client))) return f[3];
  }
  return undefined;
}

/** `p`, or a failure when it has not settled after `ms`: a guard against a hang, far above what is expected. */
function hangGuard<T>(what: string, p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer after ${ms} ms`)), ms);
  });
  return Promise.race([p, guard]).finally(() => clearTimeout(timer));
}

const KEY = 'bounded-http-key';

describe('connections: request timeouts, keep-alive, closed after 401 and 413, answer limit', () => {
  let m: ManagerProcess;
  let port: number;

  before(async () => {
    const model = await testModel({ kind: 'embedding' });
    const sub = await mkdtemp(path.join(dir, 'conn-'));
    const file = await writeConfig(
      sub,
      `http_request_timeout_secs = 3
http_keep_alive_timeout_secs = 1
http_body_limit_mb = 0.05
http_response_limit_mb = 0.25
max_request_inputs = 4096

[[auth.api_keys]]
name = "k"
key_sha256 = "${sha256Hex(KEY)}"
admin = true
`,
      instanceToml('emb', model),
    );
    m = await startManager(file);
    port = m.apiPort;
    const api = client(port, { authorization: `Bearer ${KEY}` });
    await poll('emb serving', async () => (await api.post('/embed', { inputs: 'ready?' })).status === 200, { timeoutMs: 120_000, everyMs: 200, context: () => m.output().slice(-3000) });
  });
  after(async () => {
    await m?.stop();
  });

  test('a client that sends nothing, partial headers, or its body a byte at a time: 408 and disconnected', async () => {
    const slowBody = (s: net.Socket) => {
      s.write(`POST /embed HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${KEY}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"inputs":"`);
      const t = setInterval(() => (s.writable ? s.write('a') : clearInterval(t)), 200);
      s.once('close', () => clearInterval(t));
    };
    // Each client gives up at 3 times http_request_timeout_secs (3 s): the server must close first.
    const pending = Promise.all([
      raw(port, () => undefined, 9000),
      raw(port, (s) => s.write('GET /health HTTP/1.1\r\nhost: x\r\n'), 9000),
      raw(port, slowBody, 9000),
    ]);
    // Meanwhile everyone else is served.
    const healthAnswers = await healthAnswersWhile(port, pending);
    const [silent, partial, slow] = await pending;
    for (const [name, r] of Object.entries({ silent, partial, slow })) {
      assert.equal(r.closedBy, 'server', `${name}: still connected when the client gave up (no request timeout): ${r.text}`);
      assert.match(r.text, /^HTTP\/1\.1 408 /, `${name}: ${r.text}`);
      assert.ok(r.closedAfterMs! >= 2500, `${name}: closed after ${r.closedAfterMs} ms, before http_request_timeout_secs (3 s)`);
    }
    assert.ok(healthAnswers >= 3, `/health answered ${healthAnswers} times while the slow clients were connected`);
  });

  test('an idle keep-alive connection is closed after http_keep_alive_timeout_secs', async () => {
    // The client gives up at 5 times http_keep_alive_timeout_secs (1 s): the server must close first.
    const r = await raw(port, (s) => s.write('GET /health HTTP/1.1\r\nhost: x\r\n\r\n'), 5000);
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    assert.equal(r.closedBy, 'server', 'the idle connection was still open when the client gave up');
  });

  test('after a 401 the connection is closed, its unsent body not waited for', async () => {
    // Headers announce a body that never comes: the refusal must not wait for it.
    const head = 'POST /v1/embeddings HTTP/1.1\r\nhost: x\r\nauthorization: Bearer wrong\r\ncontent-type: application/json\r\ncontent-length: 40000\r\n\r\n';
    // The client gives up when http_request_timeout_secs (3 s) runs out: a server that waited for
    // the body would close the connection only then, by its request timeout.
    const r = await raw(port, (s) => s.write(head), 3000);
    assert.match(r.text, /^HTTP\/1\.1 401 /, r.text);
    assert.match(r.text, /"code":"UNAUTHENTICATED"|"error_type":"unauthorized"|"type":"authentication_error"/, r.text);
    assert.match(r.text, /\r\nconnection: close\r\n/i);
    assert.equal(r.closedBy, 'server', 'the connection was still open when the request timeout ran out');
  });

  test('after a 413 (body over http_body_limit_mb) the connection is closed', async () => {
    const head = `POST /embed HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${KEY}\r\ncontent-type: application/json\r\ncontent-length: 10000000\r\n\r\n`;
    // As above: the client gives up when the request timeout (3 s) runs out.
    const r = await raw(port, (s) => s.write(head), 3000);
    assert.match(r.text, /^HTTP\/1\.1 413 /, r.text);
    assert.match(r.text, /"error_type":"payload_limit"/, r.text);
    assert.match(r.text, /http_body_limit_mb/);
    assert.match(r.text, /\r\nconnection: close\r\n/i);
    assert.equal(r.closedBy, 'server', 'the connection was still open when the request timeout ran out');
    // A 413 found after the body was read (too many inputs) closes it too.
    const body = JSON.stringify({ inputs: Array.from({ length: 4097 }, () => 'a') });
    const many = await raw(port, (s) => s.write(`POST /embed HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${KEY}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`), 3000);
    assert.match(many.text, /^HTTP\/1\.1 413 /, many.text);
    assert.match(many.text, /"error_type":"validation"/, many.text);
    assert.match(many.text, /max_request_inputs \(4096\)/);
    assert.equal(many.closedBy, 'server', 'the connection was still open when the request timeout ran out');
  });

  test('/embed_all whose answer would exceed http_response_limit_mb: 413 naming the limit', async () => {
    const api = client(port, { authorization: `Bearer ${KEY}` });
    const small = await api.post('/embed_all', { inputs: ['a few words'] });
    assert.equal(small.status, 200, JSON.stringify(small.body));
    const inputs = Array.from({ length: 2000 }, (_, i) => `w${i}`);
    // Refused as soon as the first chunks showed it (about 4 MB of answer for 2,000 inputs).
    const big = await api.post('/embed_all', { inputs });
    assert.equal(big.status, 413, JSON.stringify(big.body).slice(0, 300));
    assert.equal(big.body.error_type, 'payload_limit');
    assert.match(big.body.error, /http_response_limit_mb \(262144 bytes/);
    assert.match(big.headers.get('connection') ?? '', /close/);
    const enc = await api.post('/v1/encode/emb', { items: inputs.map((text) => ({ text })), output_types: ['multivector'] });
    assert.equal(enc.status, 413, JSON.stringify(enc.body).slice(0, 300));
    assert.equal(enc.body.error.code, 'payload_too_large');
    assert.match(enc.body.error.message, /http_response_limit_mb/);
  });
});

describe('/embed_all: a large answer is streamed while /health keeps answering', () => {
  let m: ManagerProcess;

  before(async () => {
    const model = await testModel({ kind: 'embedding' });
    const sub = await mkdtemp(path.join(dir, 'stream-'));
    const file = await writeConfig(sub, 'max_request_inputs = 2048\nhttp_body_limit_mb = 4\nhttp_response_limit_mb = 1024\nhttp_send_timeout_secs = 2', instanceToml('emb', model, 'max_batch_tokens = 65536\nmax_concurrent_requests = 2048\nextra_args = ["--max-client-batch-size", "256"]'));
    m = await startManager(file);
    await m.waitFor('emb', (i) => i.status === 'running', 120_000);
  });
  after(async () => {
    await m?.stop();
  });

  test('2,048 inputs of 128 tokens: the ~170 MB answer arrives whole, /health answers meanwhile', async () => {
    const text = Array.from({ length: 200 }, (_, i) => `w${i % 50}`).join(' ');
    const inputs = Array.from({ length: 2048 }, () => text);
    const answer = (async () => {
      const res = await fetch(`http://127.0.0.1:${m.apiPort}/embed_all`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ inputs, truncate: true }),
      });
      const body = await res.text();
      return { status: res.status, body, chunked: res.headers.get('transfer-encoding') };
    })();
    const healthAnswers = await healthAnswersWhile(m.apiPort, answer);
    const r = await answer;
    assert.equal(r.status, 200, r.body.slice(0, 300));
    assert.ok(healthAnswers >= 3, `/health answered ${healthAnswers} times while the answer was encoded and sent`);
    assert.equal(r.chunked, 'chunked', 'streamed, not built as one string');
    assert.ok(r.body.length > 50_000_000, `answer of ${r.body.length} bytes`);
    const rows = JSON.parse(r.body) as number[][][];
    assert.equal(rows.length, 2048);
    assert.equal(rows[2047].length, 128, 'truncated to the 128 tokens of the tiny model');
    assert.equal(rows[2047][0].length, 32);
  });

  test('a client that stops reading its answer is disconnected after http_send_timeout_secs', async () => {
    const text = Array.from({ length: 200 }, (_, i) => `w${i % 50}`).join(' ');
    const body = JSON.stringify({ inputs: Array.from({ length: 1024 }, () => text), truncate: true });
    let received = 0;
    let closed = false;
    const s = net.connect(m.apiPort, '127.0.0.1');
    s.on('error', () => undefined);
    s.on('close', () => (closed = true));
    const first = new Promise<string>((resolve) => s.once('data', (d: Buffer) => resolve(d.toString('latin1', 0, 12))));
    s.on('data', (d: Buffer) => (received += d.length));
    s.write(`POST /embed_all HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    try {
      // The answer (about 85 MB) has begun: read nothing more.
      assert.equal(await first, 'HTTP/1.1 200');
      s.pause();
      // Reading nothing until the server gives up: once the socket buffers are full it can send
      // nothing for http_send_timeout_secs (2 s) and closes its end of the connection.
      const port = s.localPort!;
      assert.equal(serverTcpState(m.apiPort, port), '01', 'the connection is seen in /proc/net/tcp');
      await poll('the server to close the connection while the client reads nothing', () => serverTcpState(m.apiPort, port) !== '01', { timeoutMs: 120_000, everyMs: 100, context: () => `${received} bytes received` });
      s.resume();
      await poll('the client to see the close', () => closed, { timeoutMs: 10_000, everyMs: 50, context: () => `${received} bytes received` });
      assert.ok(received < 40_000_000, `${received} bytes received: the answer was not abandoned`);
    } finally {
      s.destroy(); // on a failure too: an open connection would hold up the manager's stop
    }
  });
});

describe('cold starts: bytes bounded, waiters dropped on disconnect, delete and unload cancel a start', () => {
  let m: ManagerProcess;
  let marks: string;

  /** Lines the never-ready child wrote: "start <pid>" on start, "term <pid>" on SIGTERM. */
  const marked = async (model: string): Promise<string[]> =>
    (await readFile(path.join(marks, `${model}.log`), 'utf8').catch(() => ''))
      .split('\n')
      .filter((l) => l !== '');

  const info = async (name: string) => (await m.api('GET', `/models/${name}`)).body;

  const until = <T>(what: string, get: () => Promise<T>, pred: (x: T) => boolean, ms = 15_000): Promise<T> =>
    poll(
      what,
      async () => {
        const x = await get();
        return pred(x) ? x : undefined;
      },
      { timeoutMs: ms, everyMs: 50, context: () => m.output().slice(-2000) },
    );

  /** A data-plane request for `model` that waits; `abort` drops its connection. */
  function waiting(model: string, bodyBytes: number) {
    const body = JSON.stringify({ model, input: 'x'.repeat(Math.max(1, bodyBytes - 40)) });
    let status: number | undefined;
    let text = '';
    const req = httpRequest({ host: '127.0.0.1', port: m.apiPort, method: 'POST', path: '/v1/embeddings', headers: { 'content-type': 'application/json' } });
    const done = new Promise<void>((resolve) => {
      req.on('response', (res) => {
        status = res.statusCode;
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve());
      });
      req.on('error', () => resolve());
    });
    req.end(body);
    return { done, abort: () => req.destroy(), result: () => ({ status, text }) };
  }

  before(async () => {
    const sub = await mkdtemp(path.join(dir, 'cold-'));
    marks = sub;
    // A child that never gets ready: it logs its start and its SIGTERM.
    const script = path.join(sub, 'never-ready.sh');
    await writeFile(
      script,
      `#!/bin/sh
log="${sub}/$TEIPLEX_MODEL.log"
trap 'echo "term $$" >> "$log"; exit 0' TERM
echo "start $$" >> "$log"
while :; do sleep 0.05; done
`,
    );
    await chmod(script, 0o755);
    const model = (name: string) => `[[models]]\nname = "${name}"\nmodel_id = "org/${name}"\nruntime = "command"\ncommand = ${JSON.stringify(script)}\nenv = { TEIPLEX_MODEL = "${name}" }\n`;
    const file = await writeConfig(sub, 'cold_start_queue_mb = 1\ncold_start_timeout_secs = 120\nhttp_request_timeout_secs = 1', model('queue') + model('gone') + model('dropped'));
    m = await startManager(file);
  });
  after(async () => {
    await m?.stop();
  });

  test('bodies of waiters count against cold_start_queue_mb; a waiter whose client left is dropped', async () => {
    const a = waiting('queue', 600_000);
    await until('first waiter queued', () => info('queue'), (x) => x.waiting_requests === 1);
    // 600 KB more would make 1.2 MB > 1 MiB: refused at once.
    const b = waiting('queue', 600_000);
    await b.done;
    assert.equal(b.result().status, 503, b.result().text);
    assert.equal(JSON.parse(b.result().text).error.code, 'cold_start_queue_full');
    assert.match(b.result().text, /cold_start_queue_mb \(1\)/);
    const c = waiting('queue', 1000);
    await until('small waiter queued', () => info('queue'), (x) => x.waiting_requests === 2);
    a.abort();
    await until('the aborted waiter left the queue', () => info('queue'), (x) => x.waiting_requests === 1);
    // Its bytes went with it: another large body fits again.
    const d = waiting('queue', 600_000);
    await until('a large body fits again', () => info('queue'), (x) => x.waiting_requests === 2);
    c.abort();
    d.abort();
    await until('queue empty', () => info('queue'), (x) => x.waiting_requests === 0);
  });

  test('gRPC (unary, Arrow) waiters count their message bytes against cold_start_queue_mb and leave the queue when the client cancels', async () => {
    const c = mux(Number(m.ready.grpc_port));
    try {
      const target = { model_id: 'org/queue' };
      const calls: grpc.ClientUnaryCall[] = [];
      const results: Array<grpc.ServiceError | null> = [];
      const send = (method: 'Embed' | 'EmbedArrow', req: object) =>
        new Promise<void>((resolve) => {
          calls.push(c[method](req, (err: grpc.ServiceError | null) => (results.push(err), resolve())));
        });
      const a = send('Embed', { target, request: { inputs: 'x'.repeat(600_000) } });
      await until('unary waiter queued', () => info('queue'), (x) => x.waiting_requests === 1);
      // 600 KB more would exceed 1 MiB: refused at once, naming the limit.
      await send('EmbedArrow', { target, arrow_ipc: Buffer.from(encodeTexts(['y'.repeat(600_000)])) });
      assert.equal(results.at(-1)?.code, status.RESOURCE_EXHAUSTED, String(results.at(-1)?.details));
      assert.equal(errorCode(results.at(-1)), 'COLD_START_QUEUE_FULL');
      assert.match(String(results.at(-1)?.details), /cold_start_queue_mb \(1\)/);
      calls[0].cancel();
      await a;
      // Cancelled by this client: its own status, no code from the server.
      assert.equal(results[1]?.code, status.CANCELLED, String(results[1]?.details));
      assert.equal(errorCode(results[1]), undefined);
      await until('the cancelled waiter left the queue', () => info('queue'), (x) => x.waiting_requests === 0);
      // Its bytes went with it: a large Arrow request waits again, then leaves on cancel.
      const b = send('EmbedArrow', { target, arrow_ipc: Buffer.from(encodeTexts(['z'.repeat(600_000)])) });
      await until('Arrow waiter queued', () => info('queue'), (x) => x.waiting_requests === 1 || results.length === 3);
      assert.equal(results.length, 2, String(results.at(-1)?.details));
      calls.at(-1)!.cancel();
      await b;
      assert.equal(results.length, 3);
      assert.equal(results[2]?.code, status.CANCELLED, String(results[2]?.details));
      assert.equal(errorCode(results[2]), undefined);
      await until('queue empty', () => info('queue'), (x) => x.waiting_requests === 0);
    } finally {
      c.close();
    }
  });

  test('DELETE /models/{name} while its replica starts: prompt, the child gets SIGTERM, no new child', async () => {
    const w = waiting('gone', 1000);
    const starting = await until('replica starting', () => info('gone'), (x) => x.replicas.length === 1 && x.replicas[0].pid !== null);
    await until('child started', () => marked('gone'), (l) => l.length === 1);
    // A hang guard far under the start's own limit (cold_start_timeout_secs = 120): the DELETE does not wait for the start.
    const del = await hangGuard('DELETE /models/gone', m.api('DELETE', '/models/gone'), 30_000);
    assert.equal(del.status, 200, JSON.stringify(del.body));
    await w.done;
    assert.equal(w.result().status, 404, w.result().text);
    assert.equal(JSON.parse(w.result().text).error.code, 'model_not_found');
    assert.deepEqual(await marked('gone'), [`start ${starting.replicas[0].pid}`, `term ${starting.replicas[0].pid}`]);
    // A retry during or after the delete starts nothing.
    const retry = await client(m.apiPort).post('/v1/embeddings', { model: 'gone', input: 'again' });
    assert.equal(retry.status, 404, JSON.stringify(retry.body));
    assert.equal(retry.body.error.code, 'model_not_found');
    await elapse(1500, 'room for a respawn that must not come');
    assert.equal((await marked('gone')).length, 2, 'no new child was spawned');
    const instances = (await m.api('GET', '/instances')).body as Array<{ name: string }>;
    assert.ok(!JSON.stringify(instances).includes('gone-'), JSON.stringify(instances));
  });

  test('unload while the replica starts: prompt, SIGTERM, the waiter is answered, no retry', async () => {
    const w = waiting('dropped', 1000);
    const starting = await until('replica starting', () => info('dropped'), (x) => x.replicas.length === 1 && x.replicas[0].pid !== null);
    await until('child started', () => marked('dropped'), (l) => l.length === 1);
    // Waiting past http_request_timeout_secs (1 s) is not a slow request: its body has arrived.
    await elapse(2000, 'the waiter waits past http_request_timeout_secs (1 s)');
    assert.equal(w.result().status, undefined, `the waiter still waits: ${w.result().text}`);
    // A hang guard far under the start's own limit (cold_start_timeout_secs = 120).
    const un = await hangGuard('unload of dropped', m.api('POST', '/models/dropped/unload'), 30_000);
    assert.equal(un.status, 200, JSON.stringify(un.body));
    await w.done;
    assert.equal(w.result().status, 503, w.result().text);
    assert.equal(JSON.parse(w.result().text).error.code, 'instance_unavailable');
    assert.match(w.result().text, /unloaded while it was starting/);
    await elapse(1500, 'room for a second start that must not come');
    assert.deepEqual(await marked('dropped'), [`start ${starting.replicas[0].pid}`, `term ${starting.replicas[0].pid}`], 'no second start after the cancelled one');
    const after = await info('dropped');
    assert.deepEqual([after.state, after.replicas.length, after.failure], ['available', 0, null]);
  });
});
