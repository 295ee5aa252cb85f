/**
 * `standard`: one unary call per text. Through the multiplexer `TeiMultiplexer/Embed` (or
 * `EmbedSparse` with --sparse) with the target; with --direct, tei.v1's `Embed/Embed` (or
 * `Embed/EmbedSparse`) straight to a child, no Target wrapper.
 */
import { callMetadata, callOptions, grpcClient, MUX_SERVICE, targetMessage, TEI_EMBED_SERVICE, unaryCall, waitForReady } from '../grpc-client.js';
import { BadResponseError, type BenchMode } from '../mode.js';
import type { BenchOptions } from '../options.js';

/** The tei.v1 request for one text (EmbedRequest or EmbedSparseRequest); normalize left to the server (true). */
export function teiRequest(opts: BenchOptions, text: string): Record<string, unknown> {
  return { inputs: text, truncate: opts.truncate };
}

/** The message a call sends for one text: the tei.v1 request, wrapped with the target unless --direct. */
export function wrapped(opts: BenchOptions, text: string): Record<string, unknown> {
  const request = teiRequest(opts, text);
  return opts.direct ? request : { target: targetMessage(opts.target), request };
}

interface EmbedAnswer {
  embeddings?: number[];
  sparse_embeddings?: unknown[];
}

export function standardMode(opts: BenchOptions): BenchMode<Record<string, unknown>> {
  const client = grpcClient(opts, opts.direct ? TEI_EMBED_SERVICE : MUX_SERVICE);
  const method = opts.sparse ? 'EmbedSparse' : 'Embed';
  const metadata = callMetadata(opts);
  return {
    prepare(texts) {
      if (texts.length !== 1) throw new RangeError(`standard mode sends one text per request, got ${texts.length}`);
      return wrapped(opts, texts[0]!);
    },
    async send(request) {
      const res = await unaryCall<EmbedAnswer>(client, method, request, metadata(), callOptions(opts));
      if (!opts.sparse && !(res.embeddings && res.embeddings.length > 0)) throw new BadResponseError(`${method}: an answer without embeddings`);
    },
    connect: () => waitForReady(client, opts.connectTimeoutMs),
    async close() {
      client.close();
    },
  };
}
