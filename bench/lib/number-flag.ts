/**
 * A benchmark's numeric flag (parseArgs gives strings): the number, or exit 2 with a message
 * naming the tool, the flag and the bound.
 */
export function numberFlag<F extends Record<string, unknown>>(tool: string, flags: F, name: keyof F & string, min: number): number {
  const v = Number(flags[name]);
  if (!Number.isFinite(v) || v < min) {
    process.stderr.write(`${tool}: --${name} must be a number >= ${min}, got '${String(flags[name])}'\n`);
    process.exit(2);
  }
  return v;
}
