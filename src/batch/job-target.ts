/**
 * What a batch job calls: a model by name, on behalf of the key that owns the job, on the bulk
 * lane. The manager's data plane implements it (src/http/data-plane/job-target.ts): the same
 * resolution and authorization as a request naming that model, a cold start of an on-demand
 * model (waiting for memory like any), the call counted in flight on the instance it runs on.
 */
import type { InputType, ModelPrompts } from '../tei/input-types.js';
import type { CallOptions, Capability, Engine } from '../tei/types.js';

export type { InputType };

/** One call's target: a serving instance's engine and the facts the job needs of it. */
export interface JobModel {
  readonly engine: Engine;
  /** Every call's options: the bulk lane, a deadline, the job's abort signal. */
  readonly call: CallOptions;
  /** OpenAI's `model` in the answers: the name the job gave. */
  readonly modelName: string;
  /** What `truncate` means when left out (the child's --auto-truncate). */
  readonly autoTruncate: boolean;
  readonly prompts?: ModelPrompts;
}

export interface JobTarget {
  /**
   * Throws what a request naming `model` would get before anything starts (MODEL_NOT_FOUND,
   * PERMISSION_DENIED); else what the model's rows are embedded as by default (sparse for SPLADE).
   */
  check(owner: string, model: string): Promise<'dense' | 'sparse'>;
  /** Run `fn` on an instance of `model` that can do `need` (starting the model if none serves); throws TeiplexError. */
  run<T>(owner: string, model: string, need: Capability, signal: AbortSignal, fn: (m: JobModel) => Promise<T>): Promise<T>;
}
