/**
 * `teiplex ctl`'s output (src/ctl/format.ts, table.ts, views.ts, help.ts): durations and sizes
 * at their unit boundaries, aligned columns, each view's cells from the manager's answers, and
 * the help listing every verb and flag of the verb table.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatAge, formatDuration, formatList, formatMemory } from '../../src/ctl/format.js';
import { batchDetail, batchesTable, batchProgress } from '../../src/ctl/batch-views.js';
import { ctlUsage, groupUsage, verbUsage } from '../../src/ctl/help.js';
import { renderFields, renderTable } from '../../src/ctl/table.js';
import { GLOBAL_FLAGS, VERBS } from '../../src/ctl/verbs.js';
import { gpusTable, instanceDetail, instancesTable, memoryTable, modelsTable, reloadReport, replicaFootprints } from '../../src/ctl/views.js';
import type { BatchObject } from '../../src/client/batches.js';
import type { CatalogModelInfo, InstanceInfo, ReplicaInfo } from '../../src/client/types.js';

/** Split an aligned table into cells at the column starts of its header. */
function columns(table: string): string[][] {
  const [head, ...rows] = table.split('\n');
  const starts = [...head.matchAll(/\S+/g)].map((m) => m.index!);
  return [head, ...rows].map((line) => starts.map((s, c) => line.slice(s, starts[c + 1] ?? line.length).trim()));
}

const NOW = Date.parse('2026-12-03T12:00:00Z');

const instance = (over: Partial<InstanceInfo>): InstanceInfo => ({
  name: 'emb',
  model_id: '/models/emb',
  runtime: 'router',
  port: 20001,
  prometheus_port: null,
  status: 'running',
  desired_state: 'running',
  pid: 4242,
  gpu_id: null,
  gpu_ids: [],
  created_at: '2026-12-03T11:00:00Z',
  uptime_secs: 312.4,
  restarts: 0,
  last_exit: null,
  health_check_failures: 0,
  last_health_check: '2026-12-03T11:59:58Z',
  last_error: null,
  model: null,
  outlier: { ejected: false, ejected_until: null, ejections: 0, reason: null },
  ...over,
});

const replica = (over: Partial<ReplicaInfo>): ReplicaInfo => ({
  instance: 'rr-1',
  status: 'running',
  device: 'cpu',
  pid: 99,
  inflight_requests: 0,
  footprint_mb: null,
  last_used: null,
  ...over,
});

const model = (over: Partial<CatalogModelInfo>): CatalogModelInfo => ({
  name: 'rr',
  model_id: '/models/rr',
  aliases: [],
  runtime: 'router',
  source: 'config',
  state: 'available',
  failure: null,
  on_demand: true,
  max_replicas: 1,
  min_replicas: 0,
  idle_timeout_secs: 300,
  memory_mb: null,
  footprint_mb: null,
  footprint_kind: null,
  replicas: [],
  waiting_requests: 0,
  last_used: null,
  created_at: '2026-12-03T10:00:00Z',
  ...over,
});

describe('ctl formats', () => {
  test('durations: two units, at each boundary', () => {
    assert.equal(formatDuration(0), '0s');
    assert.equal(formatDuration(59.9), '59s');
    assert.equal(formatDuration(60), '1m0s');
    assert.equal(formatDuration(3599), '59m59s');
    assert.equal(formatDuration(3600), '1h0m');
    assert.equal(formatDuration(86_399), '23h59m');
    assert.equal(formatDuration(86_400), '1d0h');
    assert.equal(formatDuration(2 * 86_400 + 4 * 3600 + 59), '2d4h');
    assert.equal(formatDuration(-1), '-');
    assert.equal(formatDuration(Number.NaN), '-');
  });

  test('memory: whole MiB below 1 GiB, else GiB with one decimal', () => {
    assert.equal(formatMemory(0), '0MiB');
    assert.equal(formatMemory(511.6), '512MiB');
    assert.equal(formatMemory(1023), '1023MiB');
    assert.equal(formatMemory(1024), '1GiB');
    assert.equal(formatMemory(1536), '1.5GiB');
    assert.equal(formatMemory(80 * 1024 - 1), '80GiB');
    for (const none of [null, undefined, -5, Number.POSITIVE_INFINITY]) assert.equal(formatMemory(none), '-');
  });

  test('ages and lists', () => {
    assert.equal(formatAge('2026-12-03T11:58:30Z', NOW), '1m30s');
    assert.equal(formatAge('2026-12-03T12:00:05Z', NOW), '0s', 'a time ahead of the clock');
    assert.equal(formatAge(null, NOW), '-');
    assert.equal(formatAge('yesterday', NOW), '-');
    assert.equal(formatList([0, 1]), '0,1');
    assert.equal(formatList([]), '-');
  });
});

describe('ctl tables', () => {
  test('columns start where their header does, three spaces apart, no trailing blanks', () => {
    const t = renderTable(
      ['A', 'LONGER', 'C'],
      [
        ['xx', 'y', 'z'],
        ['x', 'yyyyyyyy', ''],
      ],
    );
    assert.equal(t, ['A    LONGER     C', 'xx   y          z', 'x    yyyyyyyy'].join('\n'));
    assert.deepEqual(columns(t), [
      ['A', 'LONGER', 'C'],
      ['xx', 'y', 'z'],
      ['x', 'yyyyyyyy', ''],
    ]);
  });

  test('fields: values aligned after the longest key', () => {
    assert.equal(
      renderFields([
        ['Name', 'a'],
        ['Desired state', 'running'],
      ]),
      'Name:           a\nDesired state:  running',
    );
  });

  test('ls: every column, the footprint of catalog replicas, no uptime for a stopped instance', () => {
    const list = [
      instance({}),
      instance({ name: 'rr-1', model_id: '/models/rr', model: 'rr', gpu_ids: [0, 1], restarts: 3, port: 20002 }),
      instance({ name: 'off', status: 'stopped', desired_state: 'stopped', pid: null, uptime_secs: 0, port: 20003 }),
    ];
    const models = [model({ state: 'loaded', replicas: [replica({ device: 'gpu0,gpu1', footprint_mb: 2048 })] })];
    const rows = columns(instancesTable(list, replicaFootprints(models)));
    assert.deepEqual(rows, [
      ['NAME', 'MODEL', 'RUNTIME', 'STATUS', 'RESTARTS', 'UPTIME', 'PORT', 'GPU', 'MEMORY'],
      ['emb', '/models/emb', 'router', 'running', '0', '5m12s', '20001', '-', '-'],
      ['rr-1', '/models/rr', 'router', 'running', '3', '5m12s', '20002', '0,1', '2GiB'],
      ['off', '/models/emb', 'router', 'stopped', '0', '-', '20003', '-', '-'],
    ]);
    assert.equal(instancesTable([], new Map()), 'No instances.');
  });

  test('get: the fields of one instance', () => {
    const text = instanceDetail(
      instance({
        restarts: 2,
        last_exit: { code: null, signal: 'SIGKILL', time: '2026-12-03T11:55:00Z' },
        last_error: 'exited with signal SIGKILL',
        model: 'rr',
      }),
      700,
      NOW,
    );
    const fields = Object.fromEntries(text.split('\n').map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]));
    assert.equal(fields.Name, 'emb');
    assert.equal(fields['Catalog model'], 'rr');
    assert.equal(fields.Memory, '700MiB');
    assert.equal(fields.Restarts, '2');
    assert.equal(fields['Last exit'], 'signal SIGKILL at 2026-12-03T11:55:00Z (5m0s ago)');
    assert.equal(fields['Last error'], 'exited with signal SIGKILL');
    assert.equal(fields.Health, '0 failing checks, last 2s ago');
    assert.equal(fields.Outlier, 'not ejected; 0 ejections');
    assert.equal(fields['Metrics port'], '-');
  });

  test('models: serving replicas of the maximum, measured memory or ~ the estimate', () => {
    const rows = columns(
      modelsTable(
        [
          model({
            state: 'loaded',
            max_replicas: 2,
            footprint_mb: 300,
            last_used: '2026-12-03T11:59:00Z',
            aliases: ['a', 'b'],
            replicas: [replica({ footprint_mb: 300 }), replica({ instance: 'rr-2', status: 'starting' })],
          }),
          model({ name: 'big', memory_mb: 4096, idle_timeout_secs: null }),
        ],
        NOW,
      ),
    );
    assert.deepEqual(rows, [
      ['NAME', 'MODEL', 'RUNTIME', 'STATE', 'REPLICAS', 'MEMORY', 'IDLE-TIMEOUT', 'LAST-USED', 'ALIASES'],
      ['rr', '/models/rr', 'router', 'loaded', '1/2', '300MiB', '5m0s', '1m0s', 'a,b'],
      ['big', '/models/rr', 'router', 'available', '0/1', '~4GiB', '-', '-', '-'],
    ]);
  });

  test('memory, gpus, reload', () => {
    assert.deepEqual(
      columns(
        memoryTable([
          { device: 'cpu', budget_mb: 2000, budget_source: 'cpu_memory_budget_mb', used_mb: 500, standby: [{ name: 'standby-1', footprint_mb: 150 }] },
          { device: 'gpu0', budget_mb: null, budget_source: 'none', used_mb: 0, standby: [] },
        ]),
      ),
      [
        ['DEVICE', 'USED', 'BUDGET', 'USE', 'BUDGET-SOURCE', 'STANDBY'],
        ['cpu', '500MiB', '2GiB', '25%', 'cpu_memory_budget_mb', '1'],
        ['gpu0', '0MiB', '-', '-', 'none', '0'],
      ],
    );
    assert.equal(gpusTable({ gpus: [], error: 'nvidia-smi not found' }), 'No GPUs.\nnvidia-smi: nvidia-smi not found');
    assert.deepEqual(
      columns(
        gpusTable({
          gpus: [
            { index: 0, uuid: 'GPU-0', name: 'H200', memory_total_mib: 143_771, memory_used_mib: 1024, utilization_percent: 7 },
            { index: 1, uuid: 'GPU-1', name: 'H200', memory_total_mib: null, memory_used_mib: null, utilization_percent: null },
          ],
        }),
      ),
      [
        ['INDEX', 'NAME', 'MEMORY-USED', 'MEMORY-TOTAL', 'UTIL'],
        ['0', 'H200', '1GiB', '140.4GiB', '7%'],
        ['1', 'H200', '-', '-', '-'],
      ],
    );
    const none = { added: [], removed: [], changed: [], unchanged: [], skipped: [] };
    assert.equal(
      reloadReport({
        instances: { added: ['a'], removed: [], changed: ['b', 'c'], unchanged: ['d'], skipped: [{ name: 'e', reason: 'port taken' }] },
        models: none,
        swaps: [{ instance: 'b', outcome: 'accepted', reason: null }],
        restart_required: ['grpc_port'],
      }),
      [
        'instances: added a; changed b, c; skipped e (port taken) (1 unchanged)',
        'models: no change',
        'swap b: accepted',
        'needs a manager restart: grpc_port',
      ].join('\n'),
    );
  });
});

describe('ctl help', () => {
  test('the overview lists every verb and every global flag; a verb lists its flags', () => {
    const help = ctlUsage();
    for (const v of VERBS) assert.match(help, new RegExp(`^  ${v.name}\\b`, 'm'), v.name);
    for (const f of GLOBAL_FLAGS) assert.match(help, new RegExp(`--${f.name}\\b`), f.name);
    const logs = verbUsage(VERBS.find((v) => v.name === 'logs')!);
    assert.match(logs, /^Usage: teiplex ctl logs NAME \[flags\]/);
    assert.match(logs, /^ {2}-f, --follow {2,}keep printing/m);
    assert.match(logs, /^ {2}--tail N {2,}only the last N lines/m);
  });
});

const SECS = NOW / 1000;
const batch = (over: Partial<BatchObject>): BatchObject => ({
  id: 'batch_0123456789abcdef01234567',
  object: 'batch',
  endpoint: '/v1/embeddings',
  errors: null,
  input_file_id: 'file-aaaaaaaaaaaaaaaaaaaaaaaa',
  completion_window: '24h',
  status: 'in_progress',
  output_file_id: null,
  error_file_id: null,
  created_at: SECS - 312,
  in_progress_at: SECS - 300,
  expires_at: SECS + 86_400 - 312,
  finalizing_at: null,
  completed_at: null,
  failed_at: null,
  expired_at: null,
  cancelling_at: null,
  cancelled_at: null,
  request_counts: { total: 1000, completed: 256, failed: 3 },
  metadata: null,
  model: 'bge-small',
  ...over,
});

describe('ctl batch views', () => {
  test('the list: ID STATUS MODEL DONE/TOTAL FAILED CREATED, aligned; a batch without a model shows -', () => {
    const t = batchesTable([batch({}), batch({ id: 'batch_2', status: 'completed', model: null, request_counts: { total: 5, completed: 5, failed: 0 }, created_at: SECS - 7200 })], NOW);
    assert.deepEqual(columns(t), [
      ['ID', 'STATUS', 'MODEL', 'DONE/TOTAL', 'FAILED', 'CREATED'],
      ['batch_0123456789abcdef01234567', 'in_progress', 'bge-small', '256/1000', '3', '5m12s'],
      ['batch_2', 'completed', '-', '5/5', '0', '2h0m'],
    ]);
    assert.equal(batchesTable([], NOW), 'No batches.');
  });

  test('one batch: the files, the counts, the times that are set (a time to come as "in"), metadata and errors', () => {
    const d = batchDetail(
      batch({
        status: 'failed',
        failed_at: SECS - 60,
        output_file_id: 'file-out',
        metadata: { team: 'search' },
        errors: { object: 'list', data: [{ code: 'invalid_json', message: 'line 3 is not JSON', param: null, line: 3 }] },
      }),
      NOW,
    );
    const fields = Object.fromEntries(d.split('\n').map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]));
    assert.equal(fields.Status, 'failed');
    assert.equal(fields['Output file'], 'file-out');
    assert.equal(fields['Error file'], '-');
    assert.equal(fields.Rows, '256/1000 done, 3 failed');
    assert.equal(fields.Created, '2026-12-03T11:54:48.000Z (5m12s ago)');
    assert.equal(fields['Failed at'], '2026-12-03T11:59:00.000Z (1m0s ago)');
    assert.equal(fields['Expires at'], '2026-12-04T11:54:48.000Z (in 23h54m)');
    assert.equal(fields['Completed at'], undefined, 'a time not set is left out');
    assert.equal(fields.Metadata, 'team=search');
    assert.equal(fields.Errors, 'invalid_json: line 3 is not JSON (line 3)');
  });

  test("submit --wait's progress line", () => {
    assert.equal(batchProgress(batch({})), 'batch_0123456789abcdef01234567: in_progress, 256/1000 rows done, 3 failed');
  });

  test('help: the group lists its verbs; a verb with its own --output says the format is -o', () => {
    const g = groupUsage('batch');
    assert.match(g, /^Usage: teiplex ctl batch VERB/);
    for (const v of ['submit FILE', 'status \\[ID\\]', 'cancel ID', 'download ID']) assert.match(g, new RegExp(`^ {2}${v} {2,}\\S`, 'm'), v);
    const dl = verbUsage(VERBS.find((v) => v.name === 'batch download')!);
    assert.match(dl, /^Usage: teiplex ctl batch download ID \[flags\]/);
    assert.match(dl, /^ {2}--output PATH {2,}where the output goes/m);
    assert.match(dl, /-o \(the format; --output is this verb's\)/);
    assert.doesNotMatch(dl, /-o\/--output/);
    assert.match(verbUsage(VERBS.find((v) => v.name === 'batch status')!), /-o\/--output/);
  });
});
