/**
 * The manager's process-level handlers, in a real process: an unhandled rejection and an I/O error
 * of the machine that escaped every handler are logged, counted and survived; any other uncaught
 * exception is logged and the process exits 70.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { projectPath } from '../../src/common/paths.js';

const SCRIPT = `
import pino from 'pino';
import { installProcessHandlers } from ${JSON.stringify(projectPath('src', 'cli', 'process-handlers.ts'))};
const counted = [];
installProcessHandlers(pino()).survived = (kind) => counted.push(kind);
// In order, each step scheduling the next before it throws: the rejection (handled once the
// script's microtasks are done), an I/O error, a report of what was survived, then a bug.
Promise.reject(new Error('nobody awaited this'));
setImmediate(() => {
  setImmediate(() => {
    console.log('alive after: ' + counted.join(','));
    setImmediate(() => { throw new TypeError('a bug'); });
  });
  const e = new Error('write ENOSPC');
  e.code = 'ENOSPC';
  throw e;
});
// Only a bound: the bug must have ended the process long before.
setTimeout(() => console.log('still running: wrong'), 60_000);
`;

test('rejections and machine I/O errors are survived (logged, counted); any other uncaught exception exits 70', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', SCRIPT], { cwd: projectPath(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  assert.equal(code, 70, out);
  assert.match(out, /unhandled promise rejection: logged, supervision goes on/);
  assert.match(out, /nobody awaited this/);
  assert.match(out, /I\/O error outside any handler.*|"code":"ENOSPC"/);
  assert.match(out, /alive after: unhandled_rejection,io_error/);
  assert.match(out, /uncaught exception: exiting 70/);
  assert.match(out, /a bug/);
  assert.doesNotMatch(out, /still running/);
});
