/**
 * `teiplex serve --quickstart`, the README's first command: a real manager with no config file
 * writes its generated models once into the cache folder, serves the embedding instance through
 * the OpenAI route, a TEI route naming the model and the gRPC multiplexer, starts the catalog
 * reranker on its first request, and keeps its state apart. A second run writes nothing; a model
 * folder left half-written by a killed run is never served.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { projectPath } from '../../src/common/paths.js';
import { startManagerWith, type ManagerProcess } from '../helpers/manager-process.js';
import { mux, unary } from '../helpers/mux-client.js';

const cache = await mkdtemp(path.join(tmpdir(), 'teiplex-quickstart-'));
const env = (): NodeJS.ProcessEnv => ({
  TEIPLEX_CACHE_DIR: cache,
  TEIPLEX_API_PORT: '0',
  TEIPLEX_GRPC_PORT: '0',
  TEIPLEX_INSTANCE_PORT_START: String(20000 + Math.floor(Math.random() * 20000)),
  TEIPLEX_INSTANCE_PORT_END: '45000',
});
const models = path.join(cache, 'quickstart', 'models');
let m: ManagerProcess | undefined;
after(async () => {
  await m?.stop();
  await rm(cache, { recursive: true, force: true });
});

const post = async (route: string, body: unknown): Promise<{ status: number; body: any }> => {
  const res = await fetch(`http://127.0.0.1:${m!.apiPort}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(120_000) });
  return { status: res.status, body: await res.json() };
};

test('first run: models written, minilm answers on OpenAI, TEI and gRPC alike; the catalog reranker starts on its first request', async () => {
  // A folder a killed run left half-written is removed, never served.
  await mkdir(path.join(models, '.minilm-l6.partial'), { recursive: true });
  await writeFile(path.join(models, '.minilm-l6.partial', 'config.json'), '{"truncated":');
  m = await startManagerWith(['--quickstart'], env(), 180_000);
  assert.deepEqual((await readdir(models)).sort(), ['minilm-l6', 'reranker-tiny']);
  assert.match(m.output(), /teiplex quickstart is serving 'minilm'/);
  assert.match(m.output(), /status page: http:\/\/127\.0\.0\.1:\d+\/ui/);
  // state and logs in the quickstart folder, not the working directory
  assert.equal(m.ready.source, 'config');
  await m.waitFor('minilm', (i) => i.status === 'running', 120_000);
  await stat(path.join(cache, 'quickstart', 'state.toml'));
  await stat(path.join(cache, 'quickstart', 'logs', 'minilm.log'));

  const openai = await post('/v1/embeddings', { model: 'minilm', input: 'hello' });
  assert.equal(openai.status, 200, JSON.stringify(openai.body));
  const vector: number[] = openai.body.data[0].embedding;
  assert.equal(vector.length, 384); // minilm-l6 shape
  const tei = await post('/embed', { model: 'minilm', inputs: ['hello'] });
  assert.equal(tei.status, 200, JSON.stringify(tei.body));
  const grpc = await unary<{ embeddings: number[] }>(mux(Number(m.ready.grpc_port)), 'Embed', { target: { instance_name: 'minilm' }, request: { inputs: 'hello' } }, { deadline: Date.now() + 60_000 });
  for (const other of [tei.body[0] as number[], grpc.res.embeddings]) {
    assert.equal(other.length, 384);
    for (let d = 0; d < 384; d++) assert.ok(Math.abs(other[d] - vector[d]) < 1e-5, `dimension ${d}`);
  }

  const models0 = await m.api('GET', '/models');
  assert.equal(models0.body.find((x: { name: string }) => x.name === 'reranker')?.state, 'available');
  const rerank = await post('/rerank', { model: 'reranker', query: 'what is deep learning?', texts: ['Deep learning is a kind of machine learning', 'cheese'] });
  assert.equal(rerank.status, 200, JSON.stringify(rerank.body));
  assert.deepEqual(rerank.body.map((r: { index: number }) => r.index).sort(), [0, 1]);
  assert.equal((await m.api('GET', '/models/reranker')).body.state, 'loaded');
});

test('second run: nothing written again; the instance is restored from the quickstart state', async () => {
  const before = (await stat(path.join(models, 'minilm-l6', 'onnx', 'model.onnx'))).mtimeMs;
  await m!.stop();
  m = await startManagerWith(['--quickstart'], env(), 180_000);
  assert.doesNotMatch(m.output(), /models written/);
  assert.equal((await stat(path.join(models, 'minilm-l6', 'onnx', 'model.onnx'))).mtimeMs, before);
  assert.equal(m.ready.source, 'state');
  await m.waitFor('minilm', (i) => i.status === 'running', 120_000);
  const openai = await post('/v1/embeddings', { model: 'minilm', input: 'hello' });
  assert.equal(openai.status, 200);
});

test('--quickstart with --config is a usage error (exit 2)', () => {
  const r = spawnSync(process.execPath, [projectPath('bin', 'teiplex.js'), 'serve', '--quickstart', '--config', 'x.toml'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--quickstart takes no --config/);
});
