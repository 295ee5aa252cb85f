/**
 * The manager's Prometheus metrics (docs/metrics.md lists them). Instance gauges are read from
 * the supervisor at scrape time; counters and histograms are fed by supervisor hooks.
 *
 * `teiplex_event_loop_delay_seconds{quantile}` is how late the manager's event loop ran a timer
 * due every EVENT_LOOP_RESOLUTION_MS (perf_hooks.monitorEventLoopDelay, the interval itself
 * subtracted), over the time since the previous scrape: p50, p90, p99 and the max (quantile "1").
 * Every call, health check and scrape waits on that loop, so a request that blocks it shows here.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Catalog, CatalogEvents } from '../catalog/catalog.js';
import type { InstanceHooks } from '../supervisor/instance.js';
import { canServe, INSTANCE_STATES } from '../supervisor/instance-state.js';
import type { Supervisor } from '../supervisor/supervisor.js';
import { type ChildSample, CpuTotals, sampleChildren } from './child-resources.js';

/**
 * The event-loop delay sampling interval: each tick wakes the event loop, so a finer one (10 ms
 * woke it 100 times a second) costs more CPU than a manager serving a large model at ~100
 * requests a second spends on some of them; 50 ms still shows a stall of a few tenths of a second.
 * prom-client's nodejs_eventloop_lag_* use the same interval (one more timer otherwise).
 */
export const EVENT_LOOP_RESOLUTION_MS = 50;

export class ManagerMetrics {
  readonly registry = new Registry();
  private readonly restarts: Counter<'instance' | 'reason'>;
  private readonly healthFailures: Counter<'instance'>;
  private readonly startSeconds: Histogram;
  private readonly stateWrites: Counter<'result'>;
  readonly stateWriteSeconds: Histogram;
  private readonly modelLoads: Counter<'model' | 'result'>;
  /** Successful catalog loads per model (the thrash ratio's numerator). */
  private readonly okLoads = new Map<string, number>();
  private readonly modelEvictions: Counter<'model' | 'reason'>;
  private readonly coldStartSeconds: Histogram<'model'>;
  private readonly processErrors: Counter<'kind'>;
  private readonly ejections: Counter<'instance' | 'reason'>;

  constructor(supervisor: () => Supervisor | undefined, catalog: () => Catalog | undefined = () => undefined) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_RESOLUTION_MS });
    new Gauge({
      name: 'teiplex_instances',
      help: 'Instances by status',
      labelNames: ['status'],
      registers,
      collect() {
        const counts = Object.fromEntries(INSTANCE_STATES.map((s) => [s, 0]));
        for (const i of supervisor()?.list() ?? []) counts[i.status]++;
        for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
      },
    });
    new Gauge({
      name: 'teiplex_instance_up',
      help: '1 when the instance is running and healthy, else 0',
      labelNames: ['instance', 'model'],
      registers,
      collect() {
        this.reset();
        for (const i of supervisor()?.list() ?? []) this.set({ instance: i.name, model: i.spec.model_id }, i.status === 'running' ? 1 : 0);
      },
    });
    this.restarts = new Counter({ name: 'teiplex_instance_restarts_total', help: 'Instance restarts by reason (crash, unhealthy, manual)', labelNames: ['instance', 'reason'], registers });
    this.healthFailures = new Counter({ name: 'teiplex_health_check_failures_total', help: 'Failed health checks', labelNames: ['instance'], registers });
    this.startSeconds = new Histogram({
      name: 'teiplex_instance_start_seconds',
      help: 'Spawn to ready, seconds',
      buckets: [0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300],
      registers,
    });
    this.stateWrites = new Counter({ name: 'teiplex_state_writes_total', help: 'State file writes by result', labelNames: ['result'], registers });
    this.modelLoads = new Counter({ name: 'teiplex_model_loads_total', help: 'Catalog model replica starts by result (ok, failed: did not get ready, refused: no room in the budget)', labelNames: ['model', 'result'], registers });
    this.modelEvictions = new Counter({ name: 'teiplex_model_evictions_total', help: 'Catalog model replicas stopped by reason (idle, budget, unload)', labelNames: ['model', 'reason'], registers });
    this.coldStartSeconds = new Histogram({
      name: 'teiplex_cold_start_seconds',
      help: 'Catalog model replica starts: from the request (or decision) to a ready child, seconds',
      labelNames: ['model'],
      buckets: [0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300],
      registers,
    });
    new Gauge({
      name: 'teiplex_model_loaded',
      help: 'Replicas of a catalog model serving now (0: not loaded)',
      labelNames: ['model'],
      registers,
      collect() {
        this.reset();
        const c = catalog();
        for (const m of c?.list() ?? []) this.set({ model: m.name }, c!.replicas(m).filter((i) => canServe(i.status)).length);
      },
    });
    new Gauge({
      name: 'teiplex_memory_budget_bytes',
      help: 'Memory budget per device (cpu, gpu0, ...) for model instances',
      labelNames: ['device'],
      registers,
      collect() {
        this.reset();
        for (const d of catalog()?.memory() ?? []) if (d.budget_mb !== null) this.set({ device: d.device }, d.budget_mb * 1024 * 1024);
      },
    });
    new Gauge({
      name: 'teiplex_memory_used_bytes',
      help: 'Memory held per device by running instances (measured footprints, else estimates)',
      labelNames: ['device'],
      registers,
      collect() {
        this.reset();
        for (const d of catalog()?.memory() ?? []) this.set({ device: d.device }, d.used_mb * 1024 * 1024);
      },
    });
    const okLoads = this.okLoads;
    const exportedRequests = new Map<string, number>();
    new Counter({
      name: 'teiplex_model_requests_total',
      help: 'Requests begun on the replicas of a catalog model (counted by the front ends; the thrash ratio\'s denominator)',
      labelNames: ['model'],
      registers,
      collect() {
        const c = catalog();
        for (const m of c?.list() ?? []) {
          const n = c!.demand(m).requests;
          const d = n - (exportedRequests.get(m.name) ?? 0);
          if (d > 0) this.inc({ model: m.name }, d);
          exportedRequests.set(m.name, n);
        }
      },
    });
    new Gauge({
      name: 'teiplex_model_thrash_ratio',
      help: 'Replica loads per request of a catalog model (teiplex_model_loads_total ok / teiplex_model_requests_total); 1: every request a cold start',
      labelNames: ['model'],
      registers,
      collect() {
        this.reset();
        const c = catalog();
        for (const m of c?.list() ?? []) {
          const n = c!.demand(m).requests;
          if (n > 0) this.set({ model: m.name }, (okLoads.get(m.name) ?? 0) / n);
        }
      },
    });
    new Gauge({
      name: 'teiplex_catalog_memory_waiters',
      help: 'Requests waiting for memory for a catalog model (its start waits for room in a budget)',
      labelNames: ['model'],
      registers,
      collect() {
        this.reset();
        for (const w of catalog()?.memoryWaiters() ?? []) this.set({ model: w.model }, w.requests);
      },
    });
    new Gauge({
      name: 'teiplex_standby_children',
      help: 'Standby router children per device (started ahead, no model; counted in teiplex_memory_used_bytes)',
      labelNames: ['device'],
      registers,
      collect() {
        this.reset();
        for (const d of catalog()?.memory() ?? []) this.set({ device: d.device }, d.standby.length);
      },
    });
    const loop = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
    loop.enable();
    new Gauge({
      name: 'teiplex_event_loop_delay_seconds',
      help: `How late the event loop ran a timer due every ${EVENT_LOOP_RESOLUTION_MS} ms, since the previous scrape, by quantile (1: the max)`,
      labelNames: ['quantile'],
      registers,
      collect() {
        const late = (ns: number): number => (loop.count === 0 ? 0 : Math.max(0, ns / 1e6 - EVENT_LOOP_RESOLUTION_MS) / 1000);
        this.set({ quantile: '0.5' }, late(loop.percentile(50)));
        this.set({ quantile: '0.9' }, late(loop.percentile(90)));
        this.set({ quantile: '0.99' }, late(loop.percentile(99)));
        this.set({ quantile: '1' }, late(loop.max));
        loop.reset();
      },
    });
    new Counter({
      name: 'teiplex_child_log_write_errors_total',
      help: 'Failed writes of a child log since the instance was created (disk full, I/O error, ...); the child runs on',
      labelNames: ['instance'],
      registers,
      collect() {
        this.reset();
        for (const i of supervisor()?.list() ?? []) this.inc({ instance: i.name }, i.log.writeErrors);
      },
    });
    new Gauge({
      name: 'teiplex_child_log_dropped_lines',
      help: 'Child output lines not written to the log since the instance was created (writer behind, or write failed)',
      labelNames: ['instance'],
      registers,
      collect() {
        this.reset();
        for (const i of supervisor()?.list() ?? []) this.set({ instance: i.name }, i.log.droppedLines);
      },
    });
    this.ejections = new Counter({
      name: 'teiplex_outlier_ejections_total',
      help: 'Replicas taken out of balancing by outlier detection, by reason (consecutive_failures, slow, probe_failed)',
      labelNames: ['instance', 'reason'],
      registers,
    });
    new Gauge({
      name: 'teiplex_instance_ejected',
      help: '1 while outlier detection keeps the instance out of balancing, else 0',
      labelNames: ['instance'],
      registers,
      collect() {
        this.reset();
        const s = supervisor();
        for (const i of s?.list() ?? []) this.set({ instance: i.name }, s?.outliers?.of(i).ejected === true ? 1 : 0);
      },
    });
    // Child CPU and memory from /proc: one read per scrape, shared by the two metrics (the
    // registry collects them concurrently).
    const totals = new CpuTotals();
    let pending: Promise<ChildSample[]> | undefined;
    const sample = (): Promise<ChildSample[]> => {
      if (pending === undefined) {
        const instances = (supervisor()?.list() ?? []).map((i) => ({ name: i.name, pid: i.pid }));
        pending = sampleChildren(instances, totals).finally(() => {
          pending = undefined;
        });
      }
      return pending;
    };
    new Counter({
      name: 'teiplex_child_cpu_seconds_total',
      help: "CPU seconds (user + system) of each instance's children (the child and the processes it spawned) since the manager started, from /proc",
      labelNames: ['instance'],
      registers,
      async collect() {
        const samples = await sample();
        this.reset();
        for (const s of samples) this.inc({ instance: s.instance }, s.cpuSeconds);
      },
    });
    new Gauge({
      name: 'teiplex_child_resident_memory_bytes',
      help: "Resident memory of each instance's running child (the child and the processes it spawned), from /proc",
      labelNames: ['instance'],
      registers,
      async collect() {
        const samples = await sample();
        this.reset();
        for (const s of samples) if (s.rssBytes !== undefined) this.set({ instance: s.instance }, s.rssBytes);
      },
    });
    this.processErrors = new Counter({ name: 'teiplex_process_errors_total', help: 'Errors no handler caught, logged and survived (unhandled_rejection, io_error)', labelNames: ['kind'], registers });
    this.stateWriteSeconds = new Histogram({ name: 'teiplex_state_write_seconds', help: 'State file write latency (write, fsync, rename, fsync dir)', buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5], registers });
  }

  hooks(): InstanceHooks {
    return {
      onRestart: (instance, reason) => this.restarts.inc({ instance, reason }),
      onHealthFailure: (instance) => this.healthFailures.inc({ instance }),
      onReady: (_instance, seconds) => this.startSeconds.observe(seconds),
    };
  }

  /** Feed from the catalog. */
  catalogEvents(): CatalogEvents {
    return {
      load: (model, result, seconds) => {
        this.modelLoads.inc({ model, result });
        if (result === 'ok') this.okLoads.set(model, (this.okLoads.get(model) ?? 0) + 1);
        if (result === 'ok') this.coldStartSeconds.observe({ model }, seconds);
      },
      evict: (model, reason) => this.modelEvictions.inc({ model, reason }),
    };
  }

  /** Outlier detection ejected a replica. */
  outlierEjected(instance: string, reason: string): void {
    this.ejections.inc({ instance, reason });
  }

  /** An error that reached the process-level handlers and was survived. */
  processError(kind: 'unhandled_rejection' | 'io_error'): void {
    this.processErrors.inc({ kind });
  }

  /** Feed from StateStore.onWrite. */
  stateWrite(ok: boolean, seconds: number): void {
    this.stateWrites.inc({ result: ok ? 'ok' : 'error' });
    this.stateWriteSeconds.observe(seconds);
  }
}
