/**
 * The multiplexer's child channel (src/mux/child-channel.ts) against in-process servers: a grpc-js
 * server with raw-bytes methods, a bare HTTP/2 server, and a TCP proxy that can freeze (a hung
 * child). Messages byte for byte in order (large ones split across DATA frames), headers and
 * trailers (binary ones too), percent-encoded status messages, deadlines sent as grpc-timeout and
 * enforced locally, the answer size limit, HTTP errors, refused and dropped connections, keepalive.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { ChildChannel, grpcTimeout, type ChildCallListener } from '../../src/child/child-channel.js';
import { until } from '../helpers/wait.js';

const id = (b: Buffer): Buffer => b;
const method = (path: string, requestStream: boolean, responseStream: boolean): grpc.MethodDefinition<Buffer, Buffer> => ({
  path,
  requestStream,
  responseStream,
  requestSerialize: id,
  requestDeserialize: id,
  responseSerialize: id,
  responseDeserialize: id,
});

interface Outcome {
  headers?: grpc.Metadata;
  messages: Buffer[];
  status: grpc.StatusObject;
}

/** A call's listener, its outcome once it ends, and what it has seen so far (`seen`). */
function collect(): { listener: ChildCallListener; done: Promise<Outcome>; seen: Partial<Outcome> & { messages: Buffer[] } } {
  const out: Partial<Outcome> & { messages: Buffer[] } = { messages: [] };
  let resolve!: (o: Outcome) => void;
  const done = new Promise<Outcome>((r) => (resolve = r));
  let statuses = 0;
  return {
    listener: {
      onHeaders: (md) => (out.headers = md),
      onMessage: (m) => out.messages.push(Buffer.from(m)),
      onStatus: (s) => {
        assert.equal(++statuses, 1, 'one status per call');
        out.status = s;
        resolve(out as Outcome);
      },
    },
    done,
    seen: out,
  };
}

const settings = { maxMessageBytes: 4 * 1024 * 1024, keepaliveMs: 30_000, keepaliveTimeoutMs: 10_000 };

let server: grpc.Server;
let port: number;
let lastDeadline: grpc.Deadline | undefined;
/** When the server's Echo handler ran (Date.now()). */
let lastEchoAt = 0;
let neverCalls = 0;

before(async () => {
  server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024, 'grpc.max_send_message_length': 64 * 1024 * 1024 });
  server.addService(
    {
      Echo: method('/t.T/Echo', false, false),
      Fail: method('/t.T/Fail', false, false),
      Never: method('/t.T/Never', false, false),
      Big: method('/t.T/Big', false, false),
      Chat: method('/t.T/Chat', true, true),
    },
    {
      Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        lastDeadline = call.getDeadline();
        lastEchoAt = Date.now();
        const md = new grpc.Metadata();
        md.set('x-head', 'h1');
        call.sendMetadata(md);
        const trailers = new grpc.Metadata();
        trailers.set('x-trail', 't1');
        trailers.set('x-trail-bin', Buffer.from([0, 1, 2, 255]));
        cb(null, Buffer.concat([Buffer.from('echo:'), call.request]), trailers);
      },
      Fail: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        const md = new grpc.Metadata();
        md.set('x-why', 'because');
        cb({ code: grpc.status.FAILED_PRECONDITION, details: 'bad: 100% ünïcode, "quoted"\nsecond line', metadata: md });
      },
      Never: (call: grpc.ServerUnaryCall<Buffer, Buffer>) => {
        neverCalls++;
        lastDeadline = call.getDeadline();
      },
      Big: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.alloc(call.request.readUInt32LE(0), 7)),
      Chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        call.on('data', (b: Buffer) => call.write(Buffer.concat([b, b])));
        call.on('end', () => call.end());
      },
    },
  );
  port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
});

after(() => {
  server.forceShutdown();
});

describe('child channel', () => {
  test('grpc-timeout encoding', () => {
    assert.equal(grpcTimeout(1500), '1500m');
    assert.equal(grpcTimeout(0.2), '1m');
    assert.equal(grpcTimeout(99_999_999), '99999999m');
    assert.equal(grpcTimeout(100_000_000), '100000S');
    assert.equal(grpcTimeout(Number.MAX_SAFE_INTEGER).endsWith('H'), true);
  });

  test('unary: message, headers, trailers (binary too), deadline sent as grpc-timeout', async () => {
    const ch = new ChildChannel(port, settings);
    try {
      // A connection first, so the deadline check below measures one call's transit, not a connect.
      const warm = collect();
      ch.call('/t.T/Fail', Infinity, warm.listener).end(Buffer.alloc(0));
      await warm.done;
      const { listener, done } = collect();
      const sentAt = Date.now();
      const deadline = sentAt + 5000;
      ch.call('/t.T/Echo', deadline, listener).end(Buffer.from('hi'));
      const o = await done;
      assert.equal(o.status.code, grpc.status.OK, o.status.details);
      assert.deepEqual(o.messages, [Buffer.from('echo:hi')]);
      assert.deepEqual(o.headers?.get('x-head'), ['h1']);
      assert.equal(o.headers?.get('content-type').length, 0, 'transport headers left out');
      assert.deepEqual(o.status.metadata.get('x-trail'), ['t1']);
      assert.deepEqual(o.status.metadata.get('x-trail-bin'), [Buffer.from([0, 1, 2, 255])]);
      // The child's deadline is its receipt time plus the grpc-timeout sent: the deadline asked for,
      // moved later by at most the time between sending and the handler running (+1 ms rounding).
      const seen = lastDeadline instanceof Date ? lastDeadline.getTime() : Number(lastDeadline);
      assert.ok(seen >= deadline - 1 && seen <= deadline + (lastEchoAt - sentAt) + 1, `the child saw the deadline ${seen - deadline} ms from the one sent (handler ran ${lastEchoAt - sentAt} ms after sending)`);
      // An empty request, and no deadline.
      const second = collect();
      ch.call('/t.T/Echo', Infinity, second.listener).end(Buffer.alloc(0));
      assert.deepEqual((await second.done).messages, [Buffer.from('echo:')]);
      assert.equal(lastDeadline, Infinity);
    } finally {
      ch.close();
    }
  });

  test('an error status: code, percent-decoded message, trailers', async () => {
    const ch = new ChildChannel(port, settings);
    try {
      const { listener, done } = collect();
      ch.call('/t.T/Fail', Infinity, listener).end(Buffer.from('x'));
      const o = await done;
      assert.equal(o.status.code, grpc.status.FAILED_PRECONDITION);
      assert.equal(o.status.details, 'bad: 100% ünïcode, "quoted"\nsecond line');
      assert.deepEqual(o.status.metadata.get('x-why'), ['because']);
      assert.deepEqual(o.messages, []);
      // An unknown method: the child's UNIMPLEMENTED.
      const u = collect();
      ch.call('/t.T/Nope', Infinity, u.listener).end(Buffer.from('x'));
      assert.equal((await u.done).status.code, grpc.status.UNIMPLEMENTED);
    } finally {
      ch.close();
    }
  });

  test('bidirectional stream: answers in order, large messages across frames, many calls on one connection', async () => {
    const ch = new ChildChannel(port, settings);
    try {
      const sizes = [0, 1, 5, 70_000, 1_000_000, 3];
      const { listener, done } = collect();
      const call = ch.call('/t.T/Chat', Infinity, listener);
      const sent = sizes.map((n, i) => Buffer.alloc(n, i + 1));
      for (const b of sent) call.write(b);
      call.end();
      const o = await done;
      assert.equal(o.status.code, grpc.status.OK, o.status.details);
      assert.deepEqual(
        o.messages.map((m) => m.length),
        sent.map((b) => 2 * b.length),
      );
      o.messages.forEach((m, i) => assert.ok(m.equals(Buffer.concat([sent[i], sent[i]])), `message ${i}`));
      const many = await Promise.all(
        Array.from({ length: 50 }, (_, i) => {
          const c = collect();
          ch.call('/t.T/Echo', Infinity, c.listener).end(Buffer.from(String(i)));
          return c.done;
        }),
      );
      many.forEach((o2, i) => assert.deepEqual(o2.messages, [Buffer.from(`echo:${i}`)]));
    } finally {
      ch.close();
    }
  });

  test('answer over the size limit: RESOURCE_EXHAUSTED; request over it: not sent', async () => {
    const ch = new ChildChannel(port, { ...settings, maxMessageBytes: 100_000 });
    try {
      const size = Buffer.alloc(4);
      size.writeUInt32LE(100_001);
      const big = collect();
      ch.call('/t.T/Big', Infinity, big.listener).end(size);
      const o = await big.done;
      assert.equal(o.status.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.match(o.status.details, /Received message larger than max \(100001 vs\. 100000\)/);
      size.writeUInt32LE(100_000);
      const fits = collect();
      ch.call('/t.T/Big', Infinity, fits.listener).end(size);
      assert.equal((await fits.done).messages[0].length, 100_000);
      const req = collect();
      ch.call('/t.T/Echo', Infinity, req.listener).end(Buffer.alloc(100_001));
      assert.equal((await req.done).status.code, grpc.status.RESOURCE_EXHAUSTED);
    } finally {
      ch.close();
    }
  });

  test('deadline: DEADLINE_EXCEEDED when the child does not answer in time; the connection stays usable', async () => {
    const ch = new ChildChannel(port, settings);
    try {
      const t0 = Date.now();
      const { listener, done } = collect();
      ch.call('/t.T/Never', Date.now() + 300, listener).end(Buffer.from('x'));
      const o = await done;
      assert.equal(o.status.code, grpc.status.DEADLINE_EXCEEDED);
      assert.ok(Date.now() - t0 >= 250, `${Date.now() - t0} ms`);
      const past = collect();
      ch.call('/t.T/Echo', Date.now() - 1, past.listener).end(Buffer.from('x'));
      assert.equal((await past.done).status.code, grpc.status.DEADLINE_EXCEEDED);
      const ok = collect();
      ch.call('/t.T/Echo', Infinity, ok.listener).end(Buffer.from('x'));
      assert.equal((await ok.done).status.code, grpc.status.OK);
    } finally {
      ch.close();
    }
  });

  test('cancel: CANCELLED once, the child sees the cancellation', async () => {
    const ch = new ChildChannel(port, settings);
    try {
      const { listener, done } = collect();
      const call = ch.call('/t.T/Chat', Infinity, listener);
      call.write(Buffer.from('a'));
      call.cancel();
      call.cancel();
      assert.equal((await done).status.code, grpc.status.CANCELLED);
    } finally {
      ch.close();
    }
  });

  test('nothing listening: UNAVAILABLE; closing the channel ends calls in flight with UNAVAILABLE', async () => {
    const free = await new Promise<number>((res) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => res(p));
      });
    });
    const dead = new ChildChannel(free, settings);
    const { listener, done } = collect();
    dead.call('/t.T/Echo', Infinity, listener).end(Buffer.from('x'));
    const o = await done;
    assert.equal(o.status.code, grpc.status.UNAVAILABLE, o.status.details);
    assert.match(o.status.details, /ECONNREFUSED/);
    dead.close();

    const ch = new ChildChannel(port, settings);
    const pending = collect();
    const nevers = neverCalls;
    ch.call('/t.T/Never', Infinity, pending.listener).end(Buffer.from('x'));
    await until('the call to reach the server', () => neverCalls > nevers);
    ch.close();
    assert.equal((await pending.done).status.code, grpc.status.UNAVAILABLE);
    const after = collect();
    ch.call('/t.T/Echo', Infinity, after.listener).end(Buffer.from('x'));
    assert.equal((await after.done).status.code, grpc.status.UNAVAILABLE, 'a closed channel takes no calls');
  });

  test('an HTTP error status maps as gRPC maps it', async () => {
    const h2 = http2.createServer();
    h2.on('stream', (stream) => {
      stream.respond({ ':status': 503 });
      stream.end();
    });
    await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r));
    const ch = new ChildChannel((h2.address() as net.AddressInfo).port, settings);
    try {
      const { listener, done } = collect();
      ch.call('/t.T/Echo', Infinity, listener).end(Buffer.from('x'));
      const o = await done;
      assert.equal(o.status.code, grpc.status.UNAVAILABLE);
      assert.match(o.status.details, /HTTP status code 503/);
    } finally {
      ch.close();
      h2.close();
    }
  });

  test('a hung child: keepalive notices it (UNAVAILABLE without a deadline); a child that dies: UNAVAILABLE', async () => {
    // A TCP proxy in front of the server that can stop forwarding (the child hangs) or cut (it dies).
    let frozen = false;
    const sockets: net.Socket[] = [];
    const proxy = net.createServer((a) => {
      const b = net.connect(port, '127.0.0.1');
      sockets.push(a, b);
      a.on('data', (d) => frozen || b.write(d));
      b.on('data', (d) => frozen || a.write(d));
      a.on('error', () => undefined);
      b.on('error', () => undefined);
      a.on('close', () => b.destroy());
      b.on('close', () => a.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const proxyPort = (proxy.address() as net.AddressInfo).port;
    const ch = new ChildChannel(proxyPort, { ...settings, keepaliveMs: 200, keepaliveTimeoutMs: 300 });
    try {
      const warm = collect();
      ch.call('/t.T/Echo', Infinity, warm.listener).end(Buffer.from('x'));
      assert.equal((await warm.done).status.code, grpc.status.OK);
      frozen = true;
      const hung = collect();
      ch.call('/t.T/Echo', Infinity, hung.listener).end(Buffer.from('x'));
      // No deadline: only keepalive can end this call.
      const o = await until('keepalive to end the hung call', () => hung.seen.status && (hung.seen as Outcome), { timeoutMs: 30_000 });
      assert.equal(o.status.code, grpc.status.UNAVAILABLE, o.status.details);
      assert.match(o.status.details, /keepalive/);
      frozen = false;
      // A new connection is made for the next call; then the child dies mid-stream.
      const stream = collect();
      const call = ch.call('/t.T/Chat', Infinity, stream.listener);
      call.write(Buffer.from('a'));
      await until('the first answer of the stream', () => stream.seen.messages.length === 1);
      for (const s of sockets) s.destroy();
      const died = await stream.done;
      assert.equal(died.status.code, grpc.status.UNAVAILABLE, died.status.details);
      assert.deepEqual(died.messages, [Buffer.from('aa')]);
    } finally {
      ch.close();
      proxy.close();
    }
  });
});
