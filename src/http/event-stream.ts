/**
 * Server-sent event streams (text/event-stream) on the manager's listener, with their bounds:
 *
 * - `events_max_streams`: at most this many streams are open at once (all clients together); one
 *   more is refused with 503 TOO_MANY_STREAMS (Retry-After) before any byte of a stream is sent.
 * - `events_buffer_kb`: the bytes written to one client and not yet taken by its connection,
 *   judged just after the socket took what it could of a tick's writes. A client that reads
 *   nothing (or too slowly for what happens) is disconnected once its backlog passes this: never
 *   buffered without bound. The client may reconnect and gets a fresh snapshot.
 * - `events_keep_alive_secs`: a stream with nothing to send gets a `: keep-alive` comment this
 *   often, so proxies and the client can tell an idle stream from a dead one.
 * - `closeAll()` ends every stream at once (the manager's shutdown): a stream never holds the
 *   listener open.
 *
 * One event is `event: NAME\ndata: JSON\n\n` (the JSON has no newline in it); what the events are
 * is the caller's business (status-feed.ts, docs/status-page.md).
 */
import type { ServerResponse } from 'node:http';
import { TeiplexError } from '../common/errors.js';
import { DEFAULTS, type Config } from '../config/config.js';

export interface EventStreamLimits {
  maxStreams: number;
  bufferBytes: number;
  keepAliveMs: number;
}

export function eventStreamLimits(c: Pick<Config, 'events_max_streams' | 'events_buffer_kb' | 'events_keep_alive_secs'> = DEFAULTS): EventStreamLimits {
  return { maxStreams: c.events_max_streams, bufferBytes: c.events_buffer_kb * 1024, keepAliveMs: Math.max(1, Math.ceil(c.events_keep_alive_secs * 1000)) };
}

/** Why a stream ended: the client went, it fell behind, or the manager is stopping. */
export type StreamEnd = 'client closed' | 'client too slow' | 'shutdown';

/** One client's stream. */
export class EventStream {
  private ended = false;
  /** A backlog check is scheduled. */
  private checking = false;
  private timer: NodeJS.Timeout;
  private readonly onEnd = new Set<(why: StreamEnd) => void>();

  constructor(
    private readonly res: ServerResponse,
    private readonly limits: EventStreamLimits,
    private readonly release: (s: EventStream) => void,
  ) {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      // Proxies (nginx) must pass events on as they come.
      'x-accel-buffering': 'no',
    });
    res.flushHeaders();
    res.on('close', () => this.end('client closed'));
    this.timer = setInterval(() => this.write(': keep-alive\n\n'), limits.keepAliveMs);
    this.timer.unref();
  }

  get closed(): boolean {
    return this.ended;
  }

  /** Call `f` once when the stream ends (at once if it has). */
  whenEnded(f: (why: StreamEnd) => void): void {
    if (this.ended) f('client closed');
    else this.onEnd.add(f);
  }

  /** Send one event; false once the stream has ended. */
  send(event: string, data: unknown): boolean {
    return this.sendJson(event, JSON.stringify(data));
  }

  /** `send` with the data already as JSON text (one line). */
  sendJson(event: string, json: string): boolean {
    return this.write(`event: ${event}\ndata: ${json}\n\n`);
  }

  private write(text: string): boolean {
    if (this.ended) return false;
    this.res.write(text);
    // writableLength: what the connection has not taken yet. Writes of one tick are corked and
    // handed to the socket together after it, so the backlog is judged once the socket has taken
    // what it could (setImmediate): past the bound then, the client is dropped.
    if (!this.checking && this.res.writableLength > this.limits.bufferBytes) {
      this.checking = true;
      setImmediate(() => {
        this.checking = false;
        if (this.res.writableLength > this.limits.bufferBytes) this.end('client too slow');
      });
    }
    return true;
  }

  /** End the stream (idempotent): timers cleared, listeners told, the slot freed. */
  end(why: StreamEnd): void {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.timer);
    if (why === 'client too slow') this.res.destroy();
    else if (!this.res.writableEnded) this.res.end();
    this.release(this);
    for (const f of this.onEnd) f(why);
    this.onEnd.clear();
  }
}

/** The open streams of one listener, counted against `events_max_streams`. */
export class EventStreams {
  private readonly open = new Set<EventStream>();
  private closing = false;
  /** Clients disconnected for falling behind (`events_buffer_kb`), since start. */
  dropped = 0;

  constructor(readonly limits: EventStreamLimits) {}

  get count(): number {
    return this.open.size;
  }

  /** Start a stream on `res`, or throw TOO_MANY_STREAMS (or UNHEALTHY while shutting down). */
  start(res: ServerResponse): EventStream {
    if (this.closing) throw new TeiplexError('UNHEALTHY', 'the manager is shutting down');
    if (this.open.size >= this.limits.maxStreams) {
      throw new TeiplexError('TOO_MANY_STREAMS', `${this.open.size} event streams are open, the most events_max_streams (${this.limits.maxStreams}) allows; retry later`);
    }
    const s = new EventStream(res, this.limits, (x) => this.open.delete(x));
    this.open.add(s);
    s.whenEnded((why) => {
      if (why === 'client too slow') this.dropped++;
    });
    return s;
  }

  /** Send one event to every open stream. */
  broadcast(event: string, data: unknown): void {
    if (this.open.size === 0) return;
    const json = JSON.stringify(data);
    for (const s of [...this.open]) s.sendJson(event, json);
  }

  /** End every stream now and refuse new ones (shutdown). */
  closeAll(): void {
    this.closing = true;
    for (const s of [...this.open]) s.end('shutdown');
  }
}
