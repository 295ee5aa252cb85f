/**
 * Files of the Files API (OpenAI's `/v1/files`) on disk under `<batch_dir>/files/`: uploads
 * (purpose `batch`) and the jobs' results (`batch_output`). Each file is `<id>.data` (its bytes)
 * and `<id>.json` (what the API reports of it, and its owner); the data is written, fsynced and
 * renamed into place before its record, so a record always names complete data, and a file
 * exists exactly when its record does (data without a record, and temp files, left by a manager
 * killed in between, are removed at the next open).
 *
 * Limits, per owner (the API key's name; "" without keys): `batch_files_per_key` files and
 * `batch_storage_mb_per_key` bytes of uploads and results together; an upload at most
 * `batch_max_file_mb`. Retention: a file expires `batch_retention_hours` after it was written
 * (0: never) and `sweep` deletes it. Another owner's file is NOT_FOUND, as if it did not exist.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { TeiplexError } from '../common/errors.js';
import { writeFileAtomic } from '../state/atomic-file.js';
import type { FileObject, FilePurpose } from '../tei/batch-objects.js';
import { newId, unixSecs } from './batch-ids.js';

interface FileRecord extends FileObject {
  owner: string;
  /** Creation in ms: the order of lists (created_at is in seconds). */
  created_ms: number;
}

export interface FileStoreLimits {
  maxFileBytes: number;
  storageBytesPerOwner: number;
  filesPerOwner: number;
  /** 0: files never expire. */
  retentionSecs: number;
}

/** File ids: `file-` and 24 hex digits (nothing else reaches the disk as a name). */
const FILE_ID = /^file-[0-9a-f]{24}$/;

let tempCounter = 0;

export class FileStore {
  private readonly records = new Map<string, FileRecord>();
  private readonly dir: string;

  private constructor(
    root: string,
    private readonly limits: FileStoreLimits,
    private readonly now: () => number,
  ) {
    this.dir = path.join(root, 'files');
  }

  /** The store under `root`, its records read (and what a killed writer left removed). */
  static async open(root: string, limits: FileStoreLimits, now: () => number = Date.now): Promise<FileStore> {
    const s = new FileStore(root, limits, now);
    // The folder is made by the first upload: a manager that never sees a batch leaves no trace.
    const names = await readdir(s.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    for (const n of names) {
      if (n.startsWith('.')) await rm(path.join(s.dir, n), { force: true });
      else if (n.endsWith('.json')) {
        try {
          const r = JSON.parse(await readFile(path.join(s.dir, n), 'utf8')) as FileRecord;
          if (FILE_ID.test(r.id) && `${r.id}.json` === n) s.records.set(r.id, r);
        } catch {
          // a record that does not parse was never completed (records are written atomically): dropped below
        }
      }
    }
    for (const n of names) {
      const id = n.replace(/\.(json|data)$/, '');
      if (!n.startsWith('.') && !s.records.has(id)) await rm(path.join(s.dir, n), { force: true });
    }
    return s;
  }

  /** The path of a file's bytes (the caller checked it exists). */
  dataPath(id: string): string {
    return path.join(this.dir, `${id}.data`);
  }

  /** A file `owner` may see; NOT_FOUND otherwise. */
  get(owner: string, id: string): FileObject {
    const r = this.records.get(id);
    if (r === undefined || r.owner !== owner || this.expired(r)) throw new TeiplexError('NOT_FOUND', `no file '${String(id).slice(0, 64)}'`, { param: 'file_id' });
    return publicFile(r);
  }

  /** `owner`'s files, oldest first. */
  list(owner: string, purpose?: string): FileObject[] {
    return [...this.records.values()].filter((r) => r.owner === owner && !this.expired(r) && (purpose === undefined || r.purpose === purpose)).sort(byCreation).map(publicFile);
  }

  /** Bytes and files `owner` keeps. */
  usage(owner: string): { bytes: number; files: number } {
    let bytes = 0;
    let files = 0;
    for (const r of this.records.values()) {
      if (r.owner !== owner) continue;
      bytes += r.bytes;
      files++;
    }
    return { bytes, files };
  }

  /** The most bytes an upload by `owner` may have now (the file limit, or what is left of its storage). */
  uploadLimit(owner: string): number {
    return Math.max(0, Math.min(this.limits.maxFileBytes, this.limits.storageBytesPerOwner - this.usage(owner).bytes));
  }

  /** Refuse an upload by `owner` before reading it: too many files, or no storage left. */
  checkRoom(owner: string): void {
    const u = this.usage(owner);
    if (u.files >= this.limits.filesPerOwner) {
      throw new TeiplexError('BATCH_LIMIT_EXCEEDED', `this API key keeps ${u.files} files, the most batch_files_per_key (${this.limits.filesPerOwner}) allows; delete some first`);
    }
    if (u.bytes >= this.limits.storageBytesPerOwner) {
      throw new TeiplexError('PAYLOAD_TOO_LARGE', `this API key's files take ${mib(u.bytes)} MiB, all of batch_storage_mb_per_key (${mib(this.limits.storageBytesPerOwner)} MiB); delete some first`);
    }
  }

  /**
   * Stream an upload to a temp file; `limited()` tells after the stream ended whether it was cut
   * at `limit` bytes (then PAYLOAD_TOO_LARGE, nothing kept). Returns the temp path and its size.
   */
  async receive(stream: Readable, limit: number, limited: () => boolean): Promise<{ temp: string; bytes: number }> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const temp = this.tempPath();
    try {
      await pipeline(stream, createWriteStream(temp, { mode: 0o600 }));
      if (limited()) throw new TeiplexError('PAYLOAD_TOO_LARGE', `the file is larger than ${limit} bytes (batch_max_file_mb, or what is left of this API key's batch_storage_mb_per_key)`, { param: 'file' });
      return { temp, bytes: (await stat(temp)).size };
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
  }

  /** A temp path in the store's folder (removed at the next open if left behind). */
  tempPath(): string {
    return path.join(this.dir, `.upload-${process.pid}-${++tempCounter}`);
  }

  /**
   * Make the complete file at `temp` (moved, not copied) a file of `owner`; `id` given: that id
   * (a job's result, whose id was reserved when the job was created: writing it twice replaces it).
   */
  async adopt(owner: string, temp: string, filename: string, purpose: FilePurpose, id = newId('file-')): Promise<FileObject> {
    if (!FILE_ID.test(id)) throw new TeiplexError('BAD_REQUEST', `bad file id '${id}'`);
    const fh = await open(temp, 'r');
    let bytes: number;
    try {
      await fh.sync();
      bytes = (await fh.stat()).size;
    } finally {
      await fh.close();
    }
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await rename(temp, this.dataPath(id));
    const ms = this.now();
    const created = unixSecs(ms);
    const r: FileRecord = {
      id,
      object: 'file',
      bytes,
      created_at: created,
      expires_at: this.limits.retentionSecs > 0 ? created + Math.ceil(this.limits.retentionSecs) : null,
      filename: cleanName(filename),
      purpose,
      status: 'processed',
      status_details: null,
      owner,
      created_ms: ms,
    };
    await writeFileAtomic(path.join(this.dir, `${id}.json`), JSON.stringify(r));
    this.records.set(id, r);
    return publicFile(r);
  }

  /** Delete `owner`'s file; NOT_FOUND if it has none of that id. */
  async delete(owner: string, id: string): Promise<void> {
    this.get(owner, id);
    await this.remove(id);
  }

  /** Delete files past their expiry; their ids. */
  async sweep(): Promise<string[]> {
    const gone = [...this.records.values()].filter((r) => this.expired(r)).map((r) => r.id);
    for (const id of gone) await this.remove(id);
    return gone;
  }

  private async remove(id: string): Promise<void> {
    this.records.delete(id);
    // The record first: a file without its record is gone (and its data removed at the next open).
    await rm(path.join(this.dir, `${id}.json`), { force: true });
    await rm(this.dataPath(id), { force: true });
  }

  private expired(r: FileRecord): boolean {
    return r.expires_at !== null && r.expires_at * 1000 <= this.now();
  }
}

function publicFile(r: FileRecord): FileObject {
  const { owner: _owner, created_ms: _ms, ...o } = r;
  return o;
}

const byCreation = (a: FileRecord, b: FileRecord): number => a.created_ms - b.created_ms || (a.id < b.id ? -1 : 1);

const mib = (b: number): string => (b / (1024 * 1024)).toFixed(1);

/** A file name as reported: its last path segment, printable, at most 255 characters. */
function cleanName(name: string): string {
  const base = name.split(/[\\/]/).pop() ?? '';
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is removed
  const clean = base.replace(/[\u0000-\u001f\u007f]/g, '').slice(0, 255);
  return clean === '' ? 'file' : clean;
}
