/**
 * The child methods the manager calls, with their protobuf codecs: tei.v1 (every child),
 * teiplex.v1.Batch and teiplex.v1.TokenClassification (teiplex routers only) and grpc.health.v1 (health probes), from the same .proto
 * files and loader options as the router (src/tei/proto.ts), so messages are the shapes its Pb*
 * types describe; and the conversion of a child's metadata.
 */
import { endianness } from 'node:os';
import type { MethodDefinition } from '@grpc/proto-loader';
import { TeiplexError } from '../common/errors.js';
import {
  HEALTH_PROTO_FILE,
  loadProtos,
  routerPackageDefinition,
  type PbDecodeRequest,
  type PbDecodeResponse,
  type PbEmbedAllBatchResponse,
  type PbEmbedAllResponse,
  type PbEmbedBatchRequest,
  type PbEmbedBatchResponse,
  type PbEmbedRequest,
  type PbEmbedResponse,
  type PbEmbedSparseBatchResponse,
  type PbEmbedSparseResponse,
  type PbEncodeBatchRequest,
  type PbEncodeOnlyRequest,
  type PbEncodeRequest,
  type PbEncodeResponse,
  type PbInfoResponse,
  type PbMetadata,
  type PbPredictPairRequest,
  type PbPredictRequest,
  type PbPredictResponse,
  type PbPredictTokensRequest,
  type PbPredictTokensResponse,
  type PbRerankRequest,
  type PbRerankResponse,
  type PbTruncationDirection,
} from '../tei/proto.js';
import type { Metadata, TruncationDirection } from '../tei/types.js';

/** One child method: its path and message codecs. */
export interface ChildMethod<Req, Res> {
  readonly path: string;
  encode(req: Req): Buffer;
  decode(bytes: Buffer): Res;
}

function method<Req, Res>(service: string, name: string, pkg = routerPackageDefinition()): ChildMethod<Req, Res> {
  const def = (pkg[service] as unknown as Record<string, MethodDefinition<Req, Res>> | undefined)?.[name];
  if (def === undefined || typeof def.requestSerialize !== 'function') throw new Error(`${service}/${name} is not in the router's protos`);
  return { path: def.path, encode: (req) => def.requestSerialize(req), decode: (bytes) => def.responseDeserialize(bytes) };
}

export const TEI = {
  Info: method<Record<string, never>, PbInfoResponse>('tei.v1.Info', 'Info'),
  Embed: method<Partial<PbEmbedRequest>, PbEmbedResponse>('tei.v1.Embed', 'Embed'),
  EmbedStream: method<Partial<PbEmbedRequest>, PbEmbedResponse>('tei.v1.Embed', 'EmbedStream'),
  EmbedSparse: method<Partial<PbEncodeOnlyRequest>, PbEmbedSparseResponse>('tei.v1.Embed', 'EmbedSparse'),
  EmbedSparseStream: method<Partial<PbEncodeOnlyRequest>, PbEmbedSparseResponse>('tei.v1.Embed', 'EmbedSparseStream'),
  EmbedAll: method<Partial<PbEncodeOnlyRequest>, PbEmbedAllResponse>('tei.v1.Embed', 'EmbedAll'),
  EmbedAllStream: method<Partial<PbEncodeOnlyRequest>, PbEmbedAllResponse>('tei.v1.Embed', 'EmbedAllStream'),
  Predict: method<Partial<PbPredictRequest>, PbPredictResponse>('tei.v1.Predict', 'Predict'),
  PredictStream: method<Partial<PbPredictRequest>, PbPredictResponse>('tei.v1.Predict', 'PredictStream'),
  PredictPair: method<Partial<PbPredictPairRequest>, PbPredictResponse>('tei.v1.Predict', 'PredictPair'),
  PredictPairStream: method<Partial<PbPredictPairRequest>, PbPredictResponse>('tei.v1.Predict', 'PredictPairStream'),
  Rerank: method<Partial<PbRerankRequest>, PbRerankResponse>('tei.v1.Rerank', 'Rerank'),
  Tokenize: method<Partial<PbEncodeRequest>, PbEncodeResponse>('tei.v1.Tokenize', 'Tokenize'),
  TokenizeStream: method<Partial<PbEncodeRequest>, PbEncodeResponse>('tei.v1.Tokenize', 'TokenizeStream'),
  Decode: method<Partial<PbDecodeRequest>, PbDecodeResponse>('tei.v1.Tokenize', 'Decode'),
  DecodeStream: method<Partial<PbDecodeRequest>, PbDecodeResponse>('tei.v1.Tokenize', 'DecodeStream'),
} as const;

export const HEALTH = {
  Check: method<{ service: string }, { status: string }>('grpc.health.v1.Health', 'Check', loadProtos([HEALTH_PROTO_FILE])),
} as const;

export const BATCH = {
  EmbedBatch: method<Partial<PbEmbedBatchRequest>, PbEmbedBatchResponse>('teiplex.v1.Batch', 'EmbedBatch'),
  EmbedSparseBatch: method<Partial<PbEncodeBatchRequest>, PbEmbedSparseBatchResponse>('teiplex.v1.Batch', 'EmbedSparseBatch'),
  EmbedAllBatch: method<Partial<PbEncodeBatchRequest>, PbEmbedAllBatchResponse>('teiplex.v1.Batch', 'EmbedAllBatch'),
} as const;

/** teiplex.v1.TokenClassification (teiplex routers serving a token classifier). */
export const TOKENS = {
  PredictTokens: method<Partial<PbPredictTokensRequest>, PbPredictTokensResponse>('teiplex.v1.TokenClassification', 'PredictTokens'),
} as const;

/** A child's answer to `m`, decoded; an answer that does not decode is the child's failure (BACKEND). */
export function decodeAnswer<Res>(m: ChildMethod<unknown, Res>, bytes: Buffer, who: string): Res {
  try {
    return m.decode(bytes);
  } catch (err) {
    throw new TeiplexError('BACKEND', `${who} sent an answer to ${m.path} that does not decode: ${(err as Error).message}`);
  }
}

export function pbDirection(d: TruncationDirection): PbTruncationDirection {
  return d === 'left' ? 'TRUNCATION_DIRECTION_LEFT' : 'TRUNCATION_DIRECTION_RIGHT';
}

const ZERO: Metadata = { computeChars: 0, computeTokens: 0, totalTimeNs: 0n, tokenizationTimeNs: 0n, queueTimeNs: 0n, inferenceTimeNs: 0n };

const ns = (s: string | undefined): bigint => {
  try {
    return BigInt(s ?? 0);
  } catch {
    return 0n;
  }
};

/** A child's tei.v1.Metadata (absent: zeros). */
export function fromPbMetadata(m: PbMetadata | null | undefined): Metadata {
  if (m === null || m === undefined) return ZERO;
  return {
    computeChars: m.compute_chars,
    computeTokens: m.compute_tokens,
    totalTimeNs: ns(m.total_time_ns),
    tokenizationTimeNs: ns(m.tokenization_time_ns),
    queueTimeNs: ns(m.queue_time_ns),
    inferenceTimeNs: ns(m.inference_time_ns),
  };
}

// ---- tei.v1.Embed by hand ----------------------------------------------------------------------
//
// The data plane's most frequent child call (one text, one dense vector) is encoded and decoded
// here without protobufjs: its object conversion (64-bit integers as decimal strings through Long,
// defaults filled in) costs more per call than the rest of the codec. The bytes are the ones
// protobufjs writes (fields in number order, each field that is set), and anything the reader
// below does not expect (a group, an unexpected wire type, a packed list of odd length) is left
// to protobufjs, so both paths accept the same answers.

/** tei.v1.EmbedRequest's fields (the codec's input shape, as for TEI.Embed.encode). */
export interface EmbedFields {
  truncate: boolean;
  truncation_direction?: PbTruncationDirection;
  normalize?: boolean;
  prompt_name?: string;
  dimensions?: number;
}

/** Lone surrogates: protobufjs and Buffer write them differently; such texts go through protobufjs. */
const SURROGATE = /[\uD800-\uDFFF]/;

const varintBytes = (v: number): number => (v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5);

function putVarint(b: Buffer, pos: number, v: number): number {
  while (v >= 0x80) {
    b[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  b[pos++] = v;
  return pos;
}

/** tei.v1.EmbedRequest for one text: the bytes TEI.Embed.encode writes for the same fields. */
export function encodeEmbedRequest(inputs: string, o: EmbedFields): Buffer {
  if (SURROGATE.test(inputs) || (o.prompt_name !== undefined && SURROGATE.test(o.prompt_name))) return TEI.Embed.encode({ inputs, ...o });
  const textBytes = Buffer.byteLength(inputs);
  const promptBytes = o.prompt_name === undefined ? 0 : Buffer.byteLength(o.prompt_name);
  const dimensions = o.dimensions === undefined ? undefined : o.dimensions >>> 0;
  const direction = o.truncation_direction === undefined ? undefined : o.truncation_direction === 'TRUNCATION_DIRECTION_LEFT' ? 1 : 0;
  let size = 1 + varintBytes(textBytes) + textBytes + 2;
  if (o.normalize !== undefined) size += 2;
  if (direction !== undefined) size += 2;
  if (o.prompt_name !== undefined) size += 1 + varintBytes(promptBytes) + promptBytes;
  if (dimensions !== undefined) size += 1 + varintBytes(dimensions);
  const b = Buffer.allocUnsafe(size);
  b[0] = 0x0a;
  let pos = putVarint(b, 1, textBytes);
  pos += b.write(inputs, pos, 'utf8');
  b[pos++] = 0x10;
  b[pos++] = o.truncate ? 1 : 0;
  if (o.normalize !== undefined) {
    b[pos++] = 0x18;
    b[pos++] = o.normalize ? 1 : 0;
  }
  if (direction !== undefined) {
    b[pos++] = 0x20;
    b[pos++] = direction;
  }
  if (o.prompt_name !== undefined) {
    b[pos++] = 0x2a;
    pos = putVarint(b, pos, promptBytes);
    pos += b.write(o.prompt_name, pos, 'utf8');
  }
  if (dimensions !== undefined) {
    b[pos++] = 0x30;
    pos = putVarint(b, pos, dimensions);
  }
  return b;
}

const LITTLE_ENDIAN = endianness() === 'LE';

/** Not a shape this reader takes: protobufjs decides. */
class Unexpected extends Error {}

interface Cursor {
  pos: number;
}

/** A varint as a bigint of its low 64 bits (protobufjs' uint64). */
function readVarint64(b: Buffer, c: Cursor, end: number): bigint {
  let n = 0;
  let shift = 0;
  const start = c.pos;
  for (;;) {
    if (c.pos >= end) throw new RangeError(`index out of range: ${c.pos} + 1 > ${end}`);
    const byte = b[c.pos++]!;
    if (shift < 49) n += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if (byte < 0x80) break;
    if (shift >= 70) throw new Unexpected('varint longer than 10 bytes');
  }
  if (shift <= 49) return BigInt(n);
  let v = 0n;
  for (let i = c.pos - 1; i >= start; i--) v = (v << 7n) | BigInt(b[i]! & 0x7f);
  return v & 0xffffffffffffffffn;
}

/** A varint of at most 5 bytes, its low 32 bits unsigned (protobufjs' uint32); longer ones go to protobufjs. */
function readVarint32(b: Buffer, c: Cursor, end: number): number {
  let v = 0;
  for (let shift = 0; shift < 28; shift += 7) {
    if (c.pos >= end) throw new RangeError(`index out of range: ${c.pos} + 1 > ${end}`);
    const byte = b[c.pos++]!;
    v |= (byte & 0x7f) << shift;
    if (byte < 0x80) return v >>> 0;
  }
  if (c.pos >= end) throw new RangeError(`index out of range: ${c.pos} + 1 > ${end}`);
  const byte = b[c.pos++]!;
  if (byte >= 0x80) throw new Unexpected('varint of more than 5 bytes for a 32-bit field');
  return (v | ((byte & 0x0f) << 28)) >>> 0;
}

function skipField(b: Buffer, c: Cursor, end: number, wireType: number): void {
  switch (wireType) {
    case 0:
      readVarint64(b, c, end);
      return;
    case 1:
      c.pos += 8;
      break;
    case 2: {
      const n = readVarint32(b, c, end);
      c.pos += n;
      break;
    }
    case 5:
      c.pos += 4;
      break;
    default:
      throw new Unexpected(`wire type ${wireType}`);
  }
  if (c.pos > end) throw new RangeError(`index out of range: ${c.pos} > ${end}`);
}

/** A Metadata message ending at `stop` (reads are bounded by the buffer, as protobufjs' are). */
function readMetadata(b: Buffer, c: Cursor, stop: number): Metadata {
  const m = { computeChars: 0, computeTokens: 0, totalTimeNs: 0n, tokenizationTimeNs: 0n, queueTimeNs: 0n, inferenceTimeNs: 0n };
  // the submessage's own length bounds every read in it: a field may not run on into the bytes after it
  const end = stop;
  while (c.pos < stop) {
    const tag = readVarint32(b, c, end);
    const field = tag >>> 3;
    const wireType = tag & 7;
    if (field >= 1 && field <= 6) {
      if (wireType !== 0) throw new Unexpected(`metadata field ${field} of wire type ${wireType}`);
      if (field === 1) m.computeChars = readVarint32(b, c, end);
      else if (field === 2) m.computeTokens = readVarint32(b, c, end);
      else if (field === 3) m.totalTimeNs = readVarint64(b, c, end);
      else if (field === 4) m.tokenizationTimeNs = readVarint64(b, c, end);
      else if (field === 5) m.queueTimeNs = readVarint64(b, c, end);
      else m.inferenceTimeNs = readVarint64(b, c, end);
    } else skipField(b, c, end, wireType);
  }
  return m;
}

/** tei.v1.EmbedResponse: the values as float32 and the metadata; throws on bytes that do not decode. */
export function decodeEmbedResponse(bytes: Buffer): { embeddings: Float32Array; metadata: Metadata } {
  try {
    return readEmbedResponse(bytes);
  } catch (err) {
    if (!(err instanceof Unexpected)) throw err;
    const res = TEI.Embed.decode(bytes);
    return { embeddings: Float32Array.from(res.embeddings), metadata: fromPbMetadata(res.metadata) };
  }
}

function readEmbedResponse(b: Buffer): { embeddings: Float32Array; metadata: Metadata } {
  const c: Cursor = { pos: 0 };
  const end = b.length;
  let values: Float32Array | undefined;
  let metadata: Metadata = ZERO;
  while (c.pos < end) {
    const tag = readVarint32(b, c, end);
    const field = tag >>> 3;
    const wireType = tag & 7;
    if (field === 1) {
      let start: number;
      let n: number;
      if (wireType === 2) {
        n = readVarint32(b, c, end);
        if (n % 4 !== 0) throw new Unexpected('packed floats of odd length');
        start = c.pos;
      } else if (wireType === 5) {
        n = 4;
        start = c.pos;
      } else throw new Unexpected(`embeddings of wire type ${wireType}`);
      if (start + n > end) throw new RangeError(`index out of range: ${start} + ${n} > ${end}`);
      c.pos = start + n;
      const more = new Float32Array(n / 4);
      if (LITTLE_ENDIAN) new Uint8Array(more.buffer).set(b.subarray(start, start + n));
      else for (let i = 0; i < more.length; i++) more[i] = b.readFloatLE(start + 4 * i);
      if (values === undefined) values = more;
      else {
        const joined = new Float32Array(values.length + more.length);
        joined.set(values);
        joined.set(more, values.length);
        values = joined;
      }
    } else if (field === 2) {
      if (wireType !== 2) throw new Unexpected(`metadata of wire type ${wireType}`);
      const n = readVarint32(b, c, end);
      if (c.pos + n > end) throw new RangeError(`index out of range: ${c.pos} + ${n} > ${end}`);
      metadata = readMetadata(b, c, c.pos + n);
    } else skipField(b, c, end, wireType);
  }
  return { embeddings: values ?? new Float32Array(0), metadata };
}
