import { TeiplexError } from '../common/errors.js';
import type { TableFormat } from './table-format.js';
// Placeholder until the Arrow/Parquet reader lands.
export interface TableRows { format: TableFormat; length: number; texts: Array<string | null>; ids: string[]; textColumn: string; idColumn: string | null }
export function readTable(_bytes: Uint8Array, o: { format: TableFormat; textColumn?: string; idColumn?: string; maxRows: number; maxBytes: number }): TableRows {
  throw new TeiplexError('BAD_REQUEST', `${o.format} input is not supported yet`);
}
