/**
 * docs/client.md cannot rot: every ```ts block is type-checked (tsc, strict, importing
 * `teiplex/client` as a user does: the package's export of dist/) and every block not marked
 * "not run" runs, in order, against a real manager started with the doc's own example config
 * (its model ids replaced by generated test models of the same kind), finding it through
 * TEIPLEX_URL / TEIPLEX_GRPC_URL as the doc says. A block must exit 0 and print something.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { parse } from 'smol-toml';
import { projectPath } from '../../src/common/paths.js';
import { examplesConfig, tsExamples, type DocExample } from '../helpers/client-docs.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel, type TestModelSpec } from '../helpers/models.js';
import { until } from '../helpers/wait.js';

const run = promisify(execFile);

/** The kind of test model that stands in for each model id the doc names. */
const STAND_INS: Record<string, TestModelSpec> = {
  'BAAI/bge-small-en-v1.5': { kind: 'embedding', seed: 341 },
  'naver/splade-v3': { kind: 'splade', seed: 342 },
  'BAAI/bge-reranker-base': { kind: 'reranker', seed: 343 },
  'distilbert/distilbert-base-uncased-finetuned-sst-2-english': { kind: 'classifier', seed: 344, numLabels: 2 },
  'intfloat/multilingual-e5-large': { kind: 'embedding', seed: 345 },
};

describe('docs/client.md examples', () => {
  const work = projectPath('.tmp', `client-docs-${process.pid}`);
  let markdown: string;
  let examples: DocExample[];
  let files: string[];
  let m: ManagerProcess;

  before(async () => {
    markdown = await readFile(projectPath('docs', 'client.md'), 'utf8');
    examples = tsExamples(markdown);
    await mkdir(work, { recursive: true });
    files = [];
    for (const [i, ex] of examples.entries()) {
      const file = path.join(work, `example-${i + 1}-line-${ex.line}.ts`);
      await writeFile(file, `${ex.code}\n`);
      files.push(file);
    }
  });

  after(async () => {
    await m?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test('the doc has examples of every TeiplexClient method', () => {
    assert.ok(examples.length >= 6, `${examples.length} examples`);
    const all = examples.map((e) => e.code).join('\n');
    for (const method of ['embed(', 'embedSparse(', 'embedAll(', 'rerank(', 'predict(', 'tokenize(', 'embedArrow(', 'models(', 'instances(', 'noWait']) {
      assert.ok(all.includes(method), `no example uses ${method}`);
    }
  });

  test('every example type-checks against the published types (teiplex/client)', async () => {
    const tsconfig = path.join(work, 'tsconfig.json');
    await writeFile(
      tsconfig,
      JSON.stringify({
        compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: true, types: ['node'] },
        files: files.map((f) => path.basename(f)),
      }),
    );
    const tsc = projectPath('node_modules', 'typescript', 'bin', 'tsc');
    const r = await run(process.execPath, [tsc, '-p', tsconfig], { cwd: work }).catch((e: { stdout?: string; stderr?: string }) => e);
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
    assert.equal(out.trim(), '', `tsc found errors in docs/client.md's examples (file names carry the line):\n${out}`);
  });

  test('every example runs against a manager with the doc\'s config', async (t) => {
    const doc = parse(examplesConfig(markdown)) as { instances?: Array<Record<string, unknown>>; models?: Array<Record<string, unknown>> };
    let toml = examplesConfig(markdown);
    for (const entry of [...(doc.instances ?? []), ...(doc.models ?? [])]) {
      const id = String(entry.model_id);
      const spec = STAND_INS[id];
      assert.ok(spec !== undefined, `docs/client.md names model_id ${id}: add its kind to STAND_INS`);
      toml = toml.replace(`model_id = ${JSON.stringify(id)}`, `model_id = ${JSON.stringify(await testModel(spec))}`);
    }
    const file = path.join(work, 'manager.toml');
    await writeFile(file, `${loopbackConfig(work)}health_check_interval_secs = 5\nstartup_timeout_secs = 120\n${toml}\n`);
    m = await startManager(file);
    for (const i of doc.instances ?? []) await m.waitFor(String(i.name), (x) => x.status === 'running', 120_000);
    const env = { ...process.env, TEIPLEX_URL: `http://127.0.0.1:${m.apiPort}`, TEIPLEX_GRPC_URL: `127.0.0.1:${m.ready.grpc_port}`, TEIPLEX_API_KEY: '' };
    let ran = 0;
    for (const [i, ex] of examples.entries()) {
      if (ex.notRun !== undefined) continue;
      const r = await run(process.execPath, ['--import', 'tsx', files[i]!], { cwd: work, env, timeout: 180_000 }).catch(
        (e: { code?: number; stdout?: string; stderr?: string; message: string }) => assert.fail(`docs/client.md line ${ex.line}: the example failed (${e.code}):\n${e.stderr ?? e.message}\n${e.stdout ?? ''}`),
      );
      assert.notEqual(r.stdout.trim(), '', `docs/client.md line ${ex.line}: printed nothing`);
      t.diagnostic(`docs/client.md line ${ex.line}:\n${r.stdout.trimEnd()}`);
      ran++;
    }
    assert.equal(ran, examples.filter((e) => e.notRun === undefined).length);
    // The lifecycle example cleaned up after itself.
    await until('scratch deleted', async () => (await m.api('GET', '/instances/scratch')).status === 404);
  });
});
