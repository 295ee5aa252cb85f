/**
 * The soak's admin changes through the REST API, and the observations the expected state is
 * checked against.
 *
 * A change picks a churn instance whose state is known (no unanswered change pending on it) and
 * an operation that makes sense for that state (absent: create, started or not; running: stop,
 * restart or delete; stopped: start or delete), or, one time in ten, one the manager must refuse
 * (create an existing name, stop a stopped instance, start a running one). Its answer updates the
 * ExpectedState (see there) and is recorded.
 *
 * Observations: GET /instances (catalog replicas left out: the catalog model is what persists)
 * with GET /models, or the state file parsed; catalog models appear as `model:<name>` = running.
 */
import { readFileSync } from 'node:fs';
import { parseState } from '../../src/state/state-store.js';
import type { Desired, ExpectedState } from './expected-state.js';
import { errorCode, httpCall } from './http-call.js';
import { RUN_ID_VAR } from './processes.js';
import type { AdminResult, Recorder } from './recorder.js';

interface Op {
  op: string;
  method: string;
  path: string;
  body?: unknown;
  /** The state if the manager acknowledges it. */
  to: Desired;
}

const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;

export interface AdminOptions {
  base: string;
  churnNames: string[];
  /** model_id of the churn instances. */
  modelId: string;
  runId: string;
  deadlineMs: number;
}

export class Admin {
  constructor(
    private readonly o: AdminOptions,
    private readonly expected: ExpectedState,
    private readonly rec: Recorder,
  ) {}

  private ops(name: string, state: Desired): Op[] {
    const base = `/instances/${name}`;
    const spec = { name, model_id: this.o.modelId, env: { [RUN_ID_VAR]: this.o.runId }, extra_args: ['--auto-truncate'] };
    const create = (start: boolean): Op => ({ op: start ? 'create' : 'create-stopped', method: 'POST', path: start ? '/instances' : '/instances?start=false', body: spec, to: start ? 'running' : 'stopped' });
    const refused = Math.random() < 0.1;
    switch (state) {
      case 'absent':
        return refused ? [{ op: 'stop-missing', method: 'POST', path: `${base}/stop`, to: 'absent' }] : [create(true), create(true), create(false)];
      case 'running':
        return refused
          ? [{ ...create(true), op: 'create-existing', to: 'running' }, { op: 'start-running', method: 'POST', path: `${base}/start`, to: 'running' }]
          : [
              { op: 'stop', method: 'POST', path: `${base}/stop`, to: 'stopped' },
              { op: 'restart', method: 'POST', path: `${base}/restart`, to: 'running' },
              { op: 'delete', method: 'DELETE', path: base, to: 'absent' },
            ];
      case 'stopped':
        return refused
          ? [{ op: 'stop-stopped', method: 'POST', path: `${base}/stop`, to: 'stopped' }]
          : [
              { op: 'start', method: 'POST', path: `${base}/start`, to: 'running' },
              { op: 'delete', method: 'DELETE', path: base, to: 'absent' },
            ];
    }
  }

  /** One change on a churn instance whose state is known; undefined when none is. */
  async change(): Promise<AdminResult | undefined> {
    const known = this.o.churnNames.flatMap((n) => {
      const s = this.expected.known(n);
      return s === undefined ? [] : [[n, s] as const];
    });
    if (known.length === 0) return undefined;
    const [name, state] = pick(known);
    const op = pick(this.ops(name, state));
    const t0 = performance.now();
    const r = await httpCall(this.o.base, op.method, op.path, op.body, this.o.deadlineMs);
    const ms = performance.now() - t0;
    let result: AdminResult;
    if (r.kind === 'answer' && r.status < 300) {
      result = 'acknowledged';
      this.expected.acknowledged(name, op.to);
    } else if (r.kind === 'answer' && r.status < 500) {
      result = 'refused';
    } else if (r.kind === 'failed' && r.reached === 'no') {
      result = 'not-reached';
    } else {
      result = r.kind === 'answer' ? 'server-error' : 'no-answer';
      this.expected.ambiguous(name, op.to);
    }
    this.rec.adminChange({
      op: op.op,
      name,
      result,
      status: r.kind === 'answer' ? r.status : undefined,
      code: r.kind === 'answer' ? errorCode(r.body) : r.kind === 'failed' ? r.code : 'timeout',
      ms,
    });
    return result;
  }
}

type InstanceRow = { name: string; desired_state: 'running' | 'stopped'; model?: string | null };

/** What the manager answers: its instances' desired states and its catalog models; undefined if it does not answer both. */
export async function observeApi(base: string, timeoutMs: number): Promise<Map<string, Desired> | undefined> {
  const [instances, models] = await Promise.all([httpCall(base, 'GET', '/instances', undefined, timeoutMs), httpCall(base, 'GET', '/models', undefined, timeoutMs)]);
  if (instances.kind !== 'answer' || instances.status !== 200 || models.kind !== 'answer' || models.status !== 200) return undefined;
  const out = new Map<string, Desired>();
  for (const i of instances.body as InstanceRow[]) if (i.model === null || i.model === undefined) out.set(i.name, i.desired_state);
  for (const m of models.body as Array<{ name: string }>) out.set(`model:${m.name}`, 'running');
  return out;
}

/** What the state file holds (it must parse: a file that does not is reported by the caller). */
export function observeStateFile(file: string): Map<string, Desired> {
  const state = parseState(readFileSync(file, 'utf8'), file);
  const out = new Map<string, Desired>();
  for (const i of state.instances) out.set(i.name, i.desired_state);
  for (const m of state.models ?? []) out.set(`model:${m.name}`, 'running');
  return out;
}
