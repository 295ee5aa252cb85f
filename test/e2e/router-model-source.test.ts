/**
 * resolveModelDir against a loopback fake hub (test/helpers/fake-hub.ts) serving generated models:
 * the HF cache layout, offline restart, tokens, unknown repositories and revisions. Nothing here
 * touches the internet: HF_ENDPOINT always points at 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { cp, lstat, mkdtemp, readFile, readlink, realpath, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readModelFiles } from '../../src/router/model-files.js';
import { hubCacheDir, ModelSourceError, resolveModelDir } from '../../src/router/model-source.js';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.js';
import { testModel } from '../helpers/models.js';
import { runCli, startRouterProcess } from '../helpers/router-process.js';

const REPO = 'test-org/tiny-embed';
const PRIVATE = 'test-org/private-embed';
const TOKEN = 'hf_fake_test_token_0123456789';

let tmp: string;
let modelDir: string; // generated model, weights in onnx/model.onnx_data
let modelDirV2: string; // same model with another config.json, served as revision "v2"
let hub: FakeHub;
let privateHub: FakeHub;

function errorWith(status: number | undefined, ...parts: Array<string | RegExp>) {
  return (e: unknown) => {
    assert.ok(e instanceof ModelSourceError, `expected ModelSourceError, got ${String(e)}`);
    assert.equal(e.status, status, e.message);
    for (const p of parts) {
      if (typeof p === 'string') assert.ok(e.message.includes(p), `message lacks "${p}": ${e.message}`);
      else assert.match(e.message, p);
    }
    return true;
  };
}

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'teiplex-model-source-'));
  const generated = await testModel({ kind: 'embedding', externalData: true });
  modelDir = path.join(tmp, 'repo-main');
  await cp(generated, modelDir, { recursive: true });
  // Files the router does not need must not be fetched.
  await writeFile(path.join(modelDir, 'README.md'), '# tiny\n');
  await writeFile(path.join(modelDir, 'pytorch_model.bin'), Buffer.alloc(1024, 7));
  await rm(path.join(modelDir, 'config_sentence_transformers.json'), { force: true }); // an optional file the repo lacks
  modelDirV2 = path.join(tmp, 'repo-v2');
  await cp(modelDir, modelDirV2, { recursive: true });
  const config = JSON.parse(await readFile(path.join(modelDirV2, 'config.json'), 'utf8')) as Record<string, unknown>;
  await writeFile(path.join(modelDirV2, 'config.json'), JSON.stringify({ ...config, teiplex_test_revision: 'v2' }, null, 2));

  hub = await startFakeHub({ repos: [{ id: REPO, revisions: { main: modelDir, v2: modelDirV2 } }] });
  privateHub = await startFakeHub({ repos: [{ id: PRIVATE, revisions: { main: modelDir } }], token: TOKEN });
});

after(async () => {
  await hub?.close();
  await privateHub?.close();
  await rm(tmp, { recursive: true, force: true });
});

describe('resolveModelDir', () => {
  test('a local directory is returned as is, without a network request', async () => {
    const before = hub.requests.length;
    const got = await resolveModelDir({ modelId: modelDir, env: { HF_ENDPOINT: hub.url } });
    assert.equal(got.dir, path.resolve(modelDir));
    assert.equal(got.sha, undefined);
    assert.equal(hub.requests.length, before);
  });

  test('a missing local path is an error naming it, not a hub lookup', async () => {
    await assert.rejects(
      resolveModelDir({ modelId: path.join(tmp, 'nope'), env: { HF_ENDPOINT: hub.url } }),
      errorWith(undefined, path.join(tmp, 'nope'), 'neither an existing local directory'),
    );
  });

  describe('hub download into the HF cache layout', () => {
    let home: string;
    let cache: string;
    let first: { dir: string; sha?: string };
    const logs: string[] = [];

    before(async () => {
      home = path.join(tmp, 'hf-home');
      cache = path.join(home, 'hub');
      first = await resolveModelDir({ modelId: REPO, env: { HF_ENDPOINT: hub.url, HF_HOME: home }, log: (m) => logs.push(m) });
    });

    test('files land in $HF_HOME/hub/models--org--name/snapshots/<sha> with refs/main', async () => {
      const sha = hub.shaOf(REPO, 'main');
      const storage = path.join(cache, 'models--test-org--tiny-embed');
      assert.equal(first.sha, sha);
      assert.equal(first.dir, path.join(storage, 'snapshots', sha));
      assert.equal(await readFile(path.join(storage, 'refs', 'main'), 'utf8'), sha);
      assert.equal(hubCacheDir({ HF_HOME: home }), cache);
      assert.ok(logs.some((l) => l.includes(REPO)), logs.join('\n'));
    });

    test('snapshot files are relative symlinks into blobs/ with the source bytes', async () => {
      for (const rel of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.txt', 'modules.json', 'sentence_bert_config.json', '1_Pooling/config.json', 'onnx/model.onnx', 'onnx/model.onnx_data']) {
        const link = path.join(first.dir, rel);
        assert.ok((await lstat(link)).isSymbolicLink(), `${rel} is a symlink`);
        const target = await readlink(link);
        assert.ok(!path.isAbsolute(target) && target.includes('blobs'), `${rel} -> ${target}`);
        assert.ok((await realpath(link)).startsWith(path.join(cache, 'models--test-org--tiny-embed', 'blobs')));
        assert.deepEqual(await readFile(link), await readFile(path.join(modelDir, rel)), `${rel} content`);
      }
    });

    test('only the files the router needs are fetched; absent optional files are marked like huggingface_hub', async () => {
      await assert.rejects(lstat(path.join(first.dir, 'README.md')));
      await assert.rejects(lstat(path.join(first.dir, 'pytorch_model.bin')));
      await assert.rejects(lstat(path.join(first.dir, 'config_sentence_transformers.json')));
      const marker = path.join(cache, 'models--test-org--tiny-embed', '.no_exist', first.sha!, 'config_sentence_transformers.json');
      assert.ok((await lstat(marker)).isFile());
      assert.ok(!hub.requests.some((r) => r.url.includes('pytorch_model.bin') || r.url.includes('README.md')));
    });

    test('the snapshot loads as a model directory, with the sha taken from its path', async () => {
      const files = await readModelFiles(first.dir);
      assert.equal(files.modelSha, first.sha);
      assert.equal(files.onnxPath, path.join(first.dir, 'onnx', 'model.onnx'));
      assert.ok(files.poolingConfig);
    });

    test('a second resolve with the hub stopped uses the cache (offline restart)', async () => {
      const stopped = await startFakeHub({ repos: [] });
      const deadUrl = stopped.url;
      await stopped.close();
      const again = await resolveModelDir({ modelId: REPO, env: { HF_ENDPOINT: deadUrl, HF_HOME: home } });
      assert.deepEqual(again, first);
      // Also with HF_HUB_OFFLINE, and by commit sha.
      assert.deepEqual(await resolveModelDir({ modelId: REPO, env: { HF_ENDPOINT: deadUrl, HF_HOME: home, HF_HUB_OFFLINE: '1' } }), first);
      assert.deepEqual(await resolveModelDir({ modelId: REPO, revision: first.sha, env: { HF_ENDPOINT: deadUrl, HF_HOME: home } }), first);
    });

    test('an incomplete snapshot is completed: only missing files are fetched again', async () => {
      const home2 = path.join(tmp, 'hf-home-partial');
      const env = { HF_ENDPOINT: hub.url, HF_HOME: home2 };
      const got = await resolveModelDir({ modelId: REPO, env });
      // As if the process died before the graph and config.json were linked.
      await rm(path.join(got.dir, 'onnx', 'model.onnx'));
      await rm(path.join(got.dir, 'config.json'));
      let mark = hub.requests.length;
      assert.deepEqual(await resolveModelDir({ modelId: REPO, env }), got);
      const resolved = (from: number) => [...new Set(hub.requests.slice(from).filter((r) => r.url.includes('/resolve/')).map((r) => r.url.replace(/^.*\/resolve\/[^/]+\//, '')))].sort();
      assert.deepEqual(resolved(mark), ['config.json', 'onnx/model.onnx']);
      // Blobs gone too (dangling links): those are downloaded again.
      await rm(path.join(home2, 'hub', 'models--test-org--tiny-embed', 'blobs'), { recursive: true });
      mark = hub.requests.length;
      const again = await resolveModelDir({ modelId: REPO, env });
      assert.deepEqual(again, got);
      assert.ok(resolved(mark).includes('onnx/model.onnx_data'));
      for (const rel of ['config.json', 'onnx/model.onnx', 'onnx/model.onnx_data', 'tokenizer.json']) {
        assert.deepEqual(await readFile(path.join(again.dir, rel)), await readFile(path.join(modelDir, rel)), rel);
      }
    });
  });

  test('cacheDir wins over HUGGINGFACE_HUB_CACHE, which wins over HF_HOME', async () => {
    const flag = path.join(tmp, 'flag-cache');
    const envCache = path.join(tmp, 'env-cache');
    const env = { HF_ENDPOINT: hub.url, HF_HOME: path.join(tmp, 'unused-home'), HUGGINGFACE_HUB_CACHE: envCache };
    assert.equal(hubCacheDir(env), envCache);
    assert.equal(hubCacheDir(env, flag), flag);
    const got = await resolveModelDir({ modelId: REPO, cacheDir: flag, env });
    assert.ok(got.dir.startsWith(path.join(flag, 'models--test-org--tiny-embed', 'snapshots')), got.dir);
    await assert.rejects(lstat(path.join(tmp, 'unused-home')));
    await assert.rejects(lstat(envCache));
  });

  test('a revision is honoured: branch name and commit sha', async () => {
    const cache = path.join(tmp, 'rev-cache');
    const env = { HF_ENDPOINT: hub.url };
    const v2 = await resolveModelDir({ modelId: REPO, revision: 'v2', cacheDir: cache, env });
    const shaV2 = hub.shaOf(REPO, 'v2');
    assert.equal(v2.sha, shaV2);
    assert.notEqual(shaV2, hub.shaOf(REPO, 'main'));
    assert.equal(path.basename(v2.dir), shaV2);
    assert.equal(await readFile(path.join(cache, 'models--test-org--tiny-embed', 'refs', 'v2'), 'utf8'), shaV2);
    const config = JSON.parse(await readFile(path.join(v2.dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(config.teiplex_test_revision, 'v2');
    // Unchanged files share blobs with other revisions; a sha revision writes no ref.
    const cache2 = path.join(tmp, 'rev-cache-sha');
    const bySha = await resolveModelDir({ modelId: REPO, revision: shaV2, cacheDir: cache2, env });
    assert.equal(bySha.sha, shaV2);
    await assert.rejects(lstat(path.join(cache2, 'models--test-org--tiny-embed', 'refs')));
    assert.ok(hub.requests.some((r) => r.url.startsWith(`/api/models/${REPO}/revision/v2`)));
  });

  test('a token is sent as Authorization: Bearer to a hub that requires one', async () => {
    const got = await resolveModelDir({ modelId: PRIVATE, cacheDir: path.join(tmp, 'private-cache'), env: { HF_ENDPOINT: privateHub.url, HF_TOKEN: TOKEN } });
    assert.equal(got.sha, privateHub.shaOf(PRIVATE, 'main'));
    assert.ok(privateHub.requests.length > 0);
    assert.ok(privateHub.requests.every((r) => r.authorization === `Bearer ${TOKEN}`));
  });

  test('a wrong or missing token is a clear 401 error naming the model and revision', async () => {
    for (const token of ['hf_wrong', undefined]) {
      await assert.rejects(
        resolveModelDir({ modelId: PRIVATE, cacheDir: path.join(tmp, 'denied-cache'), env: { HF_ENDPOINT: privateHub.url, ...(token ? { HF_TOKEN: token } : {}) } }),
        errorWith(401, PRIVATE, 'revision main', 'HTTP 401', 'HF_TOKEN'),
      );
    }
  });

  test('an unknown repository or revision is a clear error naming it', async () => {
    const cacheDir = path.join(tmp, 'unknown-cache');
    await assert.rejects(
      resolveModelDir({ modelId: 'test-org/does-not-exist', cacheDir, env: { HF_ENDPOINT: hub.url } }),
      errorWith(401, 'test-org/does-not-exist', 'revision main', 'HTTP 401'),
    );
    await assert.rejects(
      resolveModelDir({ modelId: REPO, revision: 'no-such-branch', cacheDir, env: { HF_ENDPOINT: hub.url } }),
      errorWith(404, REPO, 'revision no-such-branch', 'HTTP 404'),
    );
  });

  test('an unreachable hub with nothing cached fails naming the endpoint', async () => {
    const stopped = await startFakeHub({ repos: [] });
    await stopped.close();
    await assert.rejects(
      resolveModelDir({ modelId: REPO, cacheDir: path.join(tmp, 'dead-cache'), env: { HF_ENDPOINT: stopped.url } }),
      errorWith(undefined, REPO, 'revision main', stopped.url),
    );
    await assert.rejects(
      resolveModelDir({ modelId: REPO, cacheDir: path.join(tmp, 'dead-cache'), env: { HF_ENDPOINT: stopped.url, HF_HUB_OFFLINE: '1' } }),
      errorWith(undefined, REPO, 'HF_HUB_OFFLINE'),
    );
  });

  test('a repository without an ONNX graph is refused before anything is written', async () => {
    const noOnnx = path.join(tmp, 'repo-no-onnx');
    await cp(modelDir, noOnnx, { recursive: true });
    await rm(path.join(noOnnx, 'onnx'), { recursive: true });
    const h = await startFakeHub({ repos: [{ id: 'test-org/no-onnx', revisions: { main: noOnnx } }] });
    try {
      const cacheDir = path.join(tmp, 'no-onnx-cache');
      await assert.rejects(
        resolveModelDir({ modelId: 'test-org/no-onnx', cacheDir, env: { HF_ENDPOINT: h.url } }),
        errorWith(404, 'test-org/no-onnx', 'onnx/model.onnx', '--onnx-file'),
      );
      await assert.rejects(lstat(path.join(cacheDir, 'models--test-org--no-onnx')));
      // --onnx-file picks another graph.
      await assert.rejects(
        resolveModelDir({ modelId: REPO, onnxFile: 'onnx/model_quantized.onnx', cacheDir, env: { HF_ENDPOINT: hub.url } }),
        errorWith(404, REPO, 'onnx/model_quantized.onnx'),
      );
    } finally {
      await h.close();
    }
  });

  test('teiplex router serves a hub id from the fake hub, then restarts offline from the cache', async () => {
    const cache = path.join(tmp, 'router-cache');
    const h = await startFakeHub({ repos: [{ id: REPO, revisions: { main: modelDir } }] });
    const sha = h.shaOf(REPO, 'main');
    const args = ['--model-id', REPO, '--huggingface-hub-cache', cache, '--http-port', '0'];
    const env = { HF_ENDPOINT: h.url, HF_HOME: path.join(tmp, 'router-unused-home'), HF_TOKEN: '' };
    let router = await startRouterProcess(args, env);
    try {
      const info = (await (await fetch(`http://127.0.0.1:${router.httpPort}/info`)).json()) as Record<string, unknown>;
      assert.equal(info.model_id, REPO);
      assert.equal(info.model_sha, sha);
      assert.ok(h.requests.some((r) => r.url.endsWith('/onnx/model.onnx')));
      // No library chatter on stdout, where the ready line goes (@huggingface/hub's cache helper prints "Downloading ...").
      assert.ok(!/^Downloading /m.test(router.output()), router.output());
    } finally {
      assert.equal(await router.stop(), 0, router.output());
    }
    await h.close();
    router = await startRouterProcess(args, env);
    try {
      const info = (await (await fetch(`http://127.0.0.1:${router.httpPort}/info`)).json()) as Record<string, unknown>;
      assert.equal(info.model_sha, sha);
    } finally {
      assert.equal(await router.stop(), 0, router.output());
    }
    // A repository that is not cached, with the hub down: the router exits non-zero naming the model and the endpoint.
    const failed = await runCli(['router', '--model-id', 'test-org/missing', '--huggingface-hub-cache', cache, '--port', '0', '--hostname', '127.0.0.1'], env);
    assert.notEqual(failed.code, 0);
    assert.match(failed.stderr, /test-org\/missing/);
    assert.match(failed.stderr, new RegExp(h.url.replace(/[.:/]/g, (c) => `\\${c}`)));
  });
});
