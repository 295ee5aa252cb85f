/**
 * Getting one row per text from a child, in input order, for large row-wise requests (the Arrow
 * RPCs), by one of two paths:
 *
 * - Batch (fast path, `teiplex router` children): the texts go in chunks to teiplex.v1.Batch,
 *   many inputs per call (at most half the child's max_concurrent_requests, at most
 *   MAX_CHUNK_ROWS, at most bulk_chunk_rows in the bulk lane, at most `chunkBytes` of text). Up to `batchWindow` chunks of one request are
 *   in flight at once, and every request to a child draws on one input budget of
 *   max_concurrent_requests (ChildClient.inputBudget) in the call's lane (interactive first, bulk
 *   aged: input-budget.ts), so the manager never sends the child more inputs than it admits. A chunk the child still refuses as overloaded (MODEL_OVERLOADED: other
 *   clients hold its permits) waits and is sent again, as TEI's stream messages wait for admission.
 * - Stream (real TEI children, without teiplex.v1.Batch): one bidirectional tei.v1 stream, one
 *   text per message, at most `streamWindow` messages unanswered; the child answers in order.
 *   The stream takes its window's worth of the same input budget for its whole life, so at most
 *   max_concurrent_requests messages are unanswered at the child and further requests wait their
 *   turn (FIFO): without this, 64 requests of 1,000 rows would all advance together, the child
 *   polling admission for thousands of waiting messages, and every request would miss its deadline.
 *
 * Bounds: texts become strings only for the chunk (or message) about to be sent (TextSource); a
 * chunk never exceeds the child's message limit where it is known (a single row over it is
 * refused, naming the row, without being sent); and the rows received are told to `onRow`, which
 * throws to end the request when the answer cannot fit, cancelling the child work still in
 * flight instead of finishing it for nothing.
 *
 * Failover: with a `fallback` (the Arrow RPCs give one, src/routing/failover.ts decides), a
 * sub-batch whose child call failed in a way that may be retried elsewhere goes to the replica
 * the fallback names, once: on the Batch path only the failed chunks move (rows keep their
 * places), on the stream path the rows not yet answered go on to the other replica, and a
 * failure before any row came (learning the child's Info or Batch support) moves all of it. The
 * fallback is asked on the first such failure and answers the same for the rest of the request;
 * nothing that already moved moves again.
 *
 * The first Batch call to a child whose support is not yet known is sent alone: UNIMPLEMENTED
 * means the child has no Batch service, it is remembered, and the request takes the stream path.
 *
 * Errors: the child's failure (child-status.ts). One that names an input (INVALID_ARGUMENT and
 * the like) names the row, counted across the whole request: the child's `teiplex-error-index`
 * of a Batch call becomes `row <chunk start + index>: ...` (err.index re-based); on a stream,
 * the index is the message's position, which is the row (else the first message not answered).
 */
import * as grpc from '@grpc/grpc-js';
import { TeiplexError } from '../../common/errors.js';
import type { CallScope } from '../call-scope.js';
import type { ChildClient } from '../child-client.js';
import { childFailure, childStatusOf } from '../child-status.js';
import type { RowKind, RowOptions } from '../row-kinds.js';

/** Texts of a request, made strings one chunk at a time (e.g. src/arrow/packed-texts.ts's TextRows). */
export interface TextSource {
  readonly length: number;
  /** UTF-8 bytes of text `i`. */
  bytesOf(i: number): number;
  text(i: number): string;
  /** Texts [start, end) as strings. */
  slice(start: number, end: number): string[];
}

/**
 * Where a failed child call of a request may be made again (failover): another replica's client
 * when `err` allows it and the request may move, else undefined (the error stands).
 */
export type Fallback = (err: unknown) => ChildClient | undefined;

/** Texts [from, end) of `texts` as a source of their own. */
export function textsFrom(texts: TextSource, from: number): TextSource {
  return {
    length: texts.length - from,
    bytesOf: (i) => texts.bytesOf(from + i),
    text: (i) => texts.text(from + i),
    slice: (start, end) => texts.slice(from + start, from + end),
  };
}

/** Most inputs in one Batch call, whatever the child admits. */
export const MAX_CHUNK_ROWS = 256;

export interface FanoutSettings {
  /** Batch calls in flight per Arrow call. */
  batchWindow: number;
  /** Messages unanswered on a fan-out stream. */
  streamWindow: number;
  /** Most bytes of text in one Batch call (children refuse messages over their payload limit). */
  chunkBytes: number;
}

/** TEI's default --payload-limit is 2,000,000 bytes: stay well under it. */
export const DEFAULT_FANOUT: FanoutSettings = { batchWindow: 4, streamWindow: 256, chunkBytes: 1024 * 1024 };

export type FanoutPath = 'batch' | 'stream';

/** Room a Batch request needs besides its texts (truncate, normalize, field tags). */
const REQUEST_OVERHEAD = 64;

/** The rows for `texts`, in order, and the path that produced them. */
export async function embedRows<Row>(
  call: CallScope,
  child: ChildClient,
  kind: RowKind<Row>,
  texts: TextSource,
  flags: RowOptions,
  settings: FanoutSettings = DEFAULT_FANOUT,
  onRow: (row: Row) => void = () => undefined,
  fallback?: Fallback,
): Promise<{ rows: Row[]; path: FanoutPath }> {
  if (fallback === undefined) return rowsOn(call, child, kind, texts, flags, settings, onRow);
  let seen = 0;
  const counted = (row: Row): void => {
    onRow(row);
    seen++;
  };
  try {
    return await rowsOn(call, child, kind, texts, flags, settings, counted, fallback);
  } catch (err) {
    // Failed before any row came (learning the child's Info or Batch support): all of it moves.
    const other = seen === 0 ? fallback(err) : undefined;
    if (other === undefined) throw err;
    return rowsOn(call, other, kind, texts, flags, settings, onRow);
  }
}

/** embedRows on one child (failed sub-batches go to `fallback`'s replica, if any). */
async function rowsOn<Row>(
  call: CallScope,
  child: ChildClient,
  kind: RowKind<Row>,
  texts: TextSource,
  flags: RowOptions,
  settings: FanoutSettings,
  onRow: (row: Row) => void,
  fallback?: Fallback,
): Promise<{ rows: Row[]; path: FanoutPath }> {
  const maxSend = child.channel.maxSendBytes - REQUEST_OVERHEAD;
  for (let i = 0; i < texts.length; i++) {
    // A protobuf string costs its bytes plus a tag and a length.
    if (texts.bytesOf(i) + 6 > maxSend) {
      throw new TeiplexError(
        'PAYLOAD_TOO_LARGE',
        `row ${i}: its text is ${texts.bytesOf(i)} bytes, more than the instance accepts in one message (${child.channel.maxSendBytes} bytes); the multiplexer did not send it`,
      );
    }
  }
  if (child.known.batch !== 'no') {
    const rows = await viaBatch(call, child, kind, texts, flags, { ...settings, chunkBytes: Math.min(settings.chunkBytes, maxSend) }, onRow, fallback);
    if (rows !== undefined) return { rows, path: 'batch' };
  }
  // One budget for both paths: a stream holds its window's worth of the child's inputs, so calls
  // are served in turn instead of all crawling at once behind the child's admission.
  const budget = await child.inputBudget(call);
  // A bulk stream keeps at most the bulk lane's share unanswered (interactive calls go beside it).
  const window = Math.max(1, Math.min(settings.streamWindow, texts.length, call.lane === 'bulk' ? budget.bulkLimit : budget.limit));
  await budget.acquire(window, call, call.lane);
  const done = { rows: new Array<Row>(texts.length), answered: 0 };
  let failure: unknown;
  try {
    return { rows: await viaStream(call, child, kind, texts, flags, window, onRow, done), path: 'stream' };
  } catch (err) {
    failure = err;
  } finally {
    budget.release(window, call.lane);
  }
  // The rows not yet answered go on to another replica, if the fallback names one.
  const other = fallback?.(failure);
  if (other === undefined) throw failure;
  const rest = await rowsOn(call, other, kind, textsFrom(texts, done.answered), flags, settings, onRow);
  return { rows: [...done.rows.slice(0, done.answered), ...rest.rows], path: rest.path };
}

/** [start, end) ranges of at most `maxRows` rows and (unless one row alone is larger) `maxBytes` bytes. */
export function planChunks(texts: Pick<TextSource, 'length' | 'bytesOf'>, maxRows: number, maxBytes: number): Array<[number, number]> {
  const chunks: Array<[number, number]> = [];
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < texts.length; i++) {
    // A protobuf string costs its UTF-8 bytes plus a tag and a length (a few bytes).
    const b = texts.bytesOf(i) + 6;
    if (i > start && (i - start >= maxRows || bytes + b > maxBytes)) {
      chunks.push([start, i]);
      start = i;
      bytes = 0;
    }
    bytes += b;
  }
  if (texts.length > start) chunks.push([start, texts.length]);
  return chunks;
}

function isOverloaded(err: unknown): boolean {
  return err instanceof TeiplexError && err.code === 'MODEL_OVERLOADED';
}

/** Statuses that come from the child's Batch service itself (not the transport or our deadline). */
function fromBatchService(err: unknown): boolean {
  const s = childStatusOf(err);
  return s !== undefined && ![grpc.status.UNIMPLEMENTED, grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.CANCELLED].includes(s.code);
}

/**
 * A child's failure of a Batch call of rows [start, start + n) that is about its inputs, naming
 * the row: the input the child named (err.index), else the one row, else the range.
 */
export function namingRow(err: unknown, start: number, n: number): unknown {
  if (!(err instanceof TeiplexError) || err.grpcStatus !== grpc.status.INVALID_ARGUMENT) return err;
  const opts = { ...(err.retryAfterSecs !== undefined ? { retryAfterSecs: err.retryAfterSecs } : {}) };
  if (err.index !== undefined && err.index < n) return new TeiplexError(err.code, `row ${start + err.index}: ${err.message}`, { ...opts, index: start + err.index });
  if (n === 1) return new TeiplexError(err.code, `row ${start}: ${err.message}`, { ...opts, index: start });
  return new TeiplexError(err.code, `rows ${start}..${start + n - 1}: ${err.message}`, opts);
}

/** The Batch path; undefined when the child turns out to have no Batch service. */
async function viaBatch<Row>(
  call: CallScope,
  child: ChildClient,
  kind: RowKind<Row>,
  texts: TextSource,
  flags: RowOptions,
  s: FanoutSettings,
  onRow: (row: Row) => void,
  fallback: Fallback | undefined,
): Promise<Row[] | undefined> {
  const budget = await child.inputBudget(call);
  // A bulk call's sub-batches are bulk_chunk_rows at most: an interactive call waits for one at most.
  const laneRows = call.lane === 'bulk' ? child.known.lanes.bulkChunkRows : MAX_CHUNK_ROWS;
  const maxRows = Math.max(1, Math.min(MAX_CHUNK_ROWS, laneRows, Math.floor(budget.limit / 2)));
  const chunks = planChunks(texts, maxRows, s.chunkBytes);
  const results = new Array<Row[]>(chunks.length);

  const runChunk = async (index: number): Promise<void> => {
    const [start, end] = chunks[index]!;
    const n = end - start;
    const request = kind.batchRequest(texts.slice(start, end), flags);
    let delay = 1;
    // The child called: the request's, or (once, failover) the replica the fallback named.
    let on = child;
    let onBudget = budget;
    for (;;) {
      const b = onBudget;
      const share = Math.min(n, b.limit);
      await b.acquire(share, call, call.lane);
      let answer: Buffer;
      try {
        answer = await call.unary(on.channel, kind.batchPath, request, on.who);
      } catch (err) {
        if (!isOverloaded(err)) {
          const other = on === child ? fallback?.(err) : undefined;
          if (other === undefined) throw namingRow(err, start, n);
          on = other;
          onBudget = await other.inputBudget(call);
          continue;
        }
        await call.sleep(delay);
        delay = Math.min(delay * 2, 50);
        continue;
      } finally {
        b.release(share, call.lane);
      }
      const { rows } = kind.batchRows(answer, n);
      for (const row of rows) onRow(row);
      results[index] = rows;
      return;
    }
  };

  let next = 0;
  if (child.known.batch === 'unknown') {
    // Learn whether the child has the Batch service from one call.
    try {
      await runChunk(next++);
    } catch (err) {
      if (childStatusOf(err)?.code === grpc.status.UNIMPLEMENTED) {
        child.known.batch = 'no';
        return undefined;
      }
      if (fromBatchService(err)) child.known.batch = 'yes';
      throw err;
    }
    child.known.batch = 'yes';
  }
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < chunks.length) {
      try {
        await runChunk(next++);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(s.batchWindow, chunks.length - next) }, worker));
  return results.flat();
}

/** The stream path: one message per text, answers in order; `done` holds the rows answered so far (a failover goes on from there). */
function viaStream<Row>(
  call: CallScope,
  child: ChildClient,
  kind: RowKind<Row>,
  texts: TextSource,
  flags: RowOptions,
  window: number,
  onRow: (row: Row) => void,
  done: { rows: Row[]; answered: number },
): Promise<Row[]> {
  return new Promise<Row[]>((resolve, reject) => {
    const n = texts.length;
    const rows = done.rows;
    let sent = 0;
    let answered = 0;
    let ended = false;
    let waitingForDrain = false;
    let failure: unknown;

    const stream = call.open(child.channel, kind.streamPath, {
      onHeaders: () => undefined,
      onMessage: (msg) => {
        if (failure !== undefined) return;
        try {
          if (answered >= sent) throw new TeiplexError('BACKEND', `the child answered message ${answered + 1} of a stream before it was sent`);
          const { row } = kind.row(msg);
          onRow(row);
          rows[answered++] = row;
          done.answered = answered;
        } catch (err) {
          failure = err;
          stream.cancel((err as Error).message);
          return;
        }
        pump();
      },
      onStatus: (st) => {
        if (failure !== undefined) return reject(failure);
        if (call.aborted !== undefined) return reject(call.aborted);
        if (st.code !== grpc.status.OK) {
          // A teiplex router names the failing message's position in the stream (the row); else it
          // is the first message not answered.
          const err = childFailure(st, child.who);
          if (err.index !== undefined) return reject(namingRow(err, 0, n));
          return reject(answered < n ? namingRow(err, answered, 1) : err);
        }
        if (answered !== n) return reject(new TeiplexError('BACKEND', `the child ended a stream after ${answered} answers to ${n} messages`));
        resolve(rows);
      },
    });

    function pump(): void {
      while (!waitingForDrain && sent < n && sent - answered < window) {
        const ok = stream.write(kind.request(texts.text(sent++), flags));
        if (!ok) {
          waitingForDrain = true;
          stream.onDrain(() => {
            waitingForDrain = false;
            pump();
          });
        }
      }
      if (!ended && sent === n) {
        ended = true;
        stream.end();
      }
    }
    pump();
  });
}
