/**
 * Model sizes a generated model can take. `minilm-l6` is all-MiniLM-L6-v2's real architecture,
 * so a benchmark on it costs what the real model costs; `tiny` keeps tests fast.
 */
export interface ModelShape {
  layers: number;
  hidden: number;
  heads: number;
  intermediate: number;
  /** Rows of the position embedding table (config.max_position_embeddings). */
  maxPositions: number;
  /** sentence-transformers' max_seq_length (embedding models). */
  maxSeqLength: number;
}

export const SHAPES = {
  tiny: { layers: 2, hidden: 32, heads: 4, intermediate: 64, maxPositions: 128, maxSeqLength: 128 },
  'minilm-l6': { layers: 6, hidden: 384, heads: 12, intermediate: 1536, maxPositions: 512, maxSeqLength: 256 },
} as const satisfies Record<string, ModelShape>;

export type ShapeName = keyof typeof SHAPES;

export function isShapeName(s: string): s is ShapeName {
  return Object.hasOwn(SHAPES, s);
}

/** Check a shape's internal consistency; throws with the offending field named. */
export function validateShape(s: ModelShape): void {
  for (const [k, v] of Object.entries(s)) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${k} must be a positive integer, got ${v}`);
  }
  if (s.hidden % s.heads !== 0) throw new Error(`hidden size ${s.hidden} is not divisible by ${s.heads} heads`);
  if (s.maxSeqLength > s.maxPositions) throw new Error(`max sequence length ${s.maxSeqLength} exceeds max positions ${s.maxPositions}`);
}
