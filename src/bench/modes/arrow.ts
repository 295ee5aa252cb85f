/**
 * `arrow`: one `TeiMultiplexer/EmbedArrow` call (or `EmbedSparseArrow` with --sparse) per
 * --batch-size texts, sent as an Arrow IPC stream with a `text` column (LZ4_FRAME-compressed
 * unless --no-compress); --noop asks the multiplexer for shaped zeros without calling the child.
 * The answer is decoded and must have one row per text.
 *
 * With --direct, the same texts go straight to a `teiplex router` child's batch extension
 * (`teiplex.v1.Batch/EmbedBatch`, `EmbedSparseBatch`) as the multiplexer sends them there: chunks
 * of at most DIRECT_CHUNK_ROWS rows, up to DIRECT_WINDOW chunks of one request in flight, a chunk
 * refused as overloaded (RESOURCE_EXHAUSTED) sent again after a short wait. So a run
 * against the multiplexer and one against the child measure what the manager's Arrow path costs.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { decodeDense, decodeSparse, encodeTexts } from '../../arrow/embedding-batch.js';
import { BATCH_SERVICE, callMetadata, callOptions, grpcClient, MUX_SERVICE, targetMessage, unaryCall, waitForReady } from '../grpc-client.js';
import { expectCount, type BenchMode } from '../mode.js';
import type { BenchOptions } from '../options.js';

/** Rows per Batch call with --direct (the multiplexer's MAX_CHUNK_ROWS, src/child/batching/row-fanout.ts). */
export const DIRECT_CHUNK_ROWS = 256;
/** Batch calls of one request in flight with --direct (the multiplexer's batchWindow). */
export const DIRECT_WINDOW = 4;
/** A chunk refused as overloaded is sent again after 1 ms, doubling, at most 50 ms (as the multiplexer does). */
const OVERLOADED_FIRST_WAIT_MS = 1;
const OVERLOADED_MAX_WAIT_MS = 50;

interface ArrowRequest {
  message: Record<string, unknown>;
  rows: number;
}

export function arrowMode(opts: BenchOptions): BenchMode {
  return opts.direct ? directBatchMode(opts) : multiplexerArrowMode(opts);
}

function multiplexerArrowMode(opts: BenchOptions): BenchMode<ArrowRequest> {
  const client = grpcClient(opts, MUX_SERVICE);
  const method = opts.sparse ? 'EmbedSparseArrow' : 'EmbedArrow';
  const metadata = callMetadata(opts);
  const target = targetMessage(opts.target);
  return {
    prepare(texts) {
      const arrow_ipc = Buffer.from(encodeTexts(texts, { compress: opts.compress }));
      return { message: { target, arrow_ipc, truncate: opts.truncate, noop: opts.noop }, rows: texts.length };
    },
    async send({ message, rows }) {
      const res = await unaryCall<{ arrow_ipc?: Buffer }>(client, method, message, metadata(), callOptions(opts));
      const ipc = res.arrow_ipc ?? Buffer.alloc(0);
      const got = opts.sparse ? decodeSparse(ipc).length : decodeDense(ipc).rows;
      expectCount(method, got, rows);
    },
    connect: () => waitForReady(client, opts.connectTimeoutMs),
    async close() {
      client.close();
    },
  };
}

/** One request with --direct: its Batch messages, one per chunk. */
interface DirectRequest {
  chunks: Array<{ inputs: string[]; truncate: boolean }>;
}

interface BatchAnswer {
  dim?: number;
  embeddings?: Buffer;
  offsets?: number[];
}

/** The child refused for want of permits (MODEL_OVERLOADED), not for anything else RESOURCE_EXHAUSTED means (a message too large). */
function isOverloaded(err: unknown): boolean {
  const e = err as { code?: unknown; metadata?: grpc.Metadata };
  return e.code === grpc.status.RESOURCE_EXHAUSTED && e.metadata?.get('teiplex-error-code')[0] === 'MODEL_OVERLOADED';
}

function directBatchMode(opts: BenchOptions): BenchMode<DirectRequest> {
  const client = grpcClient(opts, BATCH_SERVICE);
  const method = opts.sparse ? 'EmbedSparseBatch' : 'EmbedBatch';
  const metadata = callMetadata(opts);
  const rowsOf = (res: BatchAnswer): number => {
    if (opts.sparse) return Math.max(0, (res.offsets?.length ?? 0) - 1);
    const dim = res.dim ?? 0;
    return dim > 0 ? (res.embeddings?.length ?? 0) / (4 * dim) : 0;
  };
  /** One chunk; refused as overloaded (other chunks hold the child's permits), sent again as the multiplexer does. */
  const batchCall = async (chunk: DirectRequest['chunks'][number], options: grpc.CallOptions): Promise<BatchAnswer> => {
    for (let wait = OVERLOADED_FIRST_WAIT_MS; ; wait = Math.min(2 * wait, OVERLOADED_MAX_WAIT_MS)) {
      try {
        return await unaryCall<BatchAnswer>(client, method, chunk, metadata(), options);
      } catch (err) {
        if (!isOverloaded(err) || Date.now() + wait >= Number(options.deadline)) throw err;
        await sleep(wait);
      }
    }
  };
  return {
    prepare(texts) {
      const chunks: DirectRequest['chunks'] = [];
      for (let i = 0; i < texts.length; i += DIRECT_CHUNK_ROWS) chunks.push({ inputs: texts.slice(i, i + DIRECT_CHUNK_ROWS), truncate: opts.truncate });
      return { chunks };
    },
    async send({ chunks }) {
      const options = callOptions(opts); // one deadline for the whole request
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < chunks.length) {
          const chunk = chunks[next++]!;
          const res = await batchCall(chunk, options);
          expectCount(method, rowsOf(res), chunk.inputs.length);
        }
      };
      await Promise.all(Array.from({ length: Math.min(DIRECT_WINDOW, chunks.length) }, worker));
    },
    connect: () => waitForReady(client, opts.connectTimeoutMs),
    async close() {
      client.close();
    },
  };
}
