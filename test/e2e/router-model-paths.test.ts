/**
 * Model file paths stay inside the model folder: `--revision`, the contents of `refs/<revision>`,
 * `--onnx-file` and module folders named by `modules.json` are refused when they lead outside the
 * model directory or the repository's hub cache folder, by name (`..`, absolute paths) or through
 * a symlink (realpath). Each case puts a usable file outside the folder ("bait") that the old
 * code would have read; the router must refuse with a clear error instead. Legitimate layouts
 * (hub snapshots of symlinks into blobs/, nested ref names, symlinks inside the folder, a model
 * directory reached through a symlink) still load.
 */
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { projectPath } from '../../src/common/paths.js';
import { ModelFilesError, readModelFiles } from '../../src/router/model-files.js';
import { ModelSourceError, resolveModelDir } from '../../src/router/model-source.js';
import { startFakeHub } from '../helpers/fake-hub.js';
import { testModel } from '../helpers/models.js';
import { runCli } from '../helpers/router-process.js';

let tmp: string;
/** A model directory outside every model folder under test, with files worth stealing. */
let outside: string;

/** The fixture model (tokenizer and sentence-transformers files) with a placeholder graph. */
async function fixtureModel(dir: string): Promise<string> {
  await cp(projectPath('fixtures', 'all-MiniLM-L6-v2'), dir, { recursive: true });
  await writeFile(path.join(dir, 'model.onnx'), 'x');
  return dir;
}

let counter = 0;
async function freshModel(): Promise<string> {
  return fixtureModel(path.join(tmp, `model-${counter++}`));
}

function refused(ErrorClass: typeof ModelFilesError | typeof ModelSourceError, ...parts: RegExp[]) {
  return (e: unknown) => {
    assert.ok(e instanceof ErrorClass, `expected ${ErrorClass.name}, got ${String(e)}`);
    for (const p of parts) assert.match(e.message, p);
    return true;
  };
}

async function writeModules(dir: string, poolingPath: string, extra: Array<{ path: string; type: string }> = []): Promise<void> {
  const modules = [
    { idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
    { idx: 1, name: '1', path: poolingPath, type: 'sentence_transformers.models.Pooling' },
    ...extra,
  ];
  await writeFile(path.join(dir, 'modules.json'), JSON.stringify(modules));
}

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'teiplex-model-paths-'));
  outside = await fixtureModel(path.join(tmp, 'outside'));
  // The bait's Pooling config differs from the model's own (mean), so reading it would show.
  await writeFile(path.join(outside, '1_Pooling', 'config.json'), JSON.stringify({ word_embedding_dimension: 384, pooling_mode_cls_token: true }));
});

after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('a local model directory', () => {
  test('the fixture loads; a module folder named by modules.json inside the directory is used', async () => {
    const dir = await freshModel();
    assert.equal((await readModelFiles(dir)).poolingConfig?.pooling_mode_mean_tokens, true);
    await cp(path.join(dir, '1_Pooling'), path.join(dir, 'modules', 'pool'), { recursive: true });
    await writeModules(dir, './modules//pool');
    assert.equal((await readModelFiles(dir)).poolingConfig?.pooling_mode_mean_tokens, true);
  });

  test('modules.json naming a module folder outside the directory (.., absolute) is refused', async () => {
    const dir = await freshModel();
    await writeModules(dir, '../outside/1_Pooling');
    await assert.rejects(readModelFiles(dir), refused(ModelFilesError, /modules\.json entry 1/, /"\.\.\/outside\/1_Pooling" contains "\.\."/));
    await writeModules(dir, path.join(outside, '1_Pooling'));
    await assert.rejects(readModelFiles(dir), refused(ModelFilesError, /modules\.json entry 1/, /is an absolute path/));
    await writeModules(dir, '1_Pooling', [{ path: '../../etc', type: 'sentence_transformers.models.Dense' }]);
    await assert.rejects(readModelFiles(dir), refused(ModelFilesError, /modules\.json entry 2/, /"\.\.\/\.\.\/etc"/));
    await writeModules(dir, '1_Pooling\\..\\..\\outside');
    await assert.rejects(readModelFiles(dir), refused(ModelFilesError, /backslash/));
  });

  test('--onnx-file outside the directory (.., absolute) is refused', async () => {
    const dir = await freshModel();
    await assert.rejects(readModelFiles(dir, { onnxFile: '../outside/model.onnx' }), refused(ModelFilesError, /--onnx-file "\.\.\/outside\/model\.onnx" contains "\.\."/));
    await assert.rejects(readModelFiles(dir, { onnxFile: path.join(outside, 'model.onnx') }), refused(ModelFilesError, /--onnx-file .* is an absolute path/));
    await assert.rejects(readModelFiles(dir, { onnxFile: 'onnx/../../outside/model.onnx' }), refused(ModelFilesError, /--onnx-file/));
  });

  test('a symlink that leads outside the directory is refused; symlinks inside it are followed', async () => {
    const cases: Array<[string, string]> = [
      ['config.json', path.join(outside, 'config.json')],
      ['tokenizer.json', path.join(outside, 'tokenizer.json')],
      ['model.onnx', path.join(outside, 'model.onnx')],
      ['1_Pooling', path.join(outside, '1_Pooling')],
      ['model.onnx_data', path.join(outside, 'model.onnx')], // external data beside the graph
      ['config_sentence_transformers.json', path.join(outside, 'config_sentence_transformers.json')],
    ];
    for (const [name, target] of cases) {
      const dir = await freshModel();
      await rm(path.join(dir, name), { recursive: true, force: true });
      await symlink(target, path.join(dir, name));
      await assert.rejects(readModelFiles(dir), refused(ModelFilesError, new RegExp(`${name.replace('.', '\\.')}.* leads outside`), /real location/), name);
    }
    // Relative symlinks that climb out and back in, and a model directory that is itself a symlink, are fine.
    const dir = await freshModel();
    await mkdir(path.join(dir, 'files'));
    await cp(path.join(dir, 'tokenizer.json'), path.join(dir, 'files', 'tokenizer.json'));
    await rm(path.join(dir, 'tokenizer.json'));
    await symlink(path.join('..', path.basename(dir), 'files', 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    const link = path.join(tmp, 'current-model');
    await symlink(dir, link);
    const files = await readModelFiles(link);
    assert.equal(files.tokenizerPath, path.join(link, 'tokenizer.json'));
  });

  test('a hub snapshot given as a local directory may link into its blobs/, not out of its repository folder', async () => {
    const storage = path.join(tmp, 'local-cache', 'models--org--m');
    const snap = path.join(storage, 'snapshots', 'b'.repeat(40));
    await fixtureModel(snap);
    await mkdir(path.join(storage, 'blobs'));
    await cp(path.join(snap, 'config.json'), path.join(storage, 'blobs', 'etag1'));
    await rm(path.join(snap, 'config.json'));
    await symlink(path.join('..', '..', 'blobs', 'etag1'), path.join(snap, 'config.json'));
    assert.equal((await readModelFiles(snap)).modelSha, 'b'.repeat(40));
    await rm(path.join(snap, 'tokenizer.json'));
    await symlink(path.join(outside, 'tokenizer.json'), path.join(snap, 'tokenizer.json'));
    await assert.rejects(readModelFiles(snap), refused(ModelFilesError, /tokenizer\.json.* leads outside .*models--org--m/));
  });
});

describe('a hub repository in the cache (offline)', () => {
  const REPO = 'test-org/paths';
  let cache: string;
  let storage: string;
  const sha = 'c'.repeat(40);
  const env = { HF_HUB_OFFLINE: '1', HF_ENDPOINT: 'http://127.0.0.1:9' };
  const resolve = (over: { revision?: string; onnxFile?: string } = {}) => resolveModelDir({ modelId: REPO, cacheDir: cache, env, ...over });

  before(async () => {
    cache = path.join(tmp, 'hub-cache');
    storage = path.join(cache, 'models--test-org--paths');
    await fixtureModel(path.join(storage, 'snapshots', sha));
    await mkdir(path.join(storage, 'refs', 'refs', 'pr'), { recursive: true });
    await writeFile(path.join(storage, 'refs', 'main'), sha);
    await writeFile(path.join(storage, 'refs', 'refs', 'pr', '1'), sha);
    // Bait outside the cache: a ref-like file holding the sha, and a complete snapshot.
    await writeFile(path.join(tmp, 'bait-ref'), sha);
  });

  test('main, a commit sha and a nested ref name (refs/pr/1) resolve from the cache', async () => {
    const want = { dir: path.join(storage, 'snapshots', sha), sha };
    assert.deepEqual(await resolve(), want);
    assert.deepEqual(await resolve({ revision: sha }), want);
    assert.deepEqual(await resolve({ revision: 'refs/pr/1' }), want);
  });

  test('--revision with .., an absolute path or a backslash is refused before anything is read', async () => {
    // refs/../../../bait-ref is <tmp>/bait-ref: outside the cache.
    await assert.rejects(resolve({ revision: '../../../bait-ref' }), refused(ModelSourceError, /--revision "\.\.\/\.\.\/\.\.\/bait-ref" contains "\.\."/));
    await assert.rejects(resolve({ revision: path.join(tmp, 'bait-ref') }), refused(ModelSourceError, /--revision .* is an absolute path/));
    await assert.rejects(resolve({ revision: '..\\..\\..\\bait-ref' }), refused(ModelSourceError, /--revision .* backslash/));
    await assert.rejects(resolve({ revision: 'main\n' }), refused(ModelSourceError, /--revision .* control characters/));
  });

  test('a ref file that does not hold a commit sha is refused naming it; an empty one is not cached', async () => {
    await writeFile(path.join(storage, 'refs', 'evil'), '../../..');
    await assert.rejects(resolve({ revision: 'evil' }), refused(ModelSourceError, /refs\/evil does not hold a commit sha/, /"\.\.\/\.\.\/\.\."/));
    await writeFile(path.join(storage, 'refs', 'empty'), '');
    await assert.rejects(resolve({ revision: 'empty' }), refused(ModelSourceError, /not in the hub cache/, /HF_HUB_OFFLINE/));
  });

  test('a ref or snapshot that is a symlink out of the repository folder is refused', async () => {
    await symlink(path.join(tmp, 'bait-ref'), path.join(storage, 'refs', 'linked'));
    await assert.rejects(resolve({ revision: 'linked' }), refused(ModelSourceError, /refs\/linked.* leads outside/));
    // A snapshot directory that is a symlink to a complete model elsewhere.
    const other = 'd'.repeat(40);
    await symlink(outside, path.join(storage, 'snapshots', other));
    await writeFile(path.join(storage, 'refs', 'other'), other);
    await assert.rejects(resolve({ revision: 'other' }), refused(ModelSourceError, /snapshots\/d{40}\/config\.json.* leads outside/));
    await assert.rejects(resolve({ revision: other }), refused(ModelSourceError, /leads outside/));
  });

  test('--onnx-file outside the repository is refused before any hub request', async () => {
    await assert.rejects(resolve({ onnxFile: '../../../outside/model.onnx' }), refused(ModelSourceError, /--onnx-file .* contains "\.\."/));
    await assert.rejects(resolve({ onnxFile: path.join(outside, 'model.onnx') }), refused(ModelSourceError, /--onnx-file .* is an absolute path/));
  });

  test('teiplex router --revision ../../x exits non-zero naming the flag', async () => {
    const r = await runCli(['router', '--model-id', REPO, '--revision', '../../x', '--huggingface-hub-cache', cache, '--port', '0', '--hostname', '127.0.0.1'], env);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--revision "\.\.\/\.\.\/x" contains "\.\."/);
  });
});

test('a hub download whose modules.json names a Pooling folder outside the snapshot is refused', async () => {
  const repoDir = path.join(tmp, 'repo-evil-modules');
  await cp(await testModel({ kind: 'embedding' }), repoDir, { recursive: true });
  await writeModules(repoDir, '../../../../escape');
  const hub = await startFakeHub({ repos: [{ id: 'test-org/evil', revisions: { main: repoDir } }] });
  try {
    const cacheDir = path.join(tmp, 'evil-cache');
    await assert.rejects(
      resolveModelDir({ modelId: 'test-org/evil', cacheDir, env: { HF_ENDPOINT: hub.url } }),
      refused(ModelSourceError, /modules\.json's Pooling module path "\.\.\/\.\.\/\.\.\/\.\.\/escape\/config\.json" contains "\.\."/),
    );
    // The refusal comes before the graph: the snapshot is not complete, so it is never used.
    await assert.rejects(readFile(path.join(cacheDir, 'models--test-org--evil', 'refs', 'main')));
  } finally {
    await hub.close();
  }
});
