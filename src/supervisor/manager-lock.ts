/**
 * One manager per state file. `<state_file>.lock` (0600, replaced atomically) holds the pid and
 * kernel start time of the manager that owns the state file. A manager boots only when the lock
 * is absent or its owner is gone (pid dead, or reused by another process: other start time);
 * otherwise it refuses, naming the owner, before it touches any process: two managers on one
 * state file would stop each other's children (process-record.ts) and overwrite each other's
 * state. Checked at boot; released at a clean shutdown.
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../state/atomic-file.js';
import { matches, processStartTime, type ProcessRecord } from './process-record.js';

export class StateFileInUse extends Error {
  constructor(stateFile: string, owner: number) {
    super(`state file ${stateFile} is in use by another manager (pid ${owner}); two managers must not share a state file`);
    this.name = 'StateFileInUse';
  }
}

export class ManagerLock {
  readonly file: string;

  constructor(readonly stateFile: string) {
    this.file = `${stateFile}.lock`;
  }

  /** Take the lock, or throw StateFileInUse while its owner lives. */
  async acquire(): Promise<void> {
    let owner: Partial<ProcessRecord> | undefined;
    try {
      owner = JSON.parse(await readFile(this.file, 'utf8')) as Partial<ProcessRecord>;
    } catch {
      owner = undefined; // absent or unreadable: nobody holds it
    }
    if (typeof owner?.pid === 'number' && owner.pid !== process.pid && matches({ pid: owner.pid, start_time: typeof owner.start_time === 'number' ? owner.start_time : null })) {
      throw new StateFileInUse(this.stateFile, owner.pid);
    }
    await mkdir(path.dirname(path.resolve(this.file)), { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.file, JSON.stringify({ pid: process.pid, start_time: processStartTime(process.pid) }));
  }

  async release(): Promise<void> {
    await rm(this.file, { force: true });
  }
}
