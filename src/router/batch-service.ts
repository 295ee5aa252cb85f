/**
 * `teiplex.v1.Batch`: many inputs in one message, results packed as little-endian bytes
 * (proto/teiplex/v1/batch.proto). The manager's fast path, so TEI's max_client_batch_size does
 * not apply; the limit is `maxBatchInputs` (default: max_concurrent_requests, since admission
 * takes one permit per input and a larger batch could never be admitted).
 */
import type * as grpc from '@grpc/grpc-js';
import { endianness } from 'node:os';
import { TeiplexError } from '../common/errors.js';
import { aggregateMetadata } from '../tei/metadata.js';
import { embedOptions, encodeOptions, pbMetadata, unary, type Answer, type ServiceContext } from './grpc-service.js';
import type { PbEmbedAllBatchResponse, PbEmbedBatchRequest, PbEmbedBatchResponse, PbEmbedSparseBatchResponse, PbEncodeBatchRequest } from '../tei/proto.js';
import type { RouterEngine } from './engine.js';
import type { Metadata } from '../tei/types.js';

export interface BatchContext extends ServiceContext {
  /** Most inputs in one batch message. */
  maxBatchInputs(engine: RouterEngine): number;
}

const LITTLE_ENDIAN = endianness() === 'LE';

/** The bytes of a typed array as little-endian values. */
function leBytes(a: Float32Array | Uint32Array): Buffer {
  if (LITTLE_ENDIAN) return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  const out = Buffer.allocUnsafe(a.byteLength);
  if (a instanceof Float32Array) a.forEach((v, i) => out.writeFloatLE(v, i * 4));
  else a.forEach((v, i) => out.writeUInt32LE(v, i * 4));
  return out;
}

function checkInputs(ctx: BatchContext, engine: RouterEngine, inputs: string[]): void {
  const max = ctx.maxBatchInputs(engine);
  if (inputs.length > max) {
    throw new TeiplexError(
      'VALIDATION',
      `batch of ${inputs.length} inputs is larger than maxBatchInputs (${max}, the router's max_concurrent_requests unless set); split it into smaller batches`,
    );
  }
}

/** Each input's token count (a caller reports per-input usage from them: a batch job's lines). */
const inputTokens = (metadata: readonly Metadata[]): number[] => metadata.map((m) => m.computeTokens);

export function batchServiceImplementation(ctx: BatchContext): grpc.UntypedServiceImplementation {
  return {
    EmbedBatch: unary(async (req: PbEmbedBatchRequest): Promise<Answer<PbEmbedBatchResponse>> => {
      const engine = ctx.engine();
      checkInputs(ctx, engine, req.inputs);
      const out = await engine.embed(req.inputs, embedOptions(req));
      const dim = out.results[0]?.length ?? 0;
      const packed = new Float32Array(out.results.length * dim);
      out.results.forEach((v, i) => {
        if (v.length !== dim) throw new TeiplexError('BACKEND', `input ${i}: embedding has ${v.length} dimensions, expected ${dim}`, { index: i });
        packed.set(v, i * dim);
      });
      const metadata = aggregateMetadata(out.metadata);
      return { response: { dim, embeddings: leBytes(packed), metadata: pbMetadata(metadata), input_tokens: inputTokens(out.metadata) }, metadata };
    }),

    EmbedSparseBatch: unary(async (req: PbEncodeBatchRequest): Promise<Answer<PbEmbedSparseBatchResponse>> => {
      const engine = ctx.engine();
      checkInputs(ctx, engine, req.inputs);
      const out = await engine.embedSparse(req.inputs, encodeOptions(req));
      const offsets = new Array<number>(out.results.length + 1);
      offsets[0] = 0;
      out.results.forEach((s, i) => (offsets[i + 1] = offsets[i] + s.indices.length));
      const total = offsets[out.results.length];
      const indices = new Uint32Array(total);
      const values = new Float32Array(total);
      out.results.forEach((s, i) => {
        indices.set(s.indices, offsets[i]);
        values.set(s.values, offsets[i]);
      });
      const metadata = aggregateMetadata(out.metadata);
      return { response: { offsets, indices: leBytes(indices), values: leBytes(values), metadata: pbMetadata(metadata), input_tokens: inputTokens(out.metadata) }, metadata };
    }),

    EmbedAllBatch: unary(async (req: PbEncodeBatchRequest): Promise<Answer<PbEmbedAllBatchResponse>> => {
      const engine = ctx.engine();
      checkInputs(ctx, engine, req.inputs);
      const out = await engine.embedAll(req.inputs, encodeOptions(req));
      const dim = out.results[0]?.dim ?? 0;
      const offsets = new Array<number>(out.results.length + 1);
      offsets[0] = 0;
      out.results.forEach((t, i) => (offsets[i + 1] = offsets[i] + t.tokens));
      const packed = new Float32Array(offsets[out.results.length] * dim);
      out.results.forEach((t, i) => {
        if (t.dim !== dim) throw new TeiplexError('BACKEND', `input ${i}: token embeddings have ${t.dim} dimensions, expected ${dim}`, { index: i });
        packed.set(t.values.subarray(0, t.tokens * dim), offsets[i] * dim);
      });
      const metadata = aggregateMetadata(out.metadata);
      return { response: { dim, offsets, embeddings: leBytes(packed), metadata: pbMetadata(metadata), input_tokens: inputTokens(out.metadata) }, metadata };
    }),
  };
}
