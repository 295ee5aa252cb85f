/**
 * `arrow`: one `TeiMultiplexer/EmbedArrow` call (or `EmbedSparseArrow` with --sparse) per
 * --batch-size texts, sent as an Arrow IPC stream with a `text` column (LZ4_FRAME-compressed
 * unless --no-compress); --noop asks the multiplexer for shaped zeros without calling the child.
 * The answer is decoded and must have one row per text.
 */
import { decodeDense, decodeSparse, encodeTexts } from '../../arrow/embedding-batch.js';
import { callMetadata, callOptions, grpcClient, MUX_SERVICE, targetMessage, unaryCall, waitForReady } from '../grpc-client.js';
import { expectCount, type BenchMode } from '../mode.js';
import type { BenchOptions } from '../options.js';

interface ArrowRequest {
  message: Record<string, unknown>;
  rows: number;
}

export function arrowMode(opts: BenchOptions): BenchMode<ArrowRequest> {
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
