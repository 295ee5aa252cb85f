/** Batch input and output formats, told apart by their bytes. */
export type TableFormat = 'arrow-stream' | 'arrow-file' | 'parquet';
export type InputFormat = TableFormat | 'jsonl';

const ascii = (b: Uint8Array, from: number, n: number): string => Buffer.from(b.subarray(from, from + n)).toString('latin1');

/** A file's format from its first and last bytes. */
export function sniffFormat(head: Uint8Array, tail: Uint8Array): InputFormat {
  if (ascii(head, 0, 4) === 'PAR1' && ascii(tail, tail.length - 4, 4) === 'PAR1') return 'parquet';
  if (ascii(head, 0, 6) === 'ARROW1') return 'arrow-file';
  if (head.length >= 4 && head[0] === 0xff && head[1] === 0xff && head[2] === 0xff && head[3] === 0xff) return 'arrow-stream';
  return 'jsonl';
}

export const CONTENT_TYPE: Record<InputFormat, string> = {
  jsonl: 'application/jsonl',
  'arrow-stream': 'application/vnd.apache.arrow.stream',
  'arrow-file': 'application/vnd.apache.arrow.file',
  parquet: 'application/vnd.apache.parquet',
};

export const EXTENSION: Record<InputFormat, string> = { jsonl: '.jsonl', 'arrow-stream': '.arrows', 'arrow-file': '.arrow', parquet: '.parquet' };
