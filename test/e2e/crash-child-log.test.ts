/**
 * A child's log under hostile output and a failing disk: an endless line is truncated at the cap
 * (linear work, a marker says how much was dropped), output faster than the disk is dropped and
 * counted beyond the buffer, a failed write is counted and never thrown (and writing resumes once
 * the disk is back), files are private (0600 in a 0700 directory), a fresh instance of a reused
 * name starts a fresh log, and a UTF-8 character split across chunks survives. End to end: a real
 * manager whose log directory goes away under a chatty child keeps supervising, and says so.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ChildLog, type ChildLogOptions } from '../../src/supervisor/child-log.js';
import { loopbackConfig, startManager } from '../helpers/manager-process.js';
import { until } from '../helpers/wait.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-crash-log-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const opts = (sub: string, o: Partial<ChildLogOptions> = {}): ChildLogOptions => ({
  dir: path.join(dir, sub),
  name: 'inst',
  maxBytes: 1 << 20,
  maxFiles: 2,
  tailLines: 100,
  maxLineBytes: 16 * 1024,
  bufferBytes: 1 << 20,
  ...o,
});

test('a line without a newline is capped at maxLineBytes, marked, and the next line is intact', async () => {
  const log = new ChildLog(opts('long'));
  const chunk = Buffer.alloc(64 * 1024, 'a');
  for (let i = 0; i < 64; i++) log.write(chunk); // 4 MiB, no newline
  log.write('\nnext line\n');
  await log.close();
  const lines = (await readFile(log.file, 'utf8')).split('\n');
  assert.equal(lines.length, 3, 'two lines and the final newline');
  assert.ok(lines[0].startsWith('a'.repeat(16 * 1024) + ' [teiplex: line truncated'), lines[0].slice(16 * 1024, 16 * 1024 + 80));
  assert.match(lines[0], new RegExp(`${4 * 1024 * 1024 - 16 * 1024} more bytes dropped`));
  assert.equal(lines[1], 'next line');
  assert.ok(log.range().lines[0].length < 16 * 1024 + 100, 'the in-memory tail holds the capped line too');
});

test('output faster than the disk: beyond bufferBytes lines are dropped, counted and marked; nothing throws', async () => {
  const log = new ChildLog(opts('fast', { bufferBytes: 4096 }));
  // One tick of output: nothing can reach the disk before it ends.
  for (let i = 0; i < 2000; i++) log.write(`line ${i} ${'x'.repeat(40)}\n`);
  assert.ok(log.droppedLines > 1500, `${log.droppedLines} dropped`);
  assert.equal(log.totalLines, 2000, 'the in-memory tail still sees every line');
  await log.close();
  const text = await readFile(log.file, 'utf8');
  assert.ok(text.length <= 4096 + 200, `${text.length} bytes written`);
  assert.match(text, new RegExp(`${log.droppedLines} lines dropped: the log writer fell behind`));
});

test('a failing disk (the log directory is a file): counted and reported, never thrown; writing resumes when it is back', async () => {
  const blocked = path.join(dir, 'blocked');
  await writeFile(blocked, 'not a directory');
  const errors: string[] = [];
  const log = new ChildLog(opts('blocked', { dir: blocked, onError: (e) => errors.push(e.message) }));
  for (let i = 0; i < 50; i++) {
    log.write(`line ${i}\n`);
    await new Promise((r) => setImmediate(r));
  }
  log.note('manager line');
  await log.close();
  assert.ok(log.writeErrors >= 1, 'counted');
  assert.equal(errors.length, 1, 'reported once, not once per line');
  assert.match(errors[0], /EEXIST|ENOTDIR/);
  assert.ok(log.droppedLines >= 1);
  assert.equal(log.totalLines, 51, 'the tail is kept regardless');
  await rm(blocked);
  log.write('after recovery\n');
  await log.close();
  assert.equal(await readFile(log.file, 'utf8'), 'after recovery\n');
});

test('files are 0600 in a 0700 directory; a fresh log replaces an old one of the same name; remove deletes it', async () => {
  const o = opts('private/deeper', { maxBytes: 1024 });
  const old = new ChildLog(o);
  for (let i = 0; i < 100; i++) old.write(`old ${i} ${'o'.repeat(20)}\n`);
  await old.close();
  assert.equal((await stat(old.file)).mode & 0o777, 0o600);
  assert.equal((await stat(`${old.file}.1`)).mode & 0o777, 0o600, 'rotated files too');
  assert.equal((await stat(o.dir)).mode & 0o777, 0o700);
  assert.equal((await stat(path.dirname(o.dir))).mode & 0o777, 0o700);
  const restored = new ChildLog(o);
  restored.write('restored\n');
  await restored.close();
  assert.match(await readFile(restored.file, 'utf8'), /restored\n$/, 'a restored instance appends');
  assert.match(await readFile(restored.file, 'utf8'), /old/);
  const fresh = new ChildLog({ ...o, fresh: true });
  fresh.write('new instance\n');
  await fresh.close();
  assert.equal(await readFile(fresh.file, 'utf8'), 'new instance\n');
  await assert.rejects(stat(`${fresh.file}.1`), /ENOENT/, 'rotated files of the old instance are gone too');
  await fresh.remove();
  await assert.rejects(stat(fresh.file), /ENOENT/);
});

test('a UTF-8 character split across chunks is kept whole', async () => {
  const log = new ChildLog(opts('utf8'));
  const bytes = Buffer.from('naïve ✓\n');
  for (const b of bytes) log.write(Buffer.from([b]));
  await log.close();
  assert.equal(await readFile(log.file, 'utf8'), 'naïve ✓\n');
});

test('a manager whose log directory fails under a chatty child: the manager and the child run on; the error is counted and shown', async () => {
  const base = path.join(dir, 'e2e');
  await mkdir(base);
  const chatty = path.join(dir, 'chatty');
  await writeFile(chatty, '#!/bin/sh\nwhile true; do echo "output line of some length to fill the log"; sleep 0.01; done\n');
  await chmod(chatty, 0o755);
  const file = path.join(dir, 'e2e.toml');
  await writeFile(file, `${loopbackConfig(base)}tei_binary_path = ${JSON.stringify(chatty)}\nlog_max_bytes = 2048\nstartup_timeout_secs = 600\ngraceful_shutdown_timeout_secs = 2\n`);
  const m = await startManager(file);
  try {
    assert.equal((await m.api('POST', '/instances', { name: 'chatty', model_id: 'org/x', runtime: 'tei' })).status, 201);
    const { pid } = await m.waitFor('chatty', (i) => i.pid !== null, 10_000);
    const logDir = path.join(base, 'logs');
    const logged = async () => /output line/.test(await readFile(path.join(logDir, 'chatty.log'), 'utf8'));
    await until('the child writing to its log', logged);
    await rename(logDir, `${logDir}.gone`);
    await writeFile(logDir, 'the disk is gone');
    const failing = await m.waitFor('chatty', (i) => /writing the log .* failed/.test(i.last_error ?? ''), 10_000);
    assert.equal(failing.pid, pid, 'the same child runs on');
    assert.equal(m.proc.exitCode, null, 'the manager is alive');
    const metrics = (await m.api('GET', '/metrics')).body as string;
    assert.match(metrics, /teiplex_child_log_write_errors_total\{instance="chatty"\} [1-9]/);
    assert.match(m.output(), /writing a child log failed; the child runs on/);
    await rm(logDir); // the disk is back: the manager makes the directory again and writes on
    await until('writing resumed once the disk is back', logged, { timeoutMs: 10_000 });
    assert.equal((await m.api('GET', '/instances/chatty')).body.pid, pid);
  } finally {
    assert.equal(await m.stop(), 0);
  }
});

