/**
 * One benchmark run, wired: the mode's client, the texts cut into requests and built before the
 * clock starts, a connection check, the closed loop, the report.
 */
import type { BenchMode, ModeFactory } from './mode.js';
import { arrowMode } from './modes/arrow.js';
import { httpMode } from './modes/http.js';
import { openaiMode } from './modes/openai.js';
import { standardMode } from './modes/standard.js';
import { streamMode } from './modes/stream.js';
import type { BenchOptions, ModeName } from './options.js';
import { progressFor } from './progress.js';
import { buildReport, type BenchReport } from './report.js';
import { runLoad, type PreparedRequest } from './runner.js';

const MODE_FACTORIES: Record<ModeName, ModeFactory> = {
  standard: standardMode,
  stream: streamMode,
  arrow: arrowMode,
  http: httpMode,
  openai: openaiMode,
};

/** Texts per request: one in standard mode (one unary call per text), else --batch-size. */
export function textsPerRequest(opts: BenchOptions): number {
  return opts.mode === 'standard' ? 1 : opts.batchSize;
}

function prepareAll(mode: BenchMode, texts: readonly string[], perRequest: number): PreparedRequest[] {
  const out: PreparedRequest[] = [];
  for (let i = 0; i < texts.length; i += perRequest) {
    const chunk = texts.slice(i, i + perRequest);
    out.push({ payload: mode.prepare(chunk), texts: chunk.length });
  }
  return out;
}

export interface RunBenchIo {
  /** Notes for the operator (connection trouble); the report never goes here. */
  warn(message: string): void;
  /** Where a progress bar may be drawn (when a terminal). */
  progressStream: NodeJS.WriteStream;
}

export async function runBench(opts: BenchOptions, io: RunBenchIo): Promise<BenchReport> {
  const mode = MODE_FACTORIES[opts.mode](opts);
  try {
    const perRequest = textsPerRequest(opts);
    const requests = prepareAll(mode, opts.texts, perRequest);
    if (!(await mode.connect())) {
      io.warn(`could not connect to ${opts.endpoint.raw} within ${opts.connectTimeoutMs / 1000} s; running anyway (requests will fail and be counted)`);
    }
    const stats = await runLoad(
      mode,
      { requests, concurrency: opts.concurrency, durationMs: opts.durationSecs !== undefined ? opts.durationSecs * 1000 : undefined, warmup: opts.warmup },
      progressFor(io.progressStream, opts.progress),
    );
    return buildReport(opts, perRequest, stats);
  } finally {
    await mode.close();
  }
}
