/**
 * The desired state (instance specs + whether each should run), persisted as TOML with atomic
 * replacement. One writer: saves are serialized, and a burst of saves collapses into writing the
 * latest state once, while every caller still waits until a state at least as new as its own is
 * on disk. The file and its directory are private to the manager's user (0600 / 0700 when created).
 */
import { mkdir, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { stringify as stringifyToml } from 'smol-toml';
import { parseTomlPlain } from '../config/toml.js';
import { InstanceSpecSchema } from '../config/instance-spec.js';
import { ModelSpecSchema } from '../config/model-spec.js';
import { check } from '../config/validate.js';
import { removeStaleTemps, writeFileAtomic } from './atomic-file.js';

export const STATE_VERSION = 1;

/** Where an instance or model came from: the config (a reload may change or remove it) or the REST API. */
export const SourceSchema = Type.Union([Type.Literal('config'), Type.Literal('api')]);
export type Source = Static<typeof SourceSchema>;

export const StoredInstanceSchema = Type.Composite([
  InstanceSpecSchema,
  Type.Object({
    desired_state: Type.Union([Type.Literal('running'), Type.Literal('stopped')]),
    created_at: Type.String(),
    source: SourceSchema,
  }),
]);
export type StoredInstance = Static<typeof StoredInstanceSchema>;

/** A catalog model: its spec, where it came from, and the footprint measured when it last ran. */
export const StoredModelSchema = Type.Composite([
  ModelSpecSchema,
  Type.Object({
    source: SourceSchema,
    created_at: Type.String(),
    /** Measured memory of one replica (MiB): GPU memory, else resident memory. */
    footprint_mb: Type.Optional(Type.Number({ minimum: 0 })),
  }),
]);
export type StoredModel = Static<typeof StoredModelSchema>;

export const StateSchema = Type.Object({
  version: Type.Literal(STATE_VERSION),
  instances: Type.Array(StoredInstanceSchema),
  models: Type.Array(StoredModelSchema),
});
export type State = Static<typeof StateSchema>;

export type LoadResult = { kind: 'missing' } | { kind: 'ok'; state: State } | { kind: 'corrupt'; reason: string; movedTo: string };

/** Drop undefined fields: TOML has no null. */
function clean(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(clean);
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined).map(([k, x]) => [k, clean(x)]));
  }
  return v;
}

export function serializeState(state: State): string {
  return `# teiplex desired state; written atomically by the manager, do not edit while it runs\n${stringifyToml(clean(state) as Record<string, unknown>)}\n`;
}

export function parseState(text: string, where: string): State {
  return check(StateSchema, parseTomlPlain(text), where);
}

export interface StateStoreStats {
  writes: number;
  failures: number;
}

export class StateStore {
  private pending: State | undefined;
  private writing: Promise<void> | undefined;
  readonly stats: StateStoreStats = { writes: 0, failures: 0 };
  /** Called after each write attempt (metrics). */
  onWrite: (ok: boolean, seconds: number) => void = () => undefined;

  constructor(readonly file: string) {}

  /** Boot, before `load`: create the directory (0700) and remove temp files of killed writes (their names returned). */
  async prepare(): Promise<string[]> {
    await mkdir(path.dirname(path.resolve(this.file)), { recursive: true, mode: 0o700 });
    return removeStaleTemps(this.file);
  }

  /** Read the state file; a corrupt one is moved aside (`<file>.corrupt-<time>`), never overwritten. */
  async load(): Promise<LoadResult> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
      throw err;
    }
    try {
      return { kind: 'ok', state: parseState(text, this.file) };
    } catch (err) {
      const movedTo = `${this.file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      await rename(this.file, movedTo);
      return { kind: 'corrupt', reason: (err as Error).message, movedTo };
    }
  }

  /** Persist `state`; resolves once it (or a newer state) is on disk. */
  save(state: State): Promise<void> {
    this.pending = structuredClone(state);
    if (this.writing === undefined) this.writing = this.drain();
    const mine = this.writing;
    // A write already in flight may predate this state: wait for the one after it.
    return mine.then(() => (this.pending === undefined ? undefined : this.save(this.pending)));
  }

  private async drain(): Promise<void> {
    try {
      while (this.pending !== undefined) {
        const state = this.pending;
        this.pending = undefined;
        const t0 = process.hrtime.bigint();
        try {
          await writeFileAtomic(this.file, serializeState(state));
          this.stats.writes++;
          this.onWrite(true, Number(process.hrtime.bigint() - t0) / 1e9);
        } catch (err) {
          this.stats.failures++;
          this.onWrite(false, Number(process.hrtime.bigint() - t0) / 1e9);
          throw err;
        }
      }
    } finally {
      this.writing = undefined;
    }
  }
}
