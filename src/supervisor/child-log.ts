/**
 * A child's output: appended to `<log_dir>/<name>.log` (0600, directory 0700 when created),
 * rotated at a size cap (`<name>.log.1` ... `<name>.log.<max_files>`), and its last lines kept in
 * memory for the API, numbered from the first line ever seen so a client can page with start/end.
 *
 * Bounded work whatever the child prints: a line longer than `maxLineBytes` is truncated and
 * marked (the rest of it is skipped as it arrives, never buffered); lines are written to disk
 * asynchronously, off the event loop, with at most `bufferBytes` waiting: beyond that lines are
 * dropped, counted, and a marker line says how many. A failed write (ENOSPC, EIO, EMFILE, ...)
 * never throws: it is counted, reported through `onError`, and the writer carries on with the
 * next lines.
 */
import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';

export interface ChildLogOptions {
  dir: string;
  name: string;
  maxBytes: number;
  maxFiles: number;
  tailLines: number;
  maxLineBytes: number;
  bufferBytes: number;
  /** Remove log files left by an earlier instance of the same name before the first write. */
  fresh?: boolean;
  /** A write failed (the lines of that write are lost; later lines are still tried); at most once per ERROR_REPORT_MS. */
  onError?: (err: Error) => void;
}

/** A disk that keeps failing is reported once per this interval (every failure is counted). */
const ERROR_REPORT_MS = 10_000;

export class ChildLog {
  readonly file: string;
  private fh: FileHandle | undefined;
  private size = 0;
  private fresh: boolean;
  private readonly lines: string[] = [];
  /** Number of lines ever seen; lines[] holds the last of them. */
  private total = 0;
  private partial = '';
  /** Bytes of the current (unfinished) line skipped past maxLineBytes. */
  private skipped = 0;
  private readonly decoder = new StringDecoder('utf8');
  private queue: string[] = [];
  private queuedBytes = 0;
  private writing: Promise<void> | undefined;
  private unreportedDrops = 0;
  /** Lines not written to disk: the buffer was full, or their write failed. */
  droppedLines = 0;
  writeErrors = 0;
  private reportedAt = -Infinity;
  /** Followers of new lines (the status page's log tail): told each line as it is kept. */
  private readonly followers = new Set<(line: string, n: number) => void>();

  constructor(private readonly o: ChildLogOptions) {
    this.file = path.join(o.dir, `${o.name}.log`);
    this.fresh = o.fresh === true;
  }

  /** Append a chunk of output (may hold partial lines, or split a UTF-8 character). */
  write(chunk: string | Buffer): void {
    const text = typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    let start = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
      this.append(text.slice(start, nl));
      this.line(this.takeLine());
      start = nl + 1;
    }
    this.append(text.slice(start));
  }

  /** Add to the unfinished line, keeping at most maxLineBytes characters of it. */
  private append(piece: string): void {
    const room = this.o.maxLineBytes - this.partial.length;
    if (piece.length <= room) {
      this.partial += piece;
      return;
    }
    this.partial += piece.slice(0, Math.max(0, room));
    this.skipped += Buffer.byteLength(piece.slice(Math.max(0, room)));
  }

  private takeLine(): string {
    let line = this.partial;
    let skipped = this.skipped;
    this.partial = '';
    this.skipped = 0;
    const bytes = Buffer.from(line);
    if (bytes.length > this.o.maxLineBytes) {
      skipped += bytes.length - this.o.maxLineBytes;
      line = bytes.subarray(0, this.o.maxLineBytes).toString().replace(/\uFFFD$/, '');
    }
    return skipped > 0 ? `${line} [teiplex: line truncated, ${skipped} more bytes dropped]` : line;
  }

  /** A line from the manager itself (spawn, exit, restart reasons). */
  note(message: string): void {
    this.line(`[teiplex] ${new Date().toISOString()} ${message}`);
  }

  private line(line: string): void {
    this.total++;
    this.lines.push(line);
    if (this.lines.length > this.o.tailLines) this.lines.splice(0, this.lines.length - this.o.tailLines);
    for (const f of this.followers) f(line, this.total - 1);
    const text = line + '\n';
    const bytes = Buffer.byteLength(text);
    if (this.queuedBytes + bytes > this.o.bufferBytes) {
      this.droppedLines++;
      this.unreportedDrops++;
      return;
    }
    this.queue.push(text);
    this.queuedBytes += bytes;
    this.writing ??= this.drain().finally(() => (this.writing = undefined));
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue;
      this.queue = [];
      this.queuedBytes = 0;
      if (this.unreportedDrops > 0) {
        batch.push(`[teiplex] ${new Date().toISOString()} ${this.unreportedDrops} lines dropped: the log writer fell behind (log_buffer_bytes)\n`);
        this.unreportedDrops = 0;
      }
      try {
        await this.writeBatch(batch);
      } catch (err) {
        this.writeErrors++;
        this.droppedLines += batch.length;
        await this.fh?.close().catch(() => undefined);
        this.fh = undefined; // reopen on the next write (the file may have gone)
        if (Date.now() - this.reportedAt >= ERROR_REPORT_MS) {
          this.reportedAt = Date.now();
          this.o.onError?.(err as Error);
        }
      }
    }
  }

  private async writeBatch(batch: string[]): Promise<void> {
    await this.handle();
    let chunk = '';
    let chunkBytes = 0;
    for (const text of batch) {
      const bytes = Buffer.byteLength(text);
      if (this.size + chunkBytes + bytes > this.o.maxBytes && this.size + chunkBytes > 0) {
        await this.put(chunk, chunkBytes);
        chunk = '';
        chunkBytes = 0;
        await this.rotate();
      }
      chunk += text;
      chunkBytes += bytes;
    }
    await this.put(chunk, chunkBytes);
  }

  private async put(chunk: string, bytes: number): Promise<void> {
    if (bytes === 0) return;
    await (await this.handle()).appendFile(chunk);
    this.size += bytes;
  }

  private async handle(): Promise<FileHandle> {
    if (this.fh !== undefined) return this.fh;
    await mkdir(this.o.dir, { recursive: true, mode: 0o700 });
    if (this.fresh) {
      await this.removeFiles();
      this.fresh = false;
    }
    const fh = await open(this.file, 'a', 0o600);
    this.size = (await fh.stat()).size;
    this.fh = fh;
    return fh;
  }

  private async rotate(): Promise<void> {
    await this.fh?.close();
    this.fh = undefined;
    await rm(`${this.file}.${this.o.maxFiles}`, { force: true });
    for (let i = this.o.maxFiles - 1; i >= 1; i--) {
      await rename(`${this.file}.${i}`, `${this.file}.${i + 1}`).catch(() => undefined); // not there yet
    }
    await rename(this.file, `${this.file}.1`);
    await this.handle();
  }

  private async removeFiles(): Promise<void> {
    await rm(this.file, { force: true });
    for (let i = 1; i <= this.o.maxFiles; i++) await rm(`${this.file}.${i}`, { force: true });
  }

  /** Flush a trailing partial line (the child exited). */
  flush(): void {
    this.append(this.decoder.end());
    if (this.partial !== '' || this.skipped > 0) this.line(this.takeLine());
  }

  /** Wait until every line accepted so far has been written (or dropped), then close the file. */
  async close(): Promise<void> {
    while (this.writing !== undefined) await this.writing;
    await this.fh?.close().catch(() => undefined);
    this.fh = undefined;
  }

  /** Close, then delete the log files (the instance was deleted). */
  async remove(): Promise<void> {
    await this.close();
    this.queue = [];
    await this.removeFiles();
  }

  get totalLines(): number {
    return this.total;
  }

  /** Lines [start, end) by absolute number; only the in-memory tail is available. */
  range(start?: number, end?: number): { lines: string[]; start: number; end: number; total_lines: number } {
    const first = this.total - this.lines.length;
    const s = Math.max(first, Math.min(start ?? first, this.total));
    const e = Math.max(s, Math.min(end ?? this.total, this.total));
    return { lines: this.lines.slice(s - first, e - first), start: s, end: e, total_lines: this.total };
  }

  /** Tell `listener` every line kept from now on (its absolute number too); returns the unfollow. */
  follow(listener: (line: string, n: number) => void): () => void {
    this.followers.add(listener);
    return () => void this.followers.delete(listener);
  }

  /** The last `n` lines. */
  tail(n: number): string[] {
    return this.lines.slice(-n);
  }
}
