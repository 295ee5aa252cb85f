/**
 * One reconcile, desired against actual, for everything a config reload applies (instances and
 * catalog models): what the config no longer names is deleted, what it names with another spec is
 * replaced (deleted, then created anew), what it names unchanged is not touched, what is new is
 * created. Only the items the caller `owns` (those that came from the config) are compared: an
 * item created otherwise keeps its name, and a desired item of that name is skipped with the
 * reason. Deletions all happen before any creation (a replaced item frees its port, its name,
 * its memory first). A creation that throws is skipped with its message; nothing else is undone.
 */
export interface ReconcileReport {
  added: string[];
  removed: string[];
  changed: string[];
  unchanged: string[];
  skipped: Array<{ name: string; reason: string }>;
}

export interface ReconcileTarget<Spec> {
  nameOf(spec: Spec): string;
  /** The items this reconcile may change: name -> current spec. */
  owned(): Iterable<[string, Spec]>;
  /** Is the running item's spec what the config asks for? */
  same(desired: Spec, current: Spec): boolean;
  /** Why `name` cannot be created though nothing owned has it (another owner holds it); undefined: it can. */
  conflict?(name: string): string | undefined;
  delete(name: string, why: 'removed' | 'changed'): Promise<void>;
  create(spec: Spec): Promise<void>;
}

export async function reconcile<Spec>(desired: readonly Spec[], t: ReconcileTarget<Spec>): Promise<ReconcileReport> {
  const report: ReconcileReport = { added: [], removed: [], changed: [], unchanged: [], skipped: [] };
  const wanted = new Map(desired.map((s) => [t.nameOf(s), s]));
  const replaced = new Set<string>();
  const unchanged = new Set<string>();
  for (const [name, current] of [...t.owned()]) {
    const spec = wanted.get(name);
    if (spec !== undefined && t.same(spec, current)) {
      unchanged.add(name);
      report.unchanged.push(name);
      continue;
    }
    await t.delete(name, spec === undefined ? 'removed' : 'changed');
    if (spec === undefined) report.removed.push(name);
    else replaced.add(name);
  }
  for (const spec of desired) {
    const name = t.nameOf(spec);
    if (unchanged.has(name)) continue;
    const conflict = t.conflict?.(name);
    if (conflict !== undefined) {
      report.skipped.push({ name, reason: conflict });
      continue;
    }
    try {
      await t.create(spec);
      (replaced.has(name) ? report.changed : report.added).push(name);
    } catch (err) {
      report.skipped.push({ name, reason: (err as Error).message });
    }
  }
  return report;
}
