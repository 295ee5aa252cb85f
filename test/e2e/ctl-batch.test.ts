/**
 * `teiplex ctl batch` end to end: the built CLI (bin/teiplex.js, so `npm run build` first) against
 * a real manager with real `teiplex router` children and an API key:
 * - `submit FILE --wait` of a JSONL file: the batch id on stdout, progress on stderr, exit 0 once
 *   completed; `status` (the table, one batch, `-o json` the API's own answer, `-o name`);
 *   `download` into a directory: the output and error files, byte for byte the API's, every
 *   custom_id once with the vector /v1/embeddings gives, no temporary file left;
 * - a Parquet file with --model, --embedding-type int8 and --dimensions 16: the Parquet output read
 *   back by polars, row-aligned;
 * - a create the manager refuses: exit 1 with its code, and the uploaded file deleted again;
 * - a batch still running (its model stopped): `download` refused; `submit --wait` of a batch queued
 *   behind it ended by Ctrl-C (exit 1, the batch runs on); `cancel` both: the partial output
 *   downloaded, each row once in the output or the error file; the queued one's error file alone;
 * - `submit --wait` of a batch that fails: exit 1 with its error; its download refused;
 * - another key sees none of it (NOT_FOUND); the admin listener (the data plane on data_port) is
 *   named in the hint; the completion of batch verbs and ids from the manager.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pl from 'nodejs-polars';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { projectPath } from '../../src/common/paths.js';
import { client, close, instanceToml, writeConfig } from '../helpers/data-plane.js';
import { freePort, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { runCli, startCli } from '../helpers/router-process.js';
import { until } from '../helpers/wait.js';
import { batchLine, outputLines } from '../helpers/batch-lines.js';

const KEYS = { alice: 'ctl-batch-alice-key-1', bob: 'ctl-batch-bob-key-2' } as const;
const BATCH_ID = /^batch_[0-9a-f]{24}$/;

const dir = await mkdtemp(path.join(tmpdir(), 'teiplex-ctl-batch-'));
let m: ManagerProcess;
let url: string;

/** `teiplex ctl ARGS...` against the test manager as alice (TEIPLEX_URL, TEIPLEX_API_KEY). */
const ctl = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(['ctl', ...args], { TEIPLEX_URL: url, TEIPLEX_API_KEY: KEYS.alice, ...env }, 300_000);

async function ok(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; stderr: string }> {
  const r = await ctl(args, env);
  assert.equal(r.code, 0, `ctl ${args.join(' ')}: exit ${r.code}\n${r.stderr}${r.stdout}`);
  return r;
}

/** ctl must fail with `code`; its stderr, checked for no stack trace. */
async function fails(args: string[], code: 1 | 2, env: NodeJS.ProcessEnv = {}): Promise<string> {
  const r = await ctl(args, env);
  assert.equal(r.code, code, `ctl ${args.join(' ')}: exit ${r.code}\n${r.stderr}${r.stdout}`);
  assert.match(r.stderr, /^teiplex ctl: /m);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
  return r.stderr;
}

const alice = () => client(Number(m.ready.data_port), { authorization: `Bearer ${KEYS.alice}` });
const line = batchLine;
const lines = outputLines;

/** The bytes of a file as the API serves them. */
async function content(fileId: string): Promise<Buffer> {
  const res = await fetch(`${url}/v1/files/${fileId}/content`, { headers: { authorization: `Bearer ${KEYS.alice}` } });
  assert.equal(res.status, 200, `content of ${fileId}`);
  return Buffer.from(await res.arrayBuffer());
}

const batch = async (id: string): Promise<any> => {
  const r = await alice().get(`/v1/batches/${id}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
};

/** An aligned table as rows of cells, split at the header's column starts. */
function table(text: string): Record<string, string>[] {
  const rows = text.trimEnd().split('\n');
  const starts = [...rows[0].matchAll(/\S+/g)].map((x) => x.index!);
  const names = [...rows[0].matchAll(/\S+/g)].map((x) => x[0]);
  return rows.slice(1).map((l) => Object.fromEntries(names.map((n, c) => [n, l.slice(starts[c], starts[c + 1] ?? l.length).trim()])));
}

/** `Key:  value` lines as a record. */
const fields = (text: string): Record<string, string> =>
  Object.fromEntries(
    text
      .trimEnd()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]),
  );

before(async () => {
  const emb = await testModel({ kind: 'embedding', seed: 1701 });
  const slow = await testModel({ kind: 'embedding', seed: 1702 });
  const keys = Object.entries(KEYS)
    .map(([name, key]) => `[[auth.api_keys]]\nname = "${name}"\nkey_sha256 = "${sha256Hex(key)}"\n`)
    .join('\n');
  // One job at a time, so that a batch can be kept queued behind a running one.
  // The data plane on its own port: the batch verbs' --url names it, not the admin API's.
  const cfg = await writeConfig(dir, `data_port = ${await freePort()}\nbatch_chunk_rows = 8\nbatch_max_running_jobs = 1\n\n[auth]\nadmin_requires_key = false\n\n${keys}`, instanceToml('emb', emb) + instanceToml('slow', slow));
  m = await startManager(cfg);
  url = `http://127.0.0.1:${m.ready.data_port}`;
  assert.notEqual(m.ready.data_port, m.apiPort);
  for (const name of ['emb', 'slow']) await m.waitFor(name, (i) => i.status === 'running', 120_000);
});

after(async () => {
  if (m) assert.equal(await m.stop(), 0);
  await rm(dir, { recursive: true, force: true });
});

describe('teiplex ctl batch', () => {
  const texts = Array.from({ length: 20 }, (_, i) => `ctl batch text ${i} ${'word '.repeat(i % 6)}`.trim());
  let done: string;

  test('submit --wait: the id on stdout, progress on stderr, exit 0 once completed', async () => {
    const file = path.join(dir, 'rows.jsonl');
    await writeFile(file, `${[...texts.map((t, i) => line(`r-${i}`, { model: 'emb', input: t })), 'not json at all'].join('\n')}\n`);
    const r = await ok(['batch', 'submit', file, '--wait', '--metadata', 'team=search']);
    const out = r.stdout.trimEnd().split('\n');
    assert.equal(out.length, 1, `only the id on stdout: ${r.stdout}`);
    assert.match(out[0], BATCH_ID);
    done = out[0];
    assert.match(r.stderr, new RegExp(`^${done}: completed, 20/21 rows done, 1 failed$`, 'm'), r.stderr);
    assert.match(r.stderr, new RegExp(`^${done}: output file-[0-9a-f]{24}, errors file-[0-9a-f]{24}: \`teiplex ctl batch download ${done}\`$`, 'm'));
    const b = await batch(done);
    assert.equal(b.status, 'completed');
    assert.deepEqual(b.metadata, { team: 'search' });
    assert.deepEqual(b.request_counts, { total: 21, completed: 20, failed: 1 });
    const input = await alice().get(`/v1/files/${b.input_file_id}`);
    assert.equal(input.body.filename, 'rows.jsonl');
  });

  test('status: the list, one batch, -o json (the API answer), -o name', async () => {
    const row = table((await ok(['batch', 'status'])).stdout).find((x) => x.ID === done);
    assert.ok(row, 'the batch is listed');
    assert.deepEqual({ ...row, CREATED: '' }, { ID: done, STATUS: 'completed', MODEL: 'emb', 'DONE/TOTAL': '20/21', FAILED: '1', CREATED: '' });
    assert.match(row.CREATED, /^\d+(s|m\d+s)$/);
    const one = fields((await ok(['batch', 'status', done])).stdout);
    const b = await batch(done);
    assert.equal(one.Status, 'completed');
    assert.equal(one['Output file'], b.output_file_id);
    assert.equal(one['Error file'], b.error_file_id);
    assert.equal(one.Rows, '20/21 done, 1 failed');
    assert.equal(one.Metadata, 'team=search');
    assert.deepEqual(JSON.parse((await ok(['batch', 'status', done, '-o', 'json'])).stdout), b);
    const all = JSON.parse((await ok(['batch', 'status', '-o', 'json'])).stdout) as Array<{ id: string }>;
    assert.deepEqual(all.find((x) => x.id === done), b);
    assert.ok((await ok(['batch', 'status', '-o', 'name'])).stdout.split('\n').includes(done));
  });

  test('download into a directory: the output and error files as the API serves them, each row once, the vectors /v1/embeddings gives', async () => {
    const into = path.join(dir, 'downloads');
    await mkdir(into);
    const r = await ok(['batch', 'download', done, '--output', into]);
    const outPath = path.join(into, `${done}-output.jsonl`);
    const errPath = path.join(into, `${done}-errors.jsonl`);
    const b = await batch(done);
    const outBytes = await readFile(outPath);
    const errBytes = await readFile(errPath);
    assert.deepEqual(outBytes, await content(b.output_file_id));
    assert.deepEqual(errBytes, await content(b.error_file_id));
    assert.equal(r.stdout, `output: ${outPath} (${outBytes.length} bytes)\nerrors: ${errPath} (${errBytes.length} bytes, 1 failed rows)\n`);
    assert.deepEqual((await readdir(into)).sort(), [`${done}-errors.jsonl`, `${done}-output.jsonl`], 'no temporary file left');
    const got = lines(outBytes.toString());
    assert.deepEqual(got.map((l) => l.custom_id).sort(), texts.map((_, i) => `r-${i}`).sort());
    for (const l of got) {
      assert.equal(l.response?.status_code, 200);
      const direct = await alice().post('/v1/embeddings', { model: 'emb', input: texts[Number(l.custom_id.slice(2))] });
      assert.equal(direct.status, 200);
      close(l.response?.body.data[0].embedding, direct.body.data[0].embedding, 1e-4, l.custom_id);
    }
    const errs = lines(errBytes.toString());
    assert.equal(errs.length, 1);
    assert.equal(errs[0].custom_id, 'line-21');
    assert.equal(errs[0].response?.status_code, 400);
    // A path of its own, replacing what was there; -o json says where.
    const named = path.join(dir, 'named.jsonl');
    await writeFile(named, 'old');
    const j = JSON.parse((await ok(['batch', 'download', done, '--output', named, '--errors', path.join(dir, 'named-errors.jsonl'), '-o', 'json'])).stdout);
    assert.deepEqual(await readFile(named), outBytes);
    assert.deepEqual(j.output, { file_id: b.output_file_id, path: named, bytes: outBytes.length, content_type: 'application/jsonl' });
    assert.equal(j.errors.bytes, errBytes.length);
  });

  test('a Parquet file with --model, --embedding-type int8, --dimensions 16, --completion-window 90m: the Parquet output, row-aligned, read by polars', async () => {
    const rows = Array.from({ length: 30 }, (_, i) => `parquet row ${i} ${'text '.repeat(i % 4)}`);
    const df = pl.DataFrame([pl.Series('doc_id', rows.map((_, i) => 500 + i), pl.Int64), pl.Series('body', rows, pl.Utf8)]);
    const file = path.join(dir, 'corpus.parquet');
    await writeFile(file, Buffer.from(df.writeParquet({ compression: 'zstd' })));
    const r = await ok(['batch', 'submit', file, '--model', 'emb', '--text-column', 'body', '--id-column', 'doc_id', '--embedding-type', 'int8', '--dimensions', '16', '--completion-window', '90m', '--wait', '-o', 'json']);
    const b = JSON.parse(r.stdout);
    assert.equal(b.status, 'completed', r.stdout);
    assert.equal(b.completion_window, '90m');
    assert.ok(b.expires_at - b.created_at === 90 * 60, `expires 90 minutes after it was created: ${b.created_at} -> ${b.expires_at}`);
    assert.deepEqual(b.request_counts, { total: 30, completed: 30, failed: 0 });
    assert.equal(b.model, 'emb');
    const into = path.join(dir, 'parquet-out');
    await mkdir(into);
    await ok(['batch', 'download', b.id, '--output', into]);
    assert.deepEqual(await readdir(into), [`${b.id}-output.parquet`], 'named for its format; no error file');
    const out = pl.readParquet(await readFile(path.join(into, `${b.id}-output.parquet`)));
    assert.deepEqual(out.getColumn('id').toArray(), rows.map((_, i) => String(500 + i)));
    const vectors = out.getColumn('embeddings').toArray() as unknown as ArrayLike<number>[];
    const direct = await alice().post('/v1/embeddings', { model: 'emb', input: rows[5], dimensions: 16, embedding_type: 'int8' });
    assert.equal(direct.status, 200);
    assert.equal(vectors[5].length, 16);
    close(Array.from(vectors[5]), direct.body.data[0].embedding);
  });

  test('submit --wait of a batch that fails: exit 1 with its status and error, the id on stdout', async () => {
    const file = path.join(dir, 'no-model.arrows');
    await writeFile(file, Buffer.from(pl.DataFrame([pl.Series('text', ['a', 'b'], pl.Utf8)]).writeIPCStream()));
    const r = await ctl(['batch', 'submit', file, '--wait']);
    assert.equal(r.code, 1, r.stderr);
    const id = r.stdout.trim();
    assert.match(id, BATCH_ID);
    assert.match(r.stderr, new RegExp(`^${id}: failed, 0/0 rows done, 0 failed$`, 'm'));
    assert.match(r.stderr, new RegExp(`^teiplex ctl: batch submit .*no-model\\.arrows: ${id} failed: bad_request: an Arrow or Parquet input needs the batch's \`model\` .*\\(param model\\)$`, 'm'));
    assert.equal((await batch(id)).status, 'failed');
    assert.match(await fails(['batch', 'download', id], 1), new RegExp(`${id} is failed with no output file: bad_request: an Arrow or Parquet input needs`));
  });

  test('a create the manager refuses: exit 1 with its code, the uploaded file deleted again; bad flags: exit 2, nothing uploaded', async () => {
    const count = async () => (await alice().get('/v1/files?purpose=batch')).body.data.length as number;
    const before = await count();
    const file = path.join(dir, 'one.jsonl');
    await writeFile(file, `${line('a', { model: 'emb', input: 'x' })}\n`);
    const err = await fails(['batch', 'submit', file, '--input-type', 'nonsense'], 1);
    assert.match(err, /^teiplex ctl: batch submit .*one\.jsonl: VALIDATION: .*input_type/m);
    assert.equal(await count(), before, 'the upload was deleted');
    assert.match(await fails(['batch', 'submit', file, '--dimensions', 'x'], 2), /--dimensions must be an integer >= 1, got 'x'/);
    assert.match(await fails(['batch', 'submit', path.join(dir, 'missing.jsonl')], 2), /missing\.jsonl: no such file/);
    assert.equal(await count(), before, 'nothing uploaded');
    assert.match(await fails(['batch', 'status', 'batch_000000000000000000000000'], 1), /NOT_FOUND: no batch 'batch_000000000000000000000000'/);
  });

  test('a batch still running: download refused; submit --wait ended by Ctrl-C; cancel; the partial output downloaded, each row once', async () => {
    const N = 3000;
    const file = path.join(dir, 'long.jsonl');
    await writeFile(file, `${Array.from({ length: N }, (_, i) => line(`l-${i}`, { model: 'slow', input: `a long row ${i} ${'lorem ipsum '.repeat(8)}` })).join('\n')}\n`);
    const id = (await ok(['batch', 'submit', file])).stdout.trim();
    assert.match(id, BATCH_ID);
    await until('the long batch has started', async () => (await batch(id)).request_counts.completed > 0, { timeoutMs: 120_000, everyMs: 5 });
    // Its model stops serving: the batch waits (its chunks retried), neither done nor failed.
    assert.equal((await m.api('POST', '/instances/slow/stop')).status, 200);
    assert.equal((await batch(id)).status, 'in_progress');
    const refused = await fails(['batch', 'download', id, '--output', path.join(dir, 'early.jsonl')], 1);
    assert.match(refused, new RegExp(`${id} is in_progress \\(\\d+/${N} rows done\\): not finished`));
    assert.ok(!(await readdir(dir)).some((f) => f.startsWith('early') || f.startsWith('.early')), 'nothing written');

    // A second batch waits behind it (one job at a time): --wait follows it until Ctrl-C.
    const small = path.join(dir, 'small.jsonl');
    await writeFile(small, `${line('s', { model: 'emb', input: 'queued' })}\n`);
    const waiting = startCli(['ctl', 'batch', 'submit', small, '--wait'], { TEIPLEX_URL: url, TEIPLEX_API_KEY: KEYS.alice });
    await until('submit --wait printed its first progress line', () => /: validating, /.test(waiting.err), { timeoutMs: 60_000, everyMs: 20, context: () => waiting.err });
    const queued = waiting.out.trim();
    assert.match(queued, BATCH_ID);
    waiting.proc.kill('SIGINT');
    assert.equal(await waiting.exited, 1, waiting.err);
    assert.match(waiting.err, new RegExp(`^teiplex ctl: batch submit .*: interrupted while waiting for ${queued} \\(validating, 0/0 rows done\\); it runs on: \`teiplex ctl batch status ${queued}\``, 'm'));
    assert.equal((await batch(queued)).status, 'validating', 'Ctrl-C stopped the waiting, not the batch');

    assert.match((await ok(['batch', 'cancel', queued])).stdout, new RegExp(`^${queued}: cancelling \\(0/0 rows done\\)$`, 'm'));
    const c = await ok(['batch', 'cancel', id, '-o', 'json']);
    assert.ok(['cancelling', 'cancelled'].includes(JSON.parse(c.stdout).status), c.stdout);
    await until('both cancelled', async () => (await batch(id)).status === 'cancelled' && (await batch(queued)).status === 'cancelled', { timeoutMs: 120_000, everyMs: 100 });
    // The queued one never ran: no output, its row in the error file as not run.
    const q = await batch(queued);
    assert.equal(q.output_file_id, null);
    const qErrors = path.join(dir, 'queued-errors.jsonl');
    const qr = await ok(['batch', 'download', queued, '--errors', qErrors]);
    assert.equal(qr.stdout, `errors: ${qErrors} (${(await readFile(qErrors)).length} bytes, ${q.request_counts.failed} failed rows)\n`);
    assert.deepEqual(
      lines(await readFile(qErrors, 'utf8')).map((l) => [l.custom_id, l.error?.code]),
      [['s', 'batch_cancelled']],
    );

    const into = path.join(dir, 'partial');
    await mkdir(into);
    const r = await ok(['batch', 'download', id, '--output', into]);
    const b = await batch(id);
    assert.match(r.stderr, new RegExp(`the batch is cancelled: the output holds the ${b.request_counts.completed} rows done before it stopped`));
    const ran = lines(await readFile(path.join(into, `${id}-output.jsonl`), 'utf8'));
    const notRun = lines(await readFile(path.join(into, `${id}-errors.jsonl`), 'utf8'));
    assert.equal(ran.length, b.request_counts.completed);
    assert.ok(ran.length > 0 && ran.length < N, `${ran.length} rows ran`);
    assert.ok(notRun.every((l) => l.error?.code === 'batch_cancelled'));
    const ids = [...ran, ...notRun].map((l) => l.custom_id);
    assert.equal(ids.length, N);
    assert.equal(new Set(ids).size, N, 'each row once');
    assert.match((await ok(['batch', 'cancel', id])).stdout, new RegExp(`^${id}: cancelled `), 'cancelling a cancelled batch changes nothing');
    assert.match(await fails(['batch', 'cancel', done], 1), /BAD_REQUEST: batch '.*' is completed: only a batch that has not finished can be cancelled/);
  });

  test("another key sees none of it; no key is refused with the key's hint", async () => {
    const bob = { TEIPLEX_API_KEY: KEYS.bob };
    assert.match(await fails(['batch', 'status', done], 1, bob), new RegExp(`NOT_FOUND: no batch '${done}'`));
    assert.match(await fails(['batch', 'download', done], 1, bob), /NOT_FOUND/);
    assert.equal((await ok(['batch', 'status'], bob)).stdout, 'No batches.\n');
    assert.match(await fails(['batch', 'status'], 1, { TEIPLEX_API_KEY: '' }), /UNAUTHENTICATED: .*\(pass an API key with --api-key or TEIPLEX_API_KEY\)/);
    // The admin API's listener has no batch routes when the data plane has its own port.
    const admin = `http://127.0.0.1:${m.apiPort}`;
    assert.match(await fails(['batch', 'status', '--url', admin], 1), new RegExp(`NOT_FOUND: no route GET /v1/batches .*\\(the batch routes are on the data plane: with data_port set, --url names that port, not ${admin}\\)`));
  });

  test('completion: the batch verbs, their flags, --output by verb, and batch ids from the live manager', async () => {
    const script = path.join(dir, 'completion.bash');
    await writeFile(script, (await ok(['completion', 'bash'])).stdout);
    const bin = path.join(dir, 'bin');
    await mkdir(bin, { recursive: true });
    await writeFile(path.join(bin, 'teiplex'), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(projectPath('bin', 'teiplex.js'))} "$@"\n`);
    await chmod(path.join(bin, 'teiplex'), 0o755);
    const complete = (words: string[]): string[] => {
      const quoted = words.map((w) => `'${w.replace(/'/g, `'\\''`)}'`).join(' ');
      const r = spawnSync('bash', ['-c', `source ${JSON.stringify(script)}; COMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}; _teiplex; printf '%s\\n' "\${COMPREPLY[@]}"`], {
        encoding: 'utf8',
        env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, TEIPLEX_URL: url, TEIPLEX_API_KEY: KEYS.alice },
        timeout: 60_000,
      });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout.split('\n').filter((w) => w !== '');
    };
    assert.deepEqual(complete(['teiplex', 'ctl', 'batch', '']), ['submit', 'status', 'cancel', 'download']);
    assert.deepEqual(complete(['teiplex', 'ctl', 'batch', 'submit', 'f', '--output', '']), ['dense', 'sparse', 'multivector']);
    assert.deepEqual(complete(['teiplex', 'ctl', 'batch', 'submit', 'f', '-o', '']).sort(), ['json', 'name', 'table']);
    assert.deepEqual(complete(['teiplex', 'ctl', 'batch', 'download', done, '--e']), ['--errors']);
    assert.ok(complete(['teiplex', 'ctl', 'batch', 'status', 'batch_']).includes(done), 'ids from the manager');
  });
});
