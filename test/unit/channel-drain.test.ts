/**
 * What a stop drains (docs/manager.md#draining), against a bare in-process HTTP/2 server that
 * answers a call only when the test releases it: ChildChannel counts its calls in flight and
 * `whenIdle` resolves true once they are done, false after its bound; ChannelPool answers for THE
 * Instance object asked (none: idle at once), and when a name's entry is rebuilt for another
 * Instance object the old channel keeps its call and is closed only once idle.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { ChildChannel, frame, type ChildCallListener } from '../../src/child/child-channel.js';
import { ChannelPool } from '../../src/routing/channels.js';
import type { Instance } from '../../src/supervisor/instance.js';
import { until } from '../helpers/wait.js';

const settings = { maxMessageBytes: 1024 * 1024, keepaliveMs: 30_000, keepaliveTimeoutMs: 10_000 };

let server: http2.Http2Server;
let port: number;
/** Calls the server holds: answer one with `release()`. */
const held: Array<() => void> = [];

before(async () => {
  server = http2.createServer();
  server.on('stream', (stream) => {
    stream.on('data', () => undefined);
    held.push(() => {
      if (stream.destroyed) return;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(frame(Buffer.from('ok')));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
});

after(async () => {
  await new Promise((r) => server.close(r));
});

function release(): void {
  held.shift()?.();
}

function call(channel: ChildChannel): Promise<grpc.status> {
  return new Promise((resolve) => {
    const listener: ChildCallListener = { onHeaders: () => undefined, onMessage: () => undefined, onStatus: (s) => resolve(s.code) };
    channel.call('/test.Held/Call', Date.now() + 30_000, listener).end(Buffer.from('x'));
  });
}

function instance(name: string): Instance {
  return { name, spec: { name, model_id: 'm' }, placement: { port }, spawnGeneration: 1 } as unknown as Instance;
}

describe('draining: calls in flight per child', () => {
  test('ChildChannel: activeCalls, whenIdle false within its bound, true once the calls ended', async () => {
    const ch = new ChildChannel(port, settings);
    assert.equal(ch.activeCalls, 0);
    assert.equal(await ch.whenIdle(10), true, 'no call: idle at once');
    const a = call(ch);
    const b = call(ch);
    assert.equal(ch.activeCalls, 2);
    await until('the server holds both calls', () => held.length === 2);
    assert.equal(await ch.whenIdle(50), false, 'both still in flight');
    const idle = ch.whenIdle(30_000);
    release();
    assert.equal(await a, grpc.status.OK);
    assert.equal(ch.activeCalls, 1);
    release();
    assert.equal(await b, grpc.status.OK);
    assert.equal(await idle, true);
    assert.equal(ch.activeCalls, 0);
    ch.close();
  });

  test('ChannelPool: whenIdle for THAT Instance object; a replaced one keeps its call, then its channel is closed', async () => {
    const pool = new ChannelPool(settings, 30_000, 30_000);
    const old = instance('r');
    assert.equal(await pool.whenIdle(old, 10), true, 'no channel: idle at once');
    const oldChannel = pool.get(old);
    const inFlight = call(oldChannel);
    await until('the server holds the call', () => held.length === 1);
    assert.equal(pool.activeCalls(old), 1);
    // The name now belongs to another Instance object: a new channel, the old one retiring.
    const fresh = instance('r');
    const freshChannel = pool.get(fresh);
    assert.notEqual(freshChannel, oldChannel);
    assert.equal(pool.activeCalls(fresh), 0);
    assert.equal(pool.activeCalls(old), 1, 'the retiring channel still counts for the old object');
    assert.equal(await pool.whenIdle(old, 50), false);
    const idle = pool.whenIdle(old, 30_000);
    release();
    assert.equal(await inFlight, grpc.status.OK, 'the call on the replaced channel finished');
    assert.equal(await idle, true);
    await until('the retired channel is closed', async () => (await call(oldChannel)) === grpc.status.UNAVAILABLE);
    // The old object's child exits (drop by name): the new object's channel, with a child, stays.
    (fresh as unknown as { pid: number }).pid = 4242;
    pool.drop('r');
    assert.equal(pool.get(fresh), freshChannel);
    (fresh as unknown as { pid: number | undefined }).pid = undefined;
    pool.drop('r');
    assert.deepEqual(pool.names(), [], 'a childless instance: dropped');
    pool.closeAll();
  });

  test('ChannelPool: a new spawn generation of the same object closes the old channel at once', async () => {
    const pool = new ChannelPool(settings);
    const i = instance('g');
    const first = pool.get(i);
    const inFlight = call(first);
    await until('the server holds the call', () => held.length === 1);
    (i as unknown as { spawnGeneration: number }).spawnGeneration = 2;
    assert.notEqual(pool.get(i), first);
    assert.equal(await inFlight, grpc.status.UNAVAILABLE, 'the old child is gone: its channel closed');
    held.length = 0;
    pool.closeAll();
  });
});
