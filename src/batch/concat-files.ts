/** Files joined into one, streamed (a JSONL output or error file from its chunks' parts). */
import { createReadStream, createWriteStream } from 'node:fs';
import { once } from 'node:events';

/** `parts` (undefined ones skipped) written one after another to `dest`; false when none had anything. */
export async function concatFiles(parts: ReadonlyArray<string | undefined>, dest: string): Promise<boolean> {
  const out = createWriteStream(dest, { mode: 0o600 });
  let any = false;
  try {
    for (const p of parts) {
      if (p === undefined) continue;
      for await (const piece of createReadStream(p) as AsyncIterable<Buffer>) {
        any ||= piece.length > 0;
        if (!out.write(piece)) await once(out, 'drain');
      }
    }
  } finally {
    out.end();
    await once(out, 'close');
  }
  return any;
}
