/**
 * The formats of a batch job's input and output files, told apart by their bytes (never by a
 * file name or a declared content type), with each format's content type and file extension.
 *
 * - Parquet: `PAR1` at the start (and at the end: the reader checks that one, so that a truncated
 *   Parquet file is answered as a truncated Parquet file, not as bad JSONL).
 * - Arrow IPC file: `ARROW1` at the start (the trailing magic is the reader's to check, likewise).
 * - Arrow IPC stream: starts with the continuation marker 0xFFFFFFFF (every stream written since
 *   Arrow 0.15 does).
 * - Anything else is JSONL (OpenAI's batch input); its own parser reports what is wrong with it.
 *
 * No JSONL line starts with any of these bytes (a line is a JSON object: `{`, or whitespace), so
 * the first bytes decide.
 */

export type TableFormat = 'arrow-stream' | 'arrow-file' | 'parquet';
export type InputFormat = TableFormat | 'jsonl';

export const TABLE_FORMATS: readonly TableFormat[] = ['arrow-stream', 'arrow-file', 'parquet'];

export const CONTENT_TYPE: Record<InputFormat, string> = {
  jsonl: 'application/jsonl',
  'arrow-stream': 'application/vnd.apache.arrow.stream',
  'arrow-file': 'application/vnd.apache.arrow.file',
  parquet: 'application/vnd.apache.parquet',
};

export const EXTENSION: Record<InputFormat, string> = {
  jsonl: '.jsonl',
  'arrow-stream': '.arrows',
  'arrow-file': '.arrow',
  parquet: '.parquet',
};

/** `PAR1`: the first and last four bytes of a Parquet file. */
export const PARQUET_MAGIC = Uint8Array.of(0x50, 0x41, 0x52, 0x31);
/** `ARROW1`: the first six bytes (then two of padding) and the last six of an Arrow IPC file. */
export const ARROW_FILE_MAGIC = Uint8Array.of(0x41, 0x52, 0x52, 0x4f, 0x57, 0x31);
/** The continuation marker that starts every message of an Arrow IPC stream. */
const CONTINUATION = Uint8Array.of(0xff, 0xff, 0xff, 0xff);

/** Whether `bytes` starts with `prefix`. */
export function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.byteLength < prefix.byteLength) return false;
  for (let i = 0; i < prefix.byteLength; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/** Whether `bytes` ends with `suffix`. */
export function endsWith(bytes: Uint8Array, suffix: Uint8Array): boolean {
  const at = bytes.byteLength - suffix.byteLength;
  if (at < 0) return false;
  for (let i = 0; i < suffix.byteLength; i++) if (bytes[at + i] !== suffix[i]) return false;
  return true;
}

/**
 * A file's format from its first and last bytes (at least 8 of each, fewer for a tiny file).
 * The first bytes decide (see the file comment): a file whose trailing magic is missing is still
 * its format, a truncated one, and its reader says so; so the tail does not change the answer.
 */
export function sniffFormat(head: Uint8Array, _tail: Uint8Array): InputFormat {
  if (startsWith(head, PARQUET_MAGIC)) return 'parquet';
  if (startsWith(head, ARROW_FILE_MAGIC)) return 'arrow-file';
  if (startsWith(head, CONTINUATION)) return 'arrow-stream';
  return 'jsonl';
}
