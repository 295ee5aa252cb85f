/**
 * Helpers for the HTTP data plane's tests: a manager config on loopback with given instances, a
 * small JSON client (status, headers, parsed body) and a child's own TEI HTTP port (from its
 * ready line in the instance log, when the instance runs with `--http-port 0`).
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ManagerProcess } from './manager-process.js';
import { loopbackConfig } from './manager-process.js';
import { metricValue } from './fake-child.js';

export interface Answer<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

/**
 * An HTTP error answer: its status, and its machine code (docs/errors.md) in the route's body shape:
 * the admin API's `{error, code: "CODE"}` or the OpenAI routes' `{error: {code: "code"}}`. Fails on
 * a body of neither shape (a TEI route's body names no code: `assertTeiError`).
 */
export function assertErrorCode(a: { status: number; body: any }, status: number, code: string, what = ''): void {
  const ctx = `${what}${what ? ': ' : ''}${typeof a.body === 'string' ? a.body : JSON.stringify(a.body)}`;
  assert.equal(a.status, status, ctx);
  const b = a.body;
  if (b !== null && typeof b === 'object' && typeof b.code === 'string') assert.equal(b.code, code, ctx);
  else if (b !== null && typeof b === 'object' && b.error !== null && typeof b.error === 'object') assert.equal(b.error.code, code.toLowerCase(), ctx);
  else assert.fail(`not an admin API or OpenAI error body: ${ctx}`);
}

/** An HTTP error answer on a TEI route: its status and TEI's `error_type` (docs/errors.md). */
export function assertTeiError(a: { status: number; body: any }, status: number, errorType: string, what = ''): void {
  const ctx = `${what}${what ? ': ' : ''}${JSON.stringify(a.body)}`;
  assert.equal(a.status, status, ctx);
  assert.equal(typeof a.body?.error, 'string', ctx);
  assert.equal(a.body.error_type, errorType, ctx);
}

/** A manager config on loopback, ephemeral ports, `extra` top-level keys, then `instances` TOML. */
export async function writeConfig(dir: string, extra: string, instances: string): Promise<string> {
  const file = path.join(dir, 'manager.toml');
  await writeFile(
    file,
    `${loopbackConfig(dir)}health_check_interval_secs = 5
startup_timeout_secs = 120
${extra}
${instances}`,
  );
  return file;
}

export function instanceToml(name: string, model: string, extra = ''): string {
  return `[[instances]]\nname = "${name}"\nmodel_id = ${JSON.stringify(model)}\n${extra}\n`;
}

/** A JSON client for one HTTP origin; `defaults` go on every request (e.g. an API key). */
export function client(port: number, defaults: Record<string, string> = {}) {
  const base = `http://127.0.0.1:${port}`;
  const parse = async (res: Response): Promise<Answer> => {
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, headers: res.headers, body };
  };
  return {
    base,
    /** POST a JSON value (a string is sent as it is). */
    async post<T = any>(route: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer<T>> {
      const res = await fetch(base + route, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...defaults, ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
      return parse(res);
    },
    async get<T = any>(route: string, headers: Record<string, string> = {}): Promise<Answer<T>> {
      return parse(await fetch(base + route, { headers: { ...defaults, ...headers } }));
    },
  };
}

/** The TEI HTTP port an instance's child announced in its ready line (`--http-port 0`). */
export async function childHttpPort(m: ManagerProcess, name: string): Promise<number> {
  const logs: string[] = (await m.api('GET', `/instances/${name}/logs`)).body.lines;
  for (const l of [...logs].reverse()) {
    const hit = /"http_port":(\d+)/.exec(l);
    if (hit && l.includes('"msg":"ready"')) return Number(hit[1]);
  }
  throw new Error(`instance ${name}: no http_port in its ready line`);
}

/** Inputs an instance's router child has run through its model: its own teiplex_batch_items_total, from its /metrics (`--http-port 0`). */
export async function childBatchItems(m: ManagerProcess, name: string): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${await childHttpPort(m, name)}/metrics`);
  return metricValue(await r.text(), 'teiplex_batch_items_total') ?? 0;
}

/** Element-wise closeness of nested number arrays (or objects holding them). */
export function close(a: unknown, b: unknown, tol = 1e-4, at = '$'): void {
  if (typeof a === 'number' && typeof b === 'number') {
    if (Math.abs(a - b) > tol * Math.max(1, Math.abs(b))) throw new Error(`${at}: ${a} vs ${b}`);
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) throw new Error(`${at}: length ${a.length} vs ${b.length}`);
    a.forEach((x, i) => close(x, b[i], tol, `${at}[${i}]`));
    return;
  }
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a).sort();
    const kb = Object.keys(b).sort();
    if (ka.join() !== kb.join()) throw new Error(`${at}: keys ${ka} vs ${kb}`);
    for (const k of ka) close((a as any)[k], (b as any)[k], tol, `${at}.${k}`);
    return;
  }
  if (a !== b) throw new Error(`${at}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
}
