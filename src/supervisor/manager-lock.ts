/**
 * One manager per state file. `<state_file>.lock` (0600, replaced atomically) holds the pid and
 * kernel start time of the manager that owns the state file. A manager boots only when the lock
 * is absent or its owner is gone (pid dead, or reused by another process: other start time);
 * otherwise it refuses, naming the owner, before it touches any process: two managers on one
 * state file would stop each other's children (process-record.ts) and overwrite each other's
 * state. Checked at boot; released at a clean shutdown.
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { createFileExclusive, writeFileAtomic } from '../state/atomic-file.js';
import { matches, processStartTime, type ProcessRecord } from './process-record.js';

export class StateFileInUse extends Error {
  constructor(stateFile: string, owner: number) {
    super(`state file ${stateFile} is in use by another manager (pid ${owner}); two managers must not share a state file`);
    this.name = 'StateFileInUse';
  }
}

/** How long a manager that took over a stale lock waits before checking nobody else took it too. */
const TAKEOVER_SETTLE_MS = 250;

export class ManagerLock {
  readonly file: string;

  constructor(readonly stateFile: string) {
    this.file = `${stateFile}.lock`;
  }

  /**
   * Take the lock, or throw StateFileInUse while its owner lives. No lock file: our record is
   * written whole to a temp file and hard-linked into place (link fails if the name exists), so
   * of two managers booting at once exactly one gets it and the other always reads a complete
   * record. A stale one (owner gone, or unreadable): replaced, and read again after a moment: of
   * two managers taking it over at once, the last writer holds it and the other refuses.
   */
  async acquire(): Promise<void> {
    await mkdir(path.dirname(path.resolve(this.file)), { recursive: true, mode: 0o700 });
    const me = JSON.stringify({ pid: process.pid, start_time: processStartTime(process.pid) });
    if (await createFileExclusive(this.file, me)) return;
    this.refuseIfHeld(await this.owner());
    await writeFileAtomic(this.file, me);
    await sleep(TAKEOVER_SETTLE_MS);
    this.refuseIfHeld(await this.owner());
  }

  private async owner(): Promise<Partial<ProcessRecord> | undefined> {
    try {
      return JSON.parse(await readFile(this.file, 'utf8')) as Partial<ProcessRecord>;
    } catch {
      return undefined; // absent or unreadable: nobody holds it
    }
  }

  private refuseIfHeld(owner: Partial<ProcessRecord> | undefined): void {
    if (typeof owner?.pid === 'number' && owner.pid !== process.pid && matches({ pid: owner.pid, start_time: typeof owner.start_time === 'number' ? owner.start_time : null })) {
      throw new StateFileInUse(this.stateFile, owner.pid);
    }
  }

  /** Remove the lock if it is ours (a manager that lost it, or never took it, leaves it alone). */
  async release(): Promise<void> {
    if ((await this.owner())?.pid === process.pid) await rm(this.file, { force: true });
  }
}
