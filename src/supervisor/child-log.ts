/**
 * A child's output: appended to `<log_dir>/<name>.log`, rotated at a size cap
 * (`<name>.log.1` ... `<name>.log.<max_files>`), and its last lines kept in memory for the API,
 * numbered from the first line ever seen so a client can page with start/end.
 */
import { appendFileSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';

export interface ChildLogOptions {
  dir: string;
  name: string;
  maxBytes: number;
  maxFiles: number;
  tailLines: number;
}

export class ChildLog {
  readonly file: string;
  private size: number;
  private readonly lines: string[] = [];
  /** Number of lines ever seen; lines[] holds the last of them. */
  private total = 0;
  private partial = '';

  constructor(private readonly o: ChildLogOptions) {
    mkdirSync(o.dir, { recursive: true });
    this.file = path.join(o.dir, `${o.name}.log`);
    try {
      this.size = statSync(this.file).size;
    } catch {
      this.size = 0;
    }
  }

  /** Append a chunk of output (may hold partial lines). */
  write(chunk: string | Buffer): void {
    const text = this.partial + chunk.toString();
    const parts = text.split('\n');
    this.partial = parts.pop() ?? '';
    for (const line of parts) this.line(line);
  }

  /** A line from the manager itself (spawn, exit, restart reasons). */
  note(message: string): void {
    this.line(`[teiplex] ${new Date().toISOString()} ${message}`);
  }

  private line(line: string): void {
    this.total++;
    this.lines.push(line);
    if (this.lines.length > this.o.tailLines) this.lines.splice(0, this.lines.length - this.o.tailLines);
    const bytes = Buffer.byteLength(line) + 1;
    if (this.size + bytes > this.o.maxBytes && this.size > 0) this.rotate();
    appendFileSync(this.file, line + '\n');
    this.size += bytes;
  }

  private rotate(): void {
    rmSync(`${this.file}.${this.o.maxFiles}`, { force: true });
    for (let i = this.o.maxFiles - 1; i >= 1; i--) {
      try {
        renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`);
      } catch {
        /* not there yet */
      }
    }
    renameSync(this.file, `${this.file}.1`);
    this.size = 0;
  }

  /** Flush a trailing partial line (the child exited). */
  flush(): void {
    if (this.partial !== '') {
      const p = this.partial;
      this.partial = '';
      this.line(p);
    }
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

  /** The last `n` lines. */
  tail(n: number): string[] {
    return this.lines.slice(-n);
  }
}
