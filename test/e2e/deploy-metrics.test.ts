/**
 * The dashboard (deploy/grafana/teiplex.json) and the alert rules (deploy/prometheus/rules.yml)
 * against a live manager's /metrics: a real manager with a real router child (an instance) and a
 * catalog model, driven through the HTTP data plane and the gRPC multiplexer, a cold start, an
 * unload, a child killed with a call in flight (a crash and a failover decision) and one stopped
 * until its health checks fail (unhealthy); then
 * every PromQL expression must parse and name only metrics and labels the scrape exports (plus
 * the labels the ServiceMonitor's scrape adds). The checker is shown failing on doctored copies
 * (a renamed metric, an unknown label, an unknown grouping label, a histogram suffix on a gauge,
 * a syntax error). promtool checks and unit-tests the rules; the per-instance child CPU and
 * memory metrics are read from /proc and checked against the child's own /proc entry.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { projectPath } from '../../src/common/paths.js';
import { assertErrorCode, client } from '../helpers/data-plane.js';
import { drift, readDoc, section, tableRows } from '../helpers/docs-contract.js';
import { metricValue } from '../helpers/fake-child.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { type AnyClient, mux, unary } from '../helpers/mux-client.js';
import { checkQueries, checkQuery, dashboardQueries, type Family, ruleQueries, selectableSeries } from '../helpers/promql-check.js';
import { typedLiteralProblems } from '../helpers/typed-literal.js';
import { until } from '../helpers/wait.js';

const run = promisify(execFile);
const DASHBOARD = projectPath('deploy', 'grafana', 'teiplex.json');
const RULES = projectPath('deploy', 'prometheus', 'rules.yml');
const RULE_TESTS = projectPath('deploy', 'prometheus', 'rules.test.yml');
const SERVICE_MONITOR = projectPath('deploy', 'kubernetes', 'servicemonitor.yaml');
/** Grafana's dashboard JSON model, as @grafana/schema types it. */
const DASHBOARD_TYPE = { module: '@grafana/schema/dist/esm/raw/dashboard/x/Dashboard_types.gen', type: 'Dashboard' };

/** The labels Prometheus Operator puts on every series of a ServiceMonitor's targets. */
const OPERATOR_TARGET_LABELS = ['job', 'instance', 'namespace', 'service', 'pod', 'container', 'endpoint'];

/** The scrape's own labels: the operator's, plus the ServiceMonitor's relabelings' targets. */
async function targetLabels(): Promise<Set<string>> {
  const sm = parseYaml(await readFile(SERVICE_MONITOR, 'utf8'));
  const out = new Set(OPERATOR_TARGET_LABELS);
  for (const e of sm.spec.endpoints) for (const r of e.relabelings ?? []) if (typeof r.targetLabel === 'string') out.add(r.targetLabel);
  return out;
}

/** Series Prometheus makes itself for every target (`up`), with the target's labels only. */
function withPrometheusSeries(series: Map<string, Family>): Map<string, Family> {
  const out = new Map(series);
  out.set('up', { type: 'gauge', labels: new Set(), sampled: true });
  return out;
}

/** SIGKILL `pid` unless it is gone already. */
function killIfAlive(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

let dir: string;
let m: ManagerProcess;
let scrape: string;
let series: Map<string, Family>;
let targets: Set<string>;
let cpuBeforeCrash: number;
let grpcClient: AnyClient | undefined;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-deploy-metrics-'));
  const embedder = await testModel({ kind: 'embedding', seed: 1301 });
  const cataloged = await testModel({ kind: 'embedding', seed: 1302 });
  const file = path.join(dir, 'config.toml');
  await writeFile(
    file,
    `${loopbackConfig(dir)}standby_children = 0\nstartup_timeout_secs = 120\nhealth_check_interval_secs = 0.5\nhealth_check_timeout_secs = 1\nmax_failures_before_restart = 4\n` +
      `[restart]\ninitial_backoff_ms = 100\n\n` +
      `[[instances]]\nname = "embedder"\nmodel_id = ${JSON.stringify(embedder)}\n\n` +
      `[[models]]\nname = "cataloged"\nmodel_id = ${JSON.stringify(cataloged)}\n`,
  );
  m = await startManager(file, {}, 120_000);
  const first = await m.waitFor('embedder', (i) => i.status === 'running', 120_000);
  const http = client(m.apiPort);

  // Both front ends, a route error, a cold start and an unload.
  const ok = await http.post('/v1/embeddings', { model: 'embedder', input: 'hello world' });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  const missing = await http.post('/v1/embeddings', { model: 'no-such-model', input: 'x' });
  assertErrorCode(missing, 404, 'MODEL_NOT_FOUND');
  const cold = await http.post('/embed', { model: 'cataloged', inputs: ['a cold start'] });
  assert.equal(cold.status, 200, JSON.stringify(cold.body));
  grpcClient = mux(Number(m.ready.grpc_port));
  const g = await unary(grpcClient, 'Embed', { target: { instance_name: 'embedder' }, request: { inputs: 'through the multiplexer' } });
  assert.ok(g.res.embeddings.length > 0);
  const unload = await m.api('POST', '/models/cataloged/unload');
  assert.equal(unload.status, 200, JSON.stringify(unload.body));

  // The child's CPU before it is killed: the counter must not drop with the new child.
  const before = (await m.api('GET', '/metrics')).body as string;
  cpuBeforeCrash = metricValue(before, 'teiplex_child_cpu_seconds_total', { instance: 'embedder' }) ?? Number.NaN;

  // A crash with a call in flight: the child stopped (SIGSTOP), a call naming its model_id sent
  // to it, then the child killed. The call fails over (no other replica: counted, and its error
  // goes back), and the manager restarts the child.
  process.kill(first.pid, 'SIGSTOP');
  const caught = http.post('/v1/embeddings', { model: embedder, input: 'caught in a crash' });
  await until('the call in flight on the stopped child', async () => (metricValue((await m.api('GET', '/metrics')).body as string, 'teiplex_inflight_requests', { instance: 'embedder' }) ?? 0) >= 1, { timeoutMs: 30_000, everyMs: 20 });
  // (A loaded machine may let the health checks kill it first: the call fails the same way.)
  killIfAlive(first.pid);
  const lost = await caught;
  assertErrorCode(lost, 503, 'INSTANCE_UNAVAILABLE', 'the call the crash caught');
  const second = await m.waitFor('embedder', (i) => i.status === 'running' && i.pid !== first.pid, 120_000);
  // Health checks failing: the child stopped (SIGSTOP) until the manager restarts it as unhealthy.
  process.kill(second.pid, 'SIGSTOP');
  await m.waitFor('embedder', (i) => i.status === 'running' && i.pid !== second.pid, 120_000);

  targets = await targetLabels();
  scrape = await until(
    'a scrape with every driven metric sampled',
    async () => {
      const text = (await m.api('GET', '/metrics')).body as string;
      const ready =
        metricValue(text, 'teiplex_instance_restarts_total', { instance: 'embedder', reason: 'unhealthy' }) !== undefined &&
        metricValue(text, 'teiplex_child_resident_memory_bytes', { instance: 'embedder' }) !== undefined &&
        metricValue(text, 'teiplex_failover_retries_total', { model_id: embedder, outcome: 'no_other_replica' }) !== undefined;
      return ready && text;
    },
    { timeoutMs: 30_000, everyMs: 200 },
  );
  series = withPrometheusSeries(selectableSeries(scrape));
});

after(async () => {
  grpcClient?.close();
  await m?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('dashboard and alert rules against a live /metrics', () => {
  test('the dashboard: every panel has a query; every query parses and names exported metrics and labels', async () => {
    const dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8'));
    const queries = dashboardQueries(dashboard);
    const panels = dashboard.panels.filter((p: any) => p.type !== 'row');
    assert.ok(panels.length >= 15, `${panels.length} panels`);
    for (const p of panels) assert.ok(p.targets?.length > 0, `panel "${p.title}" has no query`);
    const ids = dashboard.panels.map((p: any) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    assert.deepEqual(checkQueries(queries, series, targets), []);
    // What the issue asks the dashboard to show, by the metric that shows it.
    const all = queries.map((q) => q.expr).join('\n');
    for (const name of [
      'teiplex_requests_total',
      'teiplex_http_requests_total',
      'teiplex_request_duration_seconds_bucket',
      'teiplex_http_request_duration_seconds_bucket',
      'teiplex_inflight_requests',
      'teiplex_instance_restarts_total',
      'teiplex_model_loads_total',
      'teiplex_cold_start_seconds_bucket',
      'teiplex_model_evictions_total',
      'teiplex_memory_used_bytes',
      'teiplex_memory_budget_bytes',
      'teiplex_child_cpu_seconds_total',
      'teiplex_child_resident_memory_bytes',
    ])
      assert.ok(all.includes(name), `the dashboard shows ${name}`);
  });

  test("the dashboard is a Grafana dashboard model (@grafana/schema's type); a misspelled field is refused", async () => {
    const dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8'));
    assert.deepEqual(await typedLiteralProblems([{ label: 'teiplex.json', ...DASHBOARD_TYPE, value: dashboard }]), []);
    const doctored = structuredClone(dashboard);
    doctored.panels[1].gridPoz = doctored.panels[1].gridPos;
    doctored.panels[2].fieldConfig.defaults.unitt = 's';
    doctored.refresh = 30;
    assert.deepEqual(await typedLiteralProblems([{ label: 'doctored', ...DASHBOARD_TYPE, value: doctored }]), [
      "doctored: Type 'number' is not assignable to type 'string'.",
      `doctored: Object literal may only specify known properties, and '"gridPoz"' does not exist in type 'Panel'.`,
      `doctored: Object literal may only specify known properties, and '"unitt"' does not exist in type 'FieldConfig'.`,
    ]);
  });

  test('the rules: every expression parses and names exported metrics and labels', async () => {
    const queries = ruleQueries(await readFile(RULES, 'utf8'));
    assert.ok(queries.length >= 10, `${queries.length} rules`);
    assert.deepEqual(checkQueries(queries, series, targets), []);
  });

  test("docs/deploy.md's alert table is the rules file: names, `for`, severities", async () => {
    const rows = (rulesText: string, doc: string) => {
      const rules = parseYaml(rulesText).groups.flatMap((g: any) => g.rules.map((r: any) => `${r.alert} for ${r.for} ${r.labels.severity}`));
      const documented = tableRows(section(doc, 'alerts'))
        .filter((r) => r.length === 4 && r[0].startsWith('`'))
        .map((r) => `${r[0].replace(/`/g, '')} for ${r[2]} ${r[3]}`);
      return drift(rules, documented, 'docs/deploy.md');
    };
    const rulesText = await readFile(RULES, 'utf8');
    const doc = readDoc('docs/deploy.md');
    assert.deepEqual(rows(rulesText, doc), []);
    assert.deepEqual(rows(rulesText.replace('for: 15m\n        labels:\n          severity: warning\n        annotations:\n          summary: "memory budget', 'for: 5m\n        labels:\n          severity: warning\n        annotations:\n          summary: "memory budget'), doc), [
      'TeiplexMemoryBudgetPressure for 15m warning: in docs/deploy.md, not in the code',
      'TeiplexMemoryBudgetPressure for 5m warning: in the code, not in docs/deploy.md',
    ]);
  });

  test('the checker fails on a doctored dashboard and rules: a renamed metric, unknown labels, a wrong suffix, bad syntax', async () => {
    const dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8'));
    const target = dashboard.panels.find((p: any) => p.title === 'Child CPU by instance (cores)').targets[0];
    target.expr = target.expr.replace('teiplex_child_cpu_seconds_total', 'teiplex_child_cpu_seconds');
    const rules = (await readFile(RULES, 'utf8'))
      .replace('teiplex_instances{status="failed"}', 'teiplex_instances{state="failed"}')
      .replace('sum without (model) (increase(teiplex_model_evictions_total', 'sum by (tenant) (increase(teiplex_model_evictions_total');
    const problems = [...checkQueries(dashboardQueries(dashboard), series, targets), ...checkQueries(ruleQueries(rules), series, targets)];
    assert.deepEqual(problems, [
      'panel "Child CPU by instance (cores)" A: metric teiplex_child_cpu_seconds is not exported',
      'rule teiplex.instances/TeiplexInstanceFailed: metric teiplex_instances has no label state (it has status)',
      `rule teiplex.memory/TeiplexBudgetEvictionThrash: grouping label tenant is on no metric it groups (${[...new Set([...targets, 'model', 'reason'])].sort().join(', ')})`,
    ]);
    const q = (expr: string) => checkQuery({ where: 'q', expr }, series, targets);
    assert.deepEqual(q('rate(teiplex_instances_bucket[5m])'), ['q: metric teiplex_instances_bucket is not exported']);
    assert.deepEqual(q('teiplex_cold_start_seconds{model="x"}'), ['q: metric teiplex_cold_start_seconds is not exported'], 'a histogram is selected by its series, not its family name');
    assert.deepEqual(q('sum by (le) (rate(teiplex_cold_start_seconds_bucket{model="x"}[5m]))'), []);
    assert.deepEqual(q('sum(rate(teiplex_requests_total{instance="a"}[5m])) / on(route) sum(rate(teiplex_requests_total[5m]))'), [
      `q: grouping label route is on no metric it groups (${[...new Set([...targets, 'code', 'model', 'method'])].sort().join(', ')})`,
    ]);
    assert.match(q('sum(rate(teiplex_requests_total[5m])')[0], /^q: syntax error at/);
    assert.deepEqual(q('{__name__="teiplex_nope"}'), ['q: metric teiplex_nope is not exported']);
    // Exported but never sampled here (no replica was ejected): its labels are unknown, so a query on it fails.
    assert.deepEqual(q('sum by (reason) (rate(teiplex_outlier_ejections_total[5m]))'), [
      'q: metric teiplex_outlier_ejections_total had no sample in the scrape, so its labels cannot be checked (drive it, or leave it out)',
      `q: grouping label reason is on no metric it groups (${[...targets].sort().join(', ')})`,
    ]);
    // Grafana's label_values(selector, label): the label is checked too.
    const variable = { templating: { list: [{ type: 'query', name: 'v', query: { query: 'label_values(teiplex_model_loaded, device)' } }] }, panels: [] };
    assert.deepEqual(checkQueries(dashboardQueries(variable), series, targets), ['variable v: metric teiplex_model_loaded has no label device (it has model)']);
  });

  test('promtool: the rules check, and their unit tests pass; a broken rule file is refused', async () => {
    const checked = await run('promtool', ['check', 'rules', RULES]);
    assert.match(checked.stdout, /SUCCESS: \d+ rules found/);
    const tested = await run('promtool', ['test', 'rules', RULE_TESTS]);
    assert.match(`${tested.stdout}${tested.stderr}`, /SUCCESS/);
    // promtool is not blind: an alert whose expression does not parse, and a unit test that
    // expects an alert the rules do not fire.
    const bad = path.join(dir, 'bad-rules.yml');
    await writeFile(bad, (await readFile(RULES, 'utf8')).replace('teiplex_instance_up == 0', 'teiplex_instance_up == ('));
    await assert.rejects(run('promtool', ['check', 'rules', bad]), (err: any) => /teiplex_instance_up == \(|parse error|unexpected/i.test(`${err.stdout}${err.stderr}`));
    const copy = path.join(dir, 'rules-copy');
    await cp(path.dirname(RULES), copy, { recursive: true });
    const tests = await readFile(path.join(copy, 'rules.test.yml'), 'utf8');
    await writeFile(path.join(copy, 'rules.test.yml'), tests.replace("alertname: TeiplexInstanceFailed\n        exp_alerts: []", 'alertname: TeiplexInstanceFailed\n        exp_alerts: [{exp_labels: {severity: critical}}]'));
    await assert.rejects(run('promtool', ['test', 'rules', path.join(copy, 'rules.test.yml')]), (err: any) => /FAILED/.test(`${err.stdout}${err.stderr}`));
  });
});

describe('child CPU and memory per instance', () => {
  test("teiplex_child_resident_memory_bytes is the running child's VmRSS; the CPU counter kept growing across two restarts", async () => {
    const now = await m.waitFor('embedder', (i) => i.status === 'running');
    const text = (await m.api('GET', '/metrics')).body as string;
    const rss = metricValue(text, 'teiplex_child_resident_memory_bytes', { instance: 'embedder' });
    const status = await readFile(`/proc/${now.pid}/status`, 'utf8');
    const vmRss = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)![1]) * 1024;
    assert.ok(rss !== undefined && rss > 0, `rss ${rss}`);
    // The same process (and what it spawned), read a moment apart: within a factor of two.
    assert.ok(rss >= vmRss / 2 && rss <= vmRss * 2, `metric ${rss} vs /proc ${vmRss}`);
    const cpu = metricValue(text, 'teiplex_child_cpu_seconds_total', { instance: 'embedder' });
    assert.ok(Number.isFinite(cpuBeforeCrash) && cpuBeforeCrash > 0, `cpu before the crash ${cpuBeforeCrash}`);
    assert.ok(cpu !== undefined && cpu > cpuBeforeCrash, `cpu ${cpu} after two restarts, ${cpuBeforeCrash} before`);
    // The catalog model's replica was unloaded: no memory series for it.
    assert.equal(metricValue(text, 'teiplex_child_resident_memory_bytes', { instance: 'cataloged-1' }), undefined);
  });
});
