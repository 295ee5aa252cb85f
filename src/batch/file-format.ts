/** A stored file's format (table-format.ts) from its first and last bytes. */
import { open } from 'node:fs/promises';
import { sniffFormat, type InputFormat } from './table-format.js';

export /** An input file's format from its first and last bytes. */
async function formatOf(file: string): Promise<InputFormat> {
  const fh = await open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    const head = Buffer.alloc(Math.min(8, size));
    const tail = Buffer.alloc(Math.min(8, size));
    await fh.read(head, 0, head.length, 0);
    await fh.read(tail, 0, tail.length, size - tail.length);
    return sniffFormat(head, tail);
  } finally {
    await fh.close();
  }
}
