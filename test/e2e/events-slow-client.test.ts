/**
 * The event streams' bound on a client that reads nothing (events_buffer_kb): over loopback, in
 * this process (src/http/event-stream.ts on a node:http server), one client that never reads and
 * one that does. Events are broadcast until the silent client's backlog passes the bound: it is
 * disconnected and counted, its slot freed, while the reading client keeps its stream and has every
 * event, in order. Also: the cap refuses one stream over events_max_streams with TOO_MANY_STREAMS,
 * and closeAll ends every stream and refuses new ones (UNHEALTHY).
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import type { TeiplexError } from '../../src/common/errors.js';
import { EventStreams } from '../../src/http/event-stream.js';
import { openEventStream, type EventStreamClient } from '../helpers/event-stream-client.js';
import { until } from '../helpers/wait.js';

const BUFFER = 64 * 1024;
const streams = new EventStreams({ maxStreams: 3, bufferBytes: BUFFER, keepAliveMs: 60_000 });
let server: Server;
let port: number;
const refusals: string[] = [];

before(async () => {
  server = createServer((_req, res) => {
    try {
      streams.start(res).send('hello', { n: -1 });
    } catch (err) {
      const code = (err as TeiplexError).code;
      refusals.push(code);
      res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ code }));
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
});

after(async () => {
  streams.closeAll();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

test('a client that reads nothing is disconnected past events_buffer_kb; a reading client keeps every event', { timeout: 120_000 }, async () => {
  const reader = await openEventStream(port, '/events');
  assert.equal(reader.status, 200);
  // The silent client: sends its request and never reads a byte of the answer.
  const silent: Socket = connect(port, '127.0.0.1');
  silent.pause();
  silent.on('error', () => undefined);
  silent.write('GET /events HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\n\r\n');
  await until('both streams open', () => streams.count === 2);

  const payload = 'x'.repeat(8 * 1024);
  let sent = 0;
  // Batches of 8 events; after each, the reader is allowed to catch up, so only the silent client falls behind.
  for (let batch = 0; batch < 5000 && streams.count === 2; batch++) {
    for (let k = 0; k < 8; k++) streams.broadcast('tick', { n: sent++, payload });
    await until('the reader has every event so far', () => reader.events.filter((e) => e.event === 'tick').length === sent, { everyMs: 1, timeoutMs: 5000, context: () => `sent ${sent}, reader has ${reader.events.length}, ended ${reader.ended}, open ${streams.count}, dropped ${streams.dropped}` });
  }
  assert.equal(streams.count, 1, 'the silent client was dropped');
  assert.equal(streams.dropped, 1);
  // The server closed the silent client's connection: only the reader's is left.
  await until('the silent client connection closed by the server', () => new Promise<boolean>((r) => server.getConnections((_e, n) => r(n === 1))));
  silent.destroy();
  // Far more was sent than the bound: it was the backlog, not the volume, that ended it.
  assert.ok(sent * payload.length > BUFFER, `${sent} events sent`);
  const ticks = reader.events.filter((e) => e.event === 'tick').map((e) => e.data.n);
  assert.deepEqual(ticks, [...Array(sent).keys()], 'the reader got every event, in order');
  assert.equal(reader.ended, undefined, 'the reader is still connected');
  streams.broadcast('tick', { n: sent, payload: '' });
  await until('the reader still receives', () => reader.events.at(-1)?.data.n === sent);
  reader.close();
  await until('the reader slot freed', () => streams.count === 0);
  assert.equal(streams.dropped, 1, 'a client that closed is not counted as dropped');
});

test('the cap, then closeAll: every stream ended cleanly and new ones refused', { timeout: 60_000 }, async () => {
  const open: EventStreamClient[] = [];
  for (let k = 0; k < 3; k++) open.push(await openEventStream(port, '/events'));
  assert.deepEqual(open.map((c) => c.status), [200, 200, 200]);
  await until('three streams counted', () => streams.count === 3);
  const over = await openEventStream(port, '/events');
  assert.equal(over.status, 503);
  assert.equal(over.body.code, 'TOO_MANY_STREAMS');
  streams.closeAll();
  assert.equal(streams.count, 0);
  await until('every client saw its stream end', () => open.every((c) => c.ended !== undefined));
  assert.deepEqual(open.map((c) => c.ended), ['end', 'end', 'end']);
  const late = await openEventStream(port, '/events');
  assert.equal(late.status, 503);
  assert.equal(late.body.code, 'UNHEALTHY');
  assert.deepEqual(refusals, ['TOO_MANY_STREAMS', 'UNHEALTHY']);
});
