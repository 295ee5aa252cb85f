/**
 * `stream`: one bidirectional stream per request, carrying --batch-size texts as one message
 * each; the request is done when the stream has answered every message and ended OK. Through the
 * multiplexer `TeiMultiplexer/EmbedStream` (or `EmbedSparseStream`), every message naming the
 * target; with --direct, tei.v1's `Embed/EmbedStream` (or `EmbedSparseStream`).
 */
import { bidiCall, callMetadata, callOptions, grpcClient, MUX_SERVICE, TEI_EMBED_SERVICE, waitForReady } from '../grpc-client.js';
import { expectCount, type BenchMode } from '../mode.js';
import type { BenchOptions } from '../options.js';
import { wrapped } from './standard.js';

export function streamMode(opts: BenchOptions): BenchMode<Array<Record<string, unknown>>> {
  const client = grpcClient(opts, opts.direct ? TEI_EMBED_SERVICE : MUX_SERVICE);
  const method = opts.sparse ? 'EmbedSparseStream' : 'EmbedStream';
  const metadata = callMetadata(opts);
  return {
    prepare: (texts) => texts.map((t) => wrapped(opts, t)),
    async send(messages) {
      const answers = await bidiCall(client, method, messages, metadata(), callOptions(opts));
      expectCount(method, answers, messages.length);
    },
    connect: () => waitForReady(client, opts.connectTimeoutMs),
    async close() {
      client.close();
    },
  };
}
