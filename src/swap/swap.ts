/**
 * A rolling swap of what an instance serves (model_id, revision, pooling, dtype, extra_args such
 * as the router's ONNX file flag, ...) without a gap, and checked by vectors:
 *
 * 1. the new spec is the old one with the change applied (the name cannot change; the new
 *    version gets a port of its own unless the change names one);
 * 2. a candidate Instance for the same name starts beside the old one (Supervisor.prepareSwap:
 *    placed like any instance, marked as the name's child so a crash of the manager leaves no
 *    orphan, not routable, not in the state file, its log in `<log_dir>/swap/`) and is waited
 *    for until ready (`timeout_secs`, default the startup timeout); one that exits or does not
 *    get ready refuses the swap (SWAP_FAILED);
 * 3. both versions embed the same probe texts (probe-set.ts, or the caller's): the old through
 *    the routing pool's client, the candidate through a channel of its own (candidate.ts); the
 *    output kind, pooling and dimension must match and, when `min_cosine` is given, the mean and
 *    minimum cosine must reach it (compare.ts), else SWAP_REFUSED;
 * 4. accepted: the state file gets the new spec, then the name's registry entry is the candidate
 *    (Supervisor.completeSwap: calls by the name and model_id go to the new child from then on),
 *    and the old instance is stopped like any stop, its calls in flight draining first.
 *
 * A refused or failed swap stops the candidate; the old version never stopped serving. The report
 * (what changed, each check with its figures, timings, outcome) is the answer and a log line.
 */
import { isDeepStrictEqual } from 'node:util';
import type { ReloadSwap } from '../catalog/reload.js';
import type { ChildChannelSettings } from '../child/child-channel.js';
import { TeiplexError, type ErrorCode } from '../common/errors.js';
import type { InstanceSpec } from '../config/instance-spec.js';
import type { Source } from '../state/state-store.js';
import type { ChannelPool } from '../routing/channels.js';
import { redactText } from '../runtimes/redact.js';
import type { InstanceState } from '../supervisor/instance-state.js';
import type { Supervisor } from '../supervisor/supervisor.js';
import { candidateClient, poolingOf, probe } from './candidate.js';
import { compareAnswers, type CheckResult, type CosineFigures, type ProbeAnswer } from './compare.js';
import { DEFAULT_PROBE_TEXTS } from './probe-set.js';

/** What a caller asks for: the spec fields to change, the probe, a bound on the new version's start. */
export interface SwapRequest {
  spec: Partial<InstanceSpec>;
  probe?: { texts?: string[]; min_cosine?: number };
  /** How long the new version may take to get ready (default: its startup_timeout_secs, else the config's). */
  timeout_secs?: number;
}

export type SwapOutcome = 'accepted' | 'refused' | 'failed';

export interface SwapReport {
  instance: string;
  outcome: SwapOutcome;
  /** SWAP_REFUSED (the versions differ) or SWAP_FAILED (the new one did not start or answer); null when accepted. */
  code: ErrorCode | null;
  reason: string | null;
  /** The spec fields the swap changes, old and new values. */
  changed: Record<string, { old: unknown; new: unknown }>;
  old: { port: number; pid: number | null };
  new: { port: number; pid: number | null };
  probe_texts: number;
  checks: CheckResult[];
  cosine: CosineFigures | null;
  /** Milliseconds: the new version's start until ready, the probe, the flip (state written), the old one's drain and stop, all. */
  timings_ms: { ready: number | null; probe: number | null; flip: number | null; drain: number | null; total: number };
  started_at: string;
  /** The new version's last output lines, when it did not get ready (secrets redacted). */
  new_version_output?: string[];
}

export interface SwapperOptions {
  supervisor: Supervisor;
  /** The routing pool: the old version is probed through its client. */
  channels: ChannelPool;
  channelSettings: ChildChannelSettings;
  /** A probe call's deadline (grpc_request_timeout_secs). */
  requestTimeoutMs: number;
  /** The config's startup_timeout_secs, in ms. */
  startupTimeoutMs: number;
  log: (msg: string, fields?: Record<string, unknown>) => void;
}

/** Fields a swap never takes over from the old spec: the new version runs beside the old, on ports of its own. */
const OWN_PORTS = ['port', 'prometheus_port'] as const;

/**
 * The new spec: the old one with `change` applied; the ports are the change's or newly allocated.
 * Refused (BAD_REQUEST): a name change, a change that changes nothing.
 */
export function swappedSpec(old: InstanceSpec, change: Partial<InstanceSpec>, replace = false): { spec: InstanceSpec; changed: SwapReport['changed'] } {
  if (change.name !== undefined && change.name !== old.name) throw new TeiplexError('BAD_REQUEST', `a swap cannot rename instance '${old.name}' (spec.name '${change.name}')`, { param: 'spec.name' });
  const spec = { ...(replace ? {} : old), ...change, name: old.name } as InstanceSpec;
  for (const k of OWN_PORTS) if (change[k] === undefined) delete spec[k];
  const changed: SwapReport['changed'] = {};
  const fields = new Set([...Object.keys(change), ...(replace ? Object.keys(old).filter((k) => !(OWN_PORTS as readonly string[]).includes(k)) : [])]);
  for (const k of fields as Set<keyof InstanceSpec>) {
    if (k === 'name' || isDeepStrictEqual(old[k], spec[k])) continue;
    changed[k] = { old: old[k] ?? null, new: spec[k] ?? null };
  }
  if (Object.keys(changed).length === 0) throw new TeiplexError('BAD_REQUEST', `the swap changes nothing: instance '${old.name}' already runs this spec`, { param: 'spec' });
  return { spec, changed };
}

/** A swap that did not happen: the error the route answers, with the report (an instance's, or a model's). */
export class SwapRefusal<R = SwapReport> extends TeiplexError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly report: R,
  ) {
    super(code, message);
  }
}

/** Options of one instance swap. */
export interface SwapOptions {
  /** A catalog model's replica (the model swap, model-swap.ts). */
  replica?: boolean;
  /** `req.spec` is the whole new spec, not a change to the old one (a config reload's swap). */
  replace?: boolean;
  /** Whose spec it is, for the config's [security] (default 'api'; a config reload's: 'config'). */
  source?: Source;
  /**
   * Once the checks passed, before the flip (the model swap persists the model's new spec here);
   * a failure refuses the swap. What it returns undoes it when the flip then fails.
   */
  beforeFlip?: () => Promise<() => Promise<void>>;
}

export class Swapper {
  constructor(private readonly o: SwapperOptions) {}

  /**
   * A config reload's swap (catalog/reload.ts): the instance to the config's whole spec, checked
   * without min_cosine; refused or failed: `held` (the old version serves on); not started at all
   * (the instance changed meanwhile, no port): `not swapped` (the reload replaces it as before).
   */
  readonly forReload: ReloadSwap = async (name, spec) => {
    try {
      await this.swapInstance(name, { spec }, { replace: true, source: 'config' });
      return { outcome: 'accepted' };
    } catch (err) {
      return { outcome: err instanceof SwapRefusal ? 'held' : 'not swapped', reason: (err as Error).message };
    }
  };

  /**
   * Swap instance `name` to its spec with `req.spec` applied. Resolves with the report when
   * accepted; rejects with a SwapRefusal (carrying the report) when refused or failed, with a
   * TeiplexError when the request itself is refused (nothing was started then).
   */
  async swapInstance(name: string, req: SwapRequest, o: SwapOptions = {}): Promise<SwapReport> {
    const sup = this.o.supervisor;
    const t0 = Date.now();
    const old = sup.get(name);
    if (o.replica !== true) sup.assertUnmanaged(name);
    const { spec, changed } = swappedSpec(old.spec, req.spec, o.replace);
    const texts = req.probe?.texts ?? DEFAULT_PROBE_TEXTS;
    const minCosine = req.probe?.min_cosine;
    const readyMs = req.timeout_secs !== undefined ? req.timeout_secs * 1000 : (spec.startup_timeout_secs ?? this.o.startupTimeoutMs / 1000) * 1000;

    let onTransition: (to: InstanceState, reason: string) => void = () => undefined;
    const ready = new Promise<void>((resolve, reject) => {
      onTransition = (to, reason) => {
        if (to === 'running') resolve();
        else if (to === 'backoff' || to === 'failed' || to === 'stopped') reject(new TeiplexError('SWAP_FAILED', `the new version did not start: ${reason}`));
      };
    });
    ready.catch(() => undefined); // read below; a rejection before then is not unhandled
    const candidate = await sup.prepareSwap(name, spec, { replica: o.replica, source: o.source, onTransition: (to, reason) => onTransition(to, reason) });

    const report: SwapReport = {
      instance: name,
      outcome: 'failed',
      code: 'SWAP_FAILED',
      reason: null,
      changed,
      old: { port: old.placement.port, pid: old.pid ?? null },
      new: { port: candidate.placement.port, pid: null },
      probe_texts: texts.length,
      checks: [],
      cosine: null,
      timings_ms: { ready: null, probe: null, flip: null, drain: null, total: 0 },
      started_at: new Date(t0).toISOString(),
    };
    const refuse = async (code: 'SWAP_REFUSED' | 'SWAP_FAILED', reason: string): Promise<never> => {
      report.outcome = code === 'SWAP_REFUSED' ? 'refused' : 'failed';
      report.code = code;
      report.reason = reason;
      if (code === 'SWAP_FAILED') report.new_version_output = candidate.log.tail(10).map(redactText);
      await sup.abandonSwap(candidate, `swap ${report.outcome}: ${reason}`);
      report.timings_ms.total = Date.now() - t0;
      this.o.log(`swap of instance '${name}' ${report.outcome}`, { swap: report });
      throw new SwapRefusal(code, reason, report);
    };

    // 2. The new version, beside the old one, until ready.
    const tStart = Date.now();
    candidate.start();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TeiplexError('SWAP_FAILED', `the new version was not ready within ${readyMs / 1000} s`)), readyMs);
    });
    try {
      await Promise.race([ready, late]);
    } catch (err) {
      return refuse('SWAP_FAILED', redactText((err as Error).message));
    } finally {
      clearTimeout(timer);
    }
    report.timings_ms.ready = Date.now() - tStart;
    report.new.pid = candidate.pid ?? null;

    // 3. The same texts through both versions.
    const tProbe = Date.now();
    const deadlineMs = tProbe + this.o.requestTimeoutMs;
    const newClient = candidateClient(candidate, this.o.channelSettings, this.o.requestTimeoutMs);
    let answers: [PromiseSettledResult<ProbeAnswer>, PromiseSettledResult<ProbeAnswer>];
    try {
      answers = await Promise.all([
        Promise.allSettled([probe(this.o.channels.client(old), old.spec, texts, deadlineMs)]).then((r) => r[0]),
        Promise.allSettled([probe(newClient, spec, texts, deadlineMs)]).then((r) => r[0]),
      ]);
    } finally {
      newClient.channel.close();
    }
    report.timings_ms.probe = Date.now() - tProbe;
    const [a, b] = answers;
    if (a.status === 'rejected') return refuse('SWAP_FAILED', `probing the old version failed: ${redactText((a.reason as Error).message)}`);
    if (b.status === 'rejected') return refuse('SWAP_FAILED', `probing the new version failed: ${redactText((b.reason as Error).message)}`);
    const cmp = compareAnswers(a.value, b.value, minCosine);
    report.checks = cmp.checks;
    report.cosine = cmp.cosine;
    if (!cmp.passed) return refuse('SWAP_REFUSED', cmp.reason!);

    // 4. The flip: state file first, then routing; the old version drains and stops.
    const tFlip = Date.now();
    const summary = `swapped to a new version (${Object.keys(changed).join(', ')}); pooling ${poolingOf(spec)}`;
    let undo: (() => Promise<void>) | undefined;
    try {
      undo = await o.beforeFlip?.();
      await sup.completeSwap(old, candidate, summary);
    } catch (err) {
      await sup.abandonSwap(candidate, `swap not completed: ${(err as Error).message}`);
      await undo?.().catch((e: Error) => this.o.log('undoing a swap that did not complete failed', { instance: name, error: e.message }));
      throw err;
    }
    report.timings_ms.flip = Date.now() - tFlip;
    const tDrain = Date.now();
    await sup.retire(old, 'replaced by a swap');
    report.timings_ms.drain = Date.now() - tDrain;
    report.outcome = 'accepted';
    report.code = null;
    report.timings_ms.total = Date.now() - t0;
    this.o.log(`swap of instance '${name}' accepted`, { swap: report });
    return report;
  }
}
