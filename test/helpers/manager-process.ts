/**
 * Runs the real `teiplex serve` (bin/teiplex.js -> dist/) with a TOML config on loopback, waits
 * for its ready line, and gives a small REST client for its admin API.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { createServer } from 'node:net';
import path from 'node:path';
import { projectPath } from '../../src/common/paths.js';
import { findReadyLine } from './router-process.js';
import { until } from './wait.js';

export interface ManagerProcess {
  apiPort: number;
  ready: Record<string, unknown>;
  proc: ChildProcess;
  api<T = any>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  /** Poll GET /instances/{name} until `pred` holds (default 60 s). */
  waitFor<T = any>(name: string, pred: (i: any) => boolean, timeoutMs?: number): Promise<T>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  output(): string;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

/**
 * The top of a test manager config: loopback, ephemeral API and gRPC ports, state and logs in
 * `dir`, a random instance port range (parallel test files do not collide).
 */
export function loopbackConfig(dir: string): string {
  return [
    'api_port = 0',
    'grpc_port = 0',
    'listen_host = "127.0.0.1"',
    `state_file = ${JSON.stringify(path.join(dir, 'state.toml'))}`,
    `log_dir = ${JSON.stringify(path.join(dir, 'logs'))}`,
    `instance_port_start = ${20000 + Math.floor(Math.random() * 20000)}`,
    'instance_port_end = 45000',
    '',
  ].join('\n');
}

/** A loopback port free now (for a manager whose port must be known before its ready line). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** Spawns the manager and waits for its ready line (default 60 s: a loaded machine starts node slowly); fails at once if it exits first. */
export function startManager(configFile: string, env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<ManagerProcess> {
  return startManagerWith(['--config', configFile], env, timeoutMs);
}

/** `teiplex serve ARGS...` (e.g. `--quickstart`), as startManager. */
export async function startManagerWith(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<ManagerProcess> {
  const proc = spawn(process.execPath, [projectPath('bin', 'teiplex.js'), 'serve', ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(proc);
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => (live.delete(proc), r(code))));
  const ready = await until('the manager ready line (or its exit)', () => findReadyLine(out) ?? (proc.exitCode !== null && ('exited' as const)), { timeoutMs }).catch(() => 'timed out' as const);
  if (ready === 'exited' || ready === 'timed out') {
    proc.kill('SIGKILL');
    throw new Error(`manager did not get ready (${ready === 'exited' ? `exit code ${proc.exitCode}` : `no ready line within ${timeoutMs} ms`}):\n${out}`);
  }
  const apiPort = Number(ready.api_port);
  // node:http sends the path as written (fetch would resolve '..' segments first).
  const api = (method: string, path: string, body?: unknown) =>
    new Promise<{ status: number; body: any }>((resolve, reject) => {
      const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
      const req = request({ host: '127.0.0.1', port: apiPort, method, path, headers: payload === undefined ? {} : { 'content-type': 'application/json' } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            /* not JSON */
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      });
      req.on('error', reject);
      req.end(payload);
    });
  return {
    apiPort,
    ready,
    proc,
    api,
    async waitFor(name, pred, ms = 60_000) {
      let last: unknown;
      return until(
        `instance ${name}: condition`,
        async () => {
          const r = await api('GET', `/instances/${name}`);
          last = r.body;
          return r.status === 200 && pred(r.body) && r.body;
        },
        { timeoutMs: ms, everyMs: 100, context: () => `last ${JSON.stringify(last)}\n--- manager output ---\n${out.slice(-4000)}` },
      );
    },
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null) return proc.exitCode;
      proc.kill(signal);
      return exited;
    },
    output: () => out,
  };
}
