/**
 * Small real children for `runtime = "command"` instances: a node script (written into a test's
 * temp dir, started through a shell wrapper that takes TEI's flags) that serves gRPC on `--port`
 * the way the options say: with or without grpc.health.v1 and tei.v1.Info, never listening,
 * trapping SIGTERM, forking a grandchild, going NOT_SERVING while a file exists, exiting with a
 * given code. What it did is appended to an events file (one JSON line per event) the test reads.
 * It is a real process; only the model is missing (it computes nothing).
 */
import { readFileSync } from 'node:fs';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { projectPath } from '../../src/common/paths.js';

export interface FakeChildOptions {
  /** Serve grpc.health.v1 (default true). */
  health?: boolean;
  /** Serve tei.v1.Info (default true). */
  info?: boolean;
  /** Bind the port at all (default true); false: never ready. */
  listen?: boolean;
  /** Ignore SIGTERM (only SIGKILL ends it). */
  ignoreTerm?: boolean;
  /** Fork a grandchild (`sleep`, same process group) and record its pid. */
  grandchild?: boolean;
  /** Exit with this code this long after listening. */
  exitAfterMs?: number;
  exitCode?: number;
  /** While this file exists, health answers NOT_SERVING. */
  notServingWhile?: string;
  /**
   * The first run (this marker file absent: it is created) hands its port to another process
   * (detached: not of the child's group; it holds the port for 120 s, event `holder`) and exits 1
   * before binding it: the port is taken by someone else. Later runs behave normally.
   */
  losePortOnce?: string;
}

export interface FakeChild {
  /** The executable to name as `command`. */
  command: string;
  /** Events recorded so far: {event: 'start'|'listening'|'term'|'exit', pid, port, grandchild?}. */
  events(): Promise<Array<Record<string, any>>>;
}

const SCRIPT = String.raw`
import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
const [optsJson, eventsFile, distProto, grpcPath, healthPath, ...argv] = process.argv.slice(2);
const opts = JSON.parse(optsJson);
const record = (event, extra = {}) => appendFileSync(eventsFile, JSON.stringify({ event, pid: process.pid, ...extra }) + '\n');
const port = Number(argv[argv.indexOf('--port') + 1]);
let grandchild;
if (opts.grandchild) grandchild = spawn('sleep', ['600'], { stdio: 'ignore' }).pid;
record('start', { port, pgid: process.pid, grandchild });
if (opts.losePortOnce && !existsSync(opts.losePortOnce)) {
  writeFileSync(opts.losePortOnce, '');
  const holder = spawn(process.execPath, ['-e', "const s = require('node:net').createServer().listen(" + port + ", '127.0.0.1', () => console.log('held')); setTimeout(() => process.exit(0), 120000);"], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise((resolve) => holder.stdout.once('data', resolve));
  holder.unref();
  holder.stdout.destroy();
  record('holder', { holder: holder.pid, port });
  console.error('port ' + port + ' was taken by someone else');
  process.exit(1);
}
if (opts.ignoreTerm) process.on('SIGTERM', () => record('term'));
else process.on('SIGTERM', () => { record('term'); process.exit(0); });
if (opts.listen !== false) {
  const grpc = await import(grpcPath);
  const { HealthImplementation } = await import(healthPath);
  const { serviceDefinition } = await import(distProto);
  const server = new grpc.Server();
  if (opts.health !== false) {
    const status = () => (opts.notServingWhile && existsSync(opts.notServingWhile) ? 'NOT_SERVING' : 'SERVING');
    let last = status();
    const health = new HealthImplementation({ '': last });
    health.addToServer(server);
    if (opts.notServingWhile) {
      setInterval(() => {
        const now = status();
        if (now !== last) { last = now; health.setStatus('', now); record('health', { status: now }); }
      }, 50);
    }
  }
  if (opts.info !== false) {
    server.addService(serviceDefinition('tei.v1.Info'), {
      Info: (_call, cb) => { record('info'); cb(null, { model_id: 'fake', model_type: 'MODEL_TYPE_EMBEDDING', max_concurrent_requests: 4, max_input_length: 8, max_batch_tokens: 64, max_client_batch_size: 4, tokenization_workers: 1, version: 'fake' }); },
    });
  }
  await new Promise((resolve, reject) => server.bindAsync('127.0.0.1:' + port, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  record('listening', { port });
  console.log(JSON.stringify({ msg: 'fake child listening', port }));
}
if (opts.exitAfterMs !== undefined) setTimeout(() => { record('exit', { code: opts.exitCode ?? 0 }); process.exit(opts.exitCode ?? 0); }, opts.exitAfterMs);
setInterval(() => undefined, 1 << 30);
`;

/** Writes `<dir>/<name>.mjs` and its wrapper `<dir>/<name>` (the command); events go to `<dir>/<name>.events`. */
export async function writeFakeChild(dir: string, name: string, opts: FakeChildOptions = {}): Promise<FakeChild> {
  const script = path.join(dir, `${name}.mjs`);
  const wrapper = path.join(dir, name);
  const eventsFile = path.join(dir, `${name}.events`);
  await writeFile(script, SCRIPT);
  await writeFile(eventsFile, '');
  const args = [
    JSON.stringify(opts),
    eventsFile,
    projectPath('dist', 'tei', 'proto.js'),
    projectPath('node_modules', '@grpc', 'grpc-js', 'build', 'src', 'index.js'),
    projectPath('node_modules', 'grpc-health-check', 'build', 'src', 'health.js'),
  ];
  const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  await writeFile(wrapper, `#!/bin/sh\nexec ${quote(process.execPath)} ${quote(script)} ${args.map(quote).join(' ')} "$@"\n`);
  await chmod(wrapper, 0o755);
  return {
    command: wrapper,
    async events() {
      const text = await readFile(eventsFile, 'utf8');
      return text
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l));
    },
  };
}

/** Is a process with this pid alive? A zombie (exited, not yet reaped) is not. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** The value of a metric line `name{labels} value` in Prometheus text, or undefined. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}
