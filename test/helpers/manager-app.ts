/**
 * The manager's HTTP application in this process, wired as `teiplex serve` wires it (supervisor,
 * catalog, admin routes, data plane, metrics, auth) over a temp state directory, with nothing
 * listening and no child process: for routes that need no child, called with fastify's inject().
 * The config is TOML, as a test manager's; nvidia-smi is pointed at a path that does not exist.
 * inject() resolves `.` and `..` segments (even %2E-encoded) as a URL parser does; a test that
 * must send a path as it is asks for `listen` and gets node:http over loopback instead.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { loadAuth } from '../../src/auth/auth.js';
import { wireManager } from '../../src/cli/manager-parts.js';
import { loadConfig } from '../../src/config/config.js';
import type { Supervisor } from '../../src/supervisor/supervisor.js';

export interface ManagerApp {
  app: FastifyInstance;
  supervisor: Supervisor;
  dir: string;
  stateFile: string;
  /**
   * A JSON body (objects serialized; strings sent as they are), the answer parsed when it is JSON;
   * through inject(), or over loopback when the app listens (then `res` is undefined).
   */
  api<T = any>(method: string, url: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: T; res?: LightMyRequestResponse }>;
  close(): Promise<void>;
}

/** Builds and boots the manager's app in-process; `toml` is appended to a loopback config in a temp dir. */
export async function managerApp(toml = '', opts: { listen?: boolean } = {}): Promise<ManagerApp> {
  const dir = await mkdtemp(path.join(tmpdir(), 'teiplex-app-'));
  const stateFile = path.join(dir, 'state.toml');
  const file = path.join(dir, 'config.toml');
  const head = [
    'api_port = 0',
    'grpc_port = 0',
    'listen_host = "127.0.0.1"',
    `state_file = ${JSON.stringify(stateFile)}`,
    `log_dir = ${JSON.stringify(path.join(dir, 'logs'))}`,
    `nvidia_smi_path = ${JSON.stringify(path.join(dir, 'no-nvidia-smi'))}`,
  ];
  await writeFile(file, `${head.join('\n')}\n${toml}\n`);
  const config = await loadConfig(file, {});
  const auth = await loadAuth(config.auth, file);
  const { supervisor, catalog, app, dataPlane } = await wireManager({ config, configPath: file, auth });
  await supervisor.boot();
  await app.ready();
  const running = catalog;
  let port: number | undefined;
  if (opts.listen) {
    await app.listen({ port: 0, host: '127.0.0.1' });
    port = (app.server.address() as { port: number }).port;
  }
  return {
    app,
    supervisor,
    dir,
    stateFile,
    async api(method, url, body, headers = {}) {
      if (port !== undefined) return overLoopback(port, method, url, body, headers);
      const opts: InjectOptions = { method: method as InjectOptions['method'], url, headers: { ...headers } };
      if (body !== undefined) {
        opts.payload = typeof body === 'string' ? body : JSON.stringify(body);
        opts.headers = { 'content-type': 'application/json', ...headers };
      }
      const res = await app.inject(opts);
      return { status: res.statusCode, body: parsed(res.body), res };
    },
    async close() {
      await app.close();
      await dataPlane.close();
      running.close();
      await supervisor.shutdown();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function parsed(text: string): any {
  try {
    return JSON.parse(text);
  } catch {
    return text; // not JSON: the text as it is
  }
}

/** node:http sends the path as given (no `..` resolution). */
function overLoopback(port: number, method: string, url: string, body: unknown, headers: Record<string, string>): Promise<{ status: number; body: any }> {
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method, path: url, headers: payload === undefined ? headers : { 'content-type': 'application/json', ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: parsed(Buffer.concat(chunks).toString('utf8')) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
