/**
 * JSON for float vectors without an intermediate number[]: each value as JavaScript prints it
 * (the float32 widened to a double, the digits JSON.stringify gives), NaN and Infinity (which JSON
 * cannot hold) as `null` as JSON.stringify does. A string-building loop: several times faster than
 * JSON.stringify(Array.from(v)) for embedding-sized vectors.
 *
 * Large answers are never built as one string: `sendJson` takes the answer as pieces (a generator
 * that encodes as it is read) and streams it in chunks of about PIECE_BYTES, yielding to the event
 * loop between chunks and pausing while the client does not read (backpressure), so one request
 * for a large answer neither stalls other requests nor holds the whole text in memory.
 */
import { Readable } from 'node:stream';
import type { FastifyReply } from 'fastify';

/** About how much JSON is encoded between two turns of the event loop. */
const PIECE_BYTES = 64 * 1024;
/** Answers estimated below this are sent as one string (no stream set up). */
const STREAM_FROM_BYTES = 256 * 1024;

/**
 * The most characters one float32 value takes in the JSON written here: 25 for the value
 * (`-0.0000010741975984274177`: JavaScript writes 1e-7 to 1e21 without an exponent), one for its
 * comma, one more that covers its list's brackets. Answer sizes are estimated (and bounded) with it.
 */
export const JSON_BYTES_PER_FLOAT = 27;

/** A float vector as a JSON list. */
export function floatList(v: ArrayLike<number>): string {
  const n = v.length;
  if (n === 0) return '[]';
  let s = '[';
  for (let i = 0; i < n; i++) {
    const x = v[i];
    s += (i > 0 ? ',' : '') + (Number.isFinite(x) ? x : 'null');
  }
  return s + ']';
}

/** Values in all the vectors together. */
export function floatCount(rows: ReadonlyArray<ArrayLike<number>>): number {
  let n = 0;
  for (const r of rows) n += r.length;
  return n;
}

/** Concatenated pieces, cut into chunks of at least PIECE_BYTES (the last may be shorter). */
function* chunked(pieces: Iterable<string>): Generator<string> {
  let buf = '';
  for (const p of pieces) {
    buf += p;
    if (buf.length >= PIECE_BYTES) {
      yield buf;
      buf = '';
    }
  }
  if (buf !== '') yield buf;
}

/** The chunks, one per turn of the event loop (setImmediate lets other I/O in between). */
async function* paced(pieces: Iterable<string>): AsyncGenerator<string> {
  for (const c of chunked(pieces)) {
    yield c;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/**
 * Send a JSON answer given as pieces: one string when `estimatedBytes` is small, else a stream
 * encoded a chunk at a time as the client reads it (abandoned if the client goes away).
 */
export function sendJson(reply: FastifyReply, pieces: Iterable<string>, estimatedBytes: number): FastifyReply {
  reply.type('application/json');
  if (estimatedBytes < STREAM_FROM_BYTES) {
    let s = '';
    for (const p of pieces) s += p;
    return reply.send(s);
  }
  return reply.send(Readable.from(paced(pieces), { objectMode: false, highWaterMark: PIECE_BYTES }));
}

/** A JSON list of the items' pieces: `[a,b,...]`. */
export function* listPieces<T>(items: Iterable<T>, item: (x: T) => Iterable<string>): Generator<string> {
  yield '[';
  let first = true;
  for (const x of items) {
    if (!first) yield ',';
    first = false;
    yield* item(x);
  }
  yield ']';
}

/** A row-major tokens x dim matrix as a JSON list of lists, one row per piece. */
export function* matrixPieces(values: Float32Array, rows: number, dim: number): Generator<string> {
  yield '[';
  for (let r = 0; r < rows; r++) yield (r > 0 ? ',' : '') + floatList(values.subarray(r * dim, (r + 1) * dim));
  yield ']';
}

/** One flat list of values, a few thousand values per piece. */
export function* flatPieces(v: Float32Array): Generator<string> {
  const step = 4096;
  if (v.length <= step) {
    yield floatList(v);
    return;
  }
  yield '[';
  for (let i = 0; i < v.length; i += step) yield (i > 0 ? ',' : '') + floatList(v.subarray(i, i + step)).slice(1, -1);
  yield ']';
}
