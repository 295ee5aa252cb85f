/**
 * What the status page's event stream says (GET /events; docs/status-page.md lists the events
 * and their payloads):
 *
 * - `snapshot` first, to each new stream: instances (as GET /instances, plus `memory_mb`: the
 *   child's measured footprint), catalog models (as GET /models), memory per device (as
 *   GET /memory: `{devices}`), the recent state changes, and the stream's limits;
 * - then what changes: `instance` (an instance's record, on each transition of the supervisor and
 *   whenever its shown fields change), `instance_deleted` (`{name}`), `model` (a catalog model's
 *   record, on each state change of the catalog and when its shown fields change),
 *   `model_deleted` (`{name}`), `memory` (`{devices}` when use or budgets change), `change` (one
 *   state change: instance or model, from, to, reason, time);
 * - with `?logs=NAME`: the last lines of that instance's log, then each new line, as `log`
 *   (`{instance, n, line}`; secrets redacted, and shown by the page as text only).
 *
 * Transitions come from the supervisor's and the catalog's own events (published there for the
 * catalog and the metrics); fields that change without a transition (footprints, memory, restarts
 * counted at a spawn, models added or removed) are compared every `refreshMs` while a stream is
 * open. Nothing is polled while nobody watches; the recent changes are always kept (the last
 * RECENT_CHANGES).
 */
import type { Catalog } from '../catalog/catalog.js';
import { redactText } from '../runtimes/redact.js';
import type { Instance } from '../supervisor/instance.js';
import type { Supervisor } from '../supervisor/supervisor.js';
import { instanceInfo, type InstanceInfo } from './admin-routes.js';
import type { EventStream, EventStreams } from './event-stream.js';
import { modelInfo, type ModelInfo } from './model-routes.js';

/** State changes kept for a new stream's snapshot. */
export const RECENT_CHANGES = 100;
/** Lines of the chosen instance's log sent before its new lines. */
export const LOG_BACKLOG = 200;
/** How often shown fields are compared while a stream is open. */
export const REFRESH_MS = 2000;

export interface StateChange {
  time: string;
  kind: 'instance' | 'model';
  name: string;
  from: string;
  to: string;
  reason: string;
}

export type InstanceView = InstanceInfo & { memory_mb: number | null };

export interface Snapshot {
  time: string;
  instances: InstanceView[];
  models: ModelInfo[];
  memory: { devices: unknown[] };
  changes: StateChange[];
  /** The instance whose log this stream follows, or null. */
  logs: string | null;
  limits: { max_streams: number; buffer_bytes: number; keep_alive_secs: number };
}

export interface StatusFeedOptions {
  supervisor: Supervisor;
  catalog?: Catalog;
  streams: EventStreams;
  refreshMs?: number;
}

/** An instance's fields minus those that move by themselves (uptime, health check time). */
function shownKey(v: InstanceView): string {
  const { uptime_secs: _u, last_health_check: _h, ...rest } = v;
  return JSON.stringify(rest);
}

export class StatusFeed {
  private readonly changes: StateChange[] = [];
  private readonly shownInstances = new Map<string, string>();
  private readonly shownModels = new Map<string, string>();
  private shownMemory = '';
  private timer: NodeJS.Timeout | undefined;
  private readonly unsubscribe: Array<() => void> = [];

  constructor(private readonly o: StatusFeedOptions) {
    const onTransition = (t: { name: string; from: string; to: string; reason: string }): void => {
      this.record({ time: new Date().toISOString(), kind: 'instance', name: t.name, from: t.from, to: t.to, reason: redactText(t.reason) });
      if (this.o.streams.count === 0) return;
      const i = this.o.supervisor.list().find((x) => x.name === t.name);
      if (i !== undefined) this.sendInstance(this.instanceView(i));
    };
    o.supervisor.events.on('transition', onTransition);
    this.unsubscribe.push(() => o.supervisor.events.off('transition', onTransition));
    const catalog = o.catalog;
    if (catalog !== undefined) {
      const onModel = (t: { model: string; from: string; to: string; event: string | undefined }): void => {
        this.record({ time: new Date().toISOString(), kind: 'model', name: t.model, from: t.from, to: t.to, reason: t.event ?? 'unexpected change' });
        if (this.o.streams.count === 0) return;
        const m = catalog.list().find((x) => x.name === t.model);
        if (m !== undefined) this.sendModel(modelInfo(catalog, m));
      };
      catalog.events.on('model', onModel);
      this.unsubscribe.push(() => catalog.events.off('model', onModel));
    }
  }

  private record(c: StateChange): void {
    this.changes.push(c);
    if (this.changes.length > RECENT_CHANGES) this.changes.splice(0, this.changes.length - RECENT_CHANGES);
    this.o.streams.broadcast('change', c);
  }

  private instanceView(i: Instance): InstanceView {
    const s = this.o.supervisor;
    const mb = this.o.catalog?.footprintOf(i.name);
    return { ...instanceInfo(i, s.desiredState(i.name) ?? 'stopped', s.ownerOf(i.name), s.outliers?.of(i)), memory_mb: mb === undefined ? null : Math.round(mb * 10) / 10 };
  }

  private sendInstance(v: InstanceView): void {
    this.shownInstances.set(v.name, shownKey(v));
    this.o.streams.broadcast('instance', v);
  }

  private sendModel(v: ModelInfo): void {
    this.shownModels.set(v.name, JSON.stringify(v));
    this.o.streams.broadcast('model', v);
  }

  private memory(): { devices: unknown[] } {
    return { devices: this.o.catalog?.memory() ?? [] };
  }

  /** Everything a new stream starts from. */
  snapshot(logs: string | null = null): Snapshot {
    const catalog = this.o.catalog;
    const l = this.o.streams.limits;
    return {
      time: new Date().toISOString(),
      instances: this.o.supervisor.list().map((i) => this.instanceView(i)),
      models: catalog === undefined ? [] : catalog.list().map((m) => modelInfo(catalog, m)),
      memory: this.memory(),
      changes: [...this.changes],
      logs,
      limits: { max_streams: l.maxStreams, buffer_bytes: l.bufferBytes, keep_alive_secs: l.keepAliveMs / 1000 },
    };
  }

  /** A new stream: its snapshot, the chosen log's backlog and new lines, and the refresh while anyone watches. */
  attach(stream: EventStream, logsOf?: Instance): void {
    const snapshot = this.snapshot(logsOf?.name ?? null);
    // Known by name from now on, so a removal is told (an empty key: the next refresh sends it again).
    for (const v of snapshot.instances) if (!this.shownInstances.has(v.name)) this.shownInstances.set(v.name, '');
    for (const v of snapshot.models) if (!this.shownModels.has(v.name)) this.shownModels.set(v.name, '');
    stream.send('snapshot', snapshot);
    if (logsOf !== undefined) {
      const log = logsOf.log;
      const r = log.range(Math.max(0, log.totalLines - LOG_BACKLOG));
      r.lines.forEach((line, k) => stream.send('log', { instance: logsOf.name, n: r.start + k, line: redactText(line) }));
      const unfollow = log.follow((line, n) => void stream.send('log', { instance: logsOf.name, n, line: redactText(line) }));
      stream.whenEnded(unfollow);
    }
    if (this.timer === undefined && !stream.closed) {
      this.timer = setInterval(() => this.refresh(), this.o.refreshMs ?? REFRESH_MS);
      this.timer.unref();
    }
    stream.whenEnded(() => {
      if (this.o.streams.count === 0) this.stopRefresh();
    });
  }

  private stopRefresh(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Compare what is shown with what is, and send the differences. */
  refresh(): void {
    if (this.o.streams.count === 0) {
      this.stopRefresh();
      return;
    }
    const seen = new Set<string>();
    for (const i of this.o.supervisor.list()) {
      const v = this.instanceView(i);
      seen.add(v.name);
      if (this.shownInstances.get(v.name) !== shownKey(v)) this.sendInstance(v);
    }
    for (const name of [...this.shownInstances.keys()]) {
      if (seen.has(name)) continue;
      this.shownInstances.delete(name);
      this.o.streams.broadcast('instance_deleted', { name });
    }
    const catalog = this.o.catalog;
    if (catalog !== undefined) {
      const models = new Set<string>();
      for (const m of catalog.list()) {
        const v = modelInfo(catalog, m);
        models.add(v.name);
        if (this.shownModels.get(v.name) !== JSON.stringify(v)) this.sendModel(v);
      }
      for (const name of [...this.shownModels.keys()]) {
        if (models.has(name)) continue;
        this.shownModels.delete(name);
        this.o.streams.broadcast('model_deleted', { name });
      }
    }
    const memory = this.memory();
    const key = JSON.stringify(memory);
    if (key !== this.shownMemory) {
      this.shownMemory = key;
      this.o.streams.broadcast('memory', memory);
    }
  }

  /** Stop listening and refreshing (shutdown). */
  close(): void {
    this.stopRefresh();
    for (const u of this.unsubscribe.splice(0)) u();
  }
}
