/**
 * Crash-safe file replacement: write a temp file in the same directory, fsync it, rename it over
 * the target, fsync the directory. A reader (or a manager killed at any instant) sees the old
 * file or the new one, never a mix. `createFileExclusive` creates a file only where none exists,
 * whole or not at all. Files are created 0600 (they may hold secrets); a temp file
 * left by a write that was killed is named `.<base>.tmp-<pid>-<n>` and removed by
 * `removeStaleTemps` at the next boot.
 */
import { link, open, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';

let counter = 0;

const tempPrefix = (file: string): string => `.${path.basename(file)}.tmp-`;

/** `data` in a new temp file beside `file` (0600), on disk (fsynced); its path. */
async function writeTemp(file: string, data: string | Uint8Array): Promise<string> {
  const tmp = path.join(path.dirname(path.resolve(file)), `${tempPrefix(file)}${process.pid}-${++counter}`);
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
  return tmp;
}

async function syncDir(file: string): Promise<void> {
  const dh = await open(path.dirname(path.resolve(file)), 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = await writeTemp(file, data);
  try {
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncDir(file);
}

/**
 * Create `file` holding `data` only if no file has that name (hard link of a complete temp file:
 * the link fails with EEXIST otherwise, and a reader never sees it empty or partial). True when
 * created, false when it existed.
 */
export async function createFileExclusive(file: string, data: string | Uint8Array): Promise<boolean> {
  const tmp = await writeTemp(file, data);
  try {
    await link(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await rm(tmp, { force: true });
  }
  await syncDir(file);
  return true;
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
