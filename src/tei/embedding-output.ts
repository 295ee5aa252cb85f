/**
 * A dense answer in the output type and encoding a request asks for, the same on every HTTP route
 * that returns dense vectors (TEI's /embed, OpenAI's /v1/embeddings, Cohere's /v2/embed, the typed
 * /v1/encode): the engine's float32 vectors quantized (embedding-types.ts; int8/uint8 against the
 * model's calibrated ranges, calibration.ts), then written as JSON numbers or as base64 of their
 * little-endian bytes.
 */
import { calibratedRanges } from './calibration.js';
import { jsonValues, needsRanges, type OutputType, quantize, rowBytes, type TypedRow } from './embedding-types.js';
import { floatList } from './json-answer.js';
import type { CallOptions, EmbedOptions, Engine } from './types.js';

/** The engine's float vectors `rows` (embedded with `opts`) in output type `type`. */
export async function typedRows(engine: Engine, rows: Float32Array[], type: OutputType, opts: EmbedOptions, call?: CallOptions): Promise<TypedRow[]> {
  if (type === 'float32') return rows;
  const ranges = needsRanges(type) ? await calibratedRanges(engine, opts, call) : undefined;
  return rows.map((v) => quantize(v, type, ranges));
}

/** One vector as JSON text: a list of numbers, or a base64 string of its little-endian bytes. */
export function rowJson(row: TypedRow, type: OutputType, base64: boolean): string {
  // base64's alphabet needs no escaping in a JSON string
  return base64 ? `"${rowBytes(row).toString('base64')}"` : floatList(jsonValues(row, type));
}
