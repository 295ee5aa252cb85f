/**
 * What a benchmark mode is to the runner: it builds each request before the clock starts
 * (protobuf objects, Arrow IPC bytes, JSON bodies), sends one request at a time per caller, and
 * throws on failure. A mode checks that an answer has one result per text sent: a short answer
 * is a failure (`BAD_RESPONSE`), not a success.
 */
import type { BenchOptions } from './options.js';

export interface BenchMode<P = unknown> {
  /** Build the request for these texts (not timed). */
  prepare(texts: string[]): P;
  /** Send it and wait for the whole answer; throws on any failure (see errors.ts for codes). */
  send(request: P): Promise<void>;
  /** Before the clock starts: connect, where the protocol allows it. Resolves false if it could not. */
  connect(): Promise<boolean>;
  close(): Promise<void>;
}

export type ModeFactory = (opts: BenchOptions) => BenchMode;

/** An answer that does not fit the request (wrong row count, unreadable body). */
export class BadResponseError extends Error {
  readonly code = 'BAD_RESPONSE';
  constructor(message: string) {
    super(message);
    this.name = 'BadResponseError';
  }
}

/** Fail unless `got` results answer `sent` texts. */
export function expectCount(what: string, got: number, sent: number): void {
  if (got !== sent) throw new BadResponseError(`${what}: ${got} results for ${sent} texts`);
}
