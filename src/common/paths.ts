import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** The package root: this file is src/common/paths.ts, or dist/common/paths.js once built. */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A path inside the package (proto/, fixtures/, package.json). */
export function projectPath(...parts: string[]): string {
  return path.join(PROJECT_ROOT, ...parts);
}
