/**
 * Containment of the paths a model's files are read through. A name that comes from user input
 * (`--revision`, `--onnx-file`) or from model metadata (`modules.json` module folders, the
 * contents of `refs/<revision>`) names a file inside one root folder, the model directory or the
 * repository's folder in the hub cache, and nothing else:
 *
 * - `joinInside` is the rule on the name: a relative, '/'-separated path without `..` segments,
 *   backslashes or control characters (empty and `.` segments are dropped). Anything else is
 *   refused before the file system is touched.
 * - `existsInside` is the rule on the file system: the file's real location (every symlink
 *   followed, realpath) must be the root's real location or under it (prefix + path.sep), so a
 *   symlink that leads out of the root is refused rather than followed.
 *
 * Refusals throw the caller's error (`fail`), with a message that names where the path came from.
 */
import { realpath } from 'node:fs/promises';
import path from 'node:path';

/** Builds the caller's error type (ModelFilesError, ModelSourceError) from a message. */
export type Fail = (message: string) => Error;

/**
 * `root` joined with `rel` when `rel` is a relative path that stays inside root by its name alone;
 * throws `fail` naming `what` (e.g. "--onnx-file") otherwise.
 */
export function joinInside(root: string, rel: string, what: string, fail: Fail): string {
  const bad = (why: string): Error => fail(`${what} ${JSON.stringify(rel)} ${why}; it must be a relative path inside ${root}`);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this refuses
  if (/[\u0000-\u001f\u007f]/.test(rel)) throw bad('contains control characters');
  if (rel.includes('\\')) throw bad('contains a backslash');
  if (rel.startsWith('/') || path.isAbsolute(rel)) throw bad('is an absolute path');
  const segments = rel.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) throw bad('contains ".."');
  return path.join(root, ...segments);
}

const MISSING = new Set(['ENOENT', 'ENOTDIR']);

/**
 * Whether `file` exists, following symlinks, with its real location inside `root`'s real
 * location. False when it (or a symlink's target) is missing; throws `fail` naming `what` when it
 * leads outside the root. Only metadata is touched here: nothing outside the root is read.
 */
export async function existsInside(root: string, file: string, what: string, fail: Fail): Promise<boolean> {
  let realRoot: string;
  let real: string;
  try {
    realRoot = await realpath(root);
    real = await realpath(file);
  } catch (err) {
    if (MISSING.has((err as NodeJS.ErrnoException).code ?? '')) return false;
    throw fail(`cannot resolve ${what} (${file}): ${(err as Error).message}`);
  }
  if (real !== realRoot && !real.startsWith(realRoot.endsWith(path.sep) ? realRoot : realRoot + path.sep)) {
    throw fail(`${what} (${file}) leads outside ${root}: its real location is ${real}; symlinks must stay inside the model folder`);
  }
  return true;
}
