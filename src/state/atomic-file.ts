/**
 * Crash-safe file replacement: write a temp file in the same directory, fsync it, rename it over
 * the target, fsync the directory. A reader (or a manager killed at any instant) sees the old
 * file or the new one, never a mix. Files are created 0600 (they may hold secrets); a temp file
 * left by a write that was killed is named `.<base>.tmp-<pid>-<n>` and removed by
 * `removeStaleTemps` at the next boot.
 */
import { open, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';

let counter = 0;

const tempPrefix = (file: string): string => `.${path.basename(file)}.tmp-`;

export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `${tempPrefix(file)}${process.pid}-${++counter}`);
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

/** Remove the temp files of `file` that killed writers left behind; returns their names. */
export async function removeStaleTemps(file: string): Promise<string[]> {
  const dir = path.dirname(path.resolve(file));
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const stale = names.filter((n) => n.startsWith(tempPrefix(file)));
  for (const n of stale) await rm(path.join(dir, n), { force: true });
  return stale;
}
