/**
 * A one-line progress bar on stderr, redrawn at most ten times a second: texts done (or seconds
 * elapsed with --duration), texts/s so far and failures. Drawn only when stderr is a terminal, so
 * piped or captured output (CI, scripts reading the JSON) stays clean.
 */
import { performance } from 'node:perf_hooks';
import type { ProgressSink } from './runner.js';

const WIDTH = 30;
const REDRAW_MS = 100;

export class ProgressBar implements ProgressSink {
  private goal: { texts?: number; durationMs?: number } = {};
  private state = { successfulTexts: 0, failedTexts: 0 };
  private started = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly out: NodeJS.WriteStream = process.stderr) {}

  begin(goal: { texts?: number; durationMs?: number }): void {
    this.goal = goal;
    this.started = performance.now();
    this.timer = setInterval(() => this.draw(), REDRAW_MS);
    this.timer.unref();
  }

  tick(state: { successfulTexts: number; failedTexts: number }): void {
    this.state = { successfulTexts: state.successfulTexts, failedTexts: state.failedTexts };
  }

  end(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.draw();
    this.out.write('\n');
  }

  private draw(): void {
    const elapsedMs = performance.now() - this.started;
    const done = this.state.successfulTexts + this.state.failedTexts;
    let fraction: number;
    let counter: string;
    if (this.goal.durationMs !== undefined) {
      fraction = elapsedMs / this.goal.durationMs;
      counter = `${(elapsedMs / 1000).toFixed(1)}/${(this.goal.durationMs / 1000).toFixed(0)} s, ${done} texts`;
    } else {
      const total = this.goal.texts ?? 0;
      fraction = total > 0 ? done / total : 1;
      counter = `${done}/${total} texts`;
    }
    fraction = Math.min(1, Math.max(0, fraction));
    const filled = Math.round(fraction * WIDTH);
    const rate = elapsedMs > 0 ? (this.state.successfulTexts * 1000) / elapsedMs : 0;
    const failed = this.state.failedTexts > 0 ? `, ${this.state.failedTexts} failed` : '';
    const line = `[${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${counter}, ${rate.toFixed(1)} texts/s${failed}`;
    this.out.write(`\r${line}\x1b[K`);
  }
}

/** A progress bar when `stream` is a terminal (and progress is wanted), else nothing. */
export function progressFor(stream: NodeJS.WriteStream, wanted: boolean): ProgressBar | undefined {
  return wanted && stream.isTTY ? new ProgressBar(stream) : undefined;
}
