import { TeiplexError } from '../common/errors.js';
import type { OutputType, TypedRow } from '../tei/embedding-types.js';
import type { SparseVector, TokenEmbeddings } from '../tei/types.js';
import type { TableFormat } from './table-format.js';
// Placeholder until the Arrow/Parquet writer lands.
export type OutputRows =
  | { kind: 'dense'; type: OutputType; dims: number; rows: Array<TypedRow | null> }
  | { kind: 'sparse'; rows: Array<SparseVector | null> }
  | { kind: 'multivector'; dim: number; rows: Array<TokenEmbeddings | null> };
export function chunkPart(_ids: readonly string[], _out: OutputRows): Uint8Array {
  throw new TeiplexError('BAD_REQUEST', 'table output is not supported yet');
}
export async function writeTableOutput(_parts: readonly string[], format: TableFormat, _dest: string): Promise<number> {
  throw new TeiplexError('BAD_REQUEST', `${format} output is not supported yet`);
}
