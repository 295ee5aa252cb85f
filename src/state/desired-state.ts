/**
 * The one owner of the desired state: the instances (the supervisor's section) and the catalog
 * models (the catalog's section) are collected here and persisted together, in one file
 * (state-store.ts). A change is acknowledged only once the file holds it: `commit` applies a
 * change, writes, and on a failed write undoes the change and throws STATE_WRITE_FAILED; commits
 * run one at a time, so no write ever holds another commit's unacknowledged change. Boot: the
 * supervisor reads the file (`load`) and hands the models over (`restoreModels`); they are kept
 * (and written as they were) until the catalog's section takes them. Until the supervisor says
 * boot is over (`opened`), every other write and commit waits: nothing may overwrite the file
 * before it has been read and restored whole (the supervisor's own boot write is `bootSave`).
 */
import { TeiplexError } from '../common/errors.js';
import { SerialQueue } from '../common/serial-queue.js';
import { StateStore, STATE_VERSION, type LoadResult, type State, type StoredInstance, type StoredModel } from './state-store.js';

/** A part of the desired state that one component owns. */
export interface Section<T> {
  /** What to persist now. */
  snapshot(): T[];
  /** Boot: what the state file (or the config's seed) holds. */
  restore?(items: T[]): void;
}

export class DesiredState {
  readonly store: StateStore;
  private instances: Section<StoredInstance> = { snapshot: () => [] };
  private models: Section<StoredModel> | undefined;
  /** Models read at boot, kept for persistence until a catalog takes them. */
  private bootModels: StoredModel[] = [];
  private readonly commits = new SerialQueue();
  private open: () => void = () => undefined;
  /** Settles when boot has restored (or seeded) the desired state. */
  private readonly booted = new Promise<void>((resolve) => (this.open = resolve));

  constructor(file: string) {
    this.store = new StateStore(file);
  }

  get file(): string {
    return this.store.file;
  }

  /** The supervisor's section. */
  ownInstances(section: Section<StoredInstance>): void {
    this.instances = section;
  }

  /** The catalog's section; models already restored at boot are handed to it. */
  ownModels(section: Section<StoredModel>): void {
    this.models = section;
    if (this.bootModels.length > 0) section.restore?.(this.bootModels);
    this.bootModels = [];
  }

  /** Boot: the models of the state file (or the config's seed). */
  restoreModels(models: StoredModel[]): void {
    if (this.models !== undefined) this.models.restore?.(models);
    else this.bootModels = models;
  }

  state(): State {
    return { version: STATE_VERSION, instances: this.instances.snapshot(), models: this.models?.snapshot() ?? this.bootModels };
  }

  /** Boot, before `load`: the directory made, temp files of killed writes removed (their names returned). */
  prepare(): Promise<string[]> {
    return this.store.prepare();
  }

  load(): Promise<LoadResult> {
    return this.store.load();
  }

  /** Boot is over (restored or not): writes and commits held until now go ahead. */
  opened(): void {
    this.open();
  }

  /** Write the desired state as it is now (after boot); resolves once the file holds it. */
  async save(): Promise<void> {
    await this.booted;
    return this.bootSave();
  }

  /** The supervisor's write during boot, once the file has been read and everything restored. */
  async bootSave(): Promise<void> {
    try {
      await this.store.save(this.state());
    } catch (err) {
      throw new TeiplexError('STATE_WRITE_FAILED', `could not save state to ${this.store.file}: ${(err as Error).message}`);
    }
  }

  /** Apply `change` and save; if the write fails, `undo` it and throw (nothing is acknowledged). */
  commit(change: () => void, undo: () => void): Promise<void> {
    return this.commits.run(async () => {
      await this.booted;
      change();
      try {
        await this.save();
      } catch (err) {
        undo();
        throw err;
      }
    });
  }
}
