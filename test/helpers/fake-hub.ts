/**
 * A HuggingFace Hub on loopback for tests: serves local model directories in the hub's URL layout,
 * enough for `@huggingface/hub` (and huggingface_hub / TEI's hf-hub) to download from it:
 *
 *   GET  /api/models/{id}/revision/{rev}   {_id, id, sha, siblings: [{rfilename}], ...}
 *   GET  /api/models/{id}                  the same for "main"
 *   HEAD|GET /{id}/resolve/{rev}/{path}    file bytes; Range requests (206 + content-range),
 *                                          ETag (git blob sha1; X-Linked-Etag sha256 for LFS-like
 *                                          files), X-Repo-Commit, Content-Length, Accept-Ranges
 *
 * A revision is a branch/tag name or the commit sha itself. Each (repo, revision) maps to a
 * directory; its sha is derived from the repo id, the revision name and the directory's contents.
 * With `token` set, every request must carry `Authorization: Bearer <token>` (else 401). Errors
 * carry X-Error-Code like the real hub (RepoNotFound, RevisionNotFound, EntryNotFound).
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export interface FakeHubRepo {
  /** "org/name". */
  id: string;
  /** Revision name -> directory served at that revision. */
  revisions: Record<string, string>;
}

export interface FakeHubOptions {
  repos: FakeHubRepo[];
  /** When set, requests without `Authorization: Bearer <token>` get 401. */
  token?: string;
}

export interface FakeHubRequest {
  method: string;
  url: string;
  authorization?: string;
}

export interface FakeHub {
  /** http://127.0.0.1:PORT (use as HF_ENDPOINT). */
  url: string;
  /** Every request seen, in order. */
  requests: FakeHubRequest[];
  /** The commit sha served for `revision` of `id`. */
  shaOf(id: string, revision: string): string;
  close(): Promise<void>;
}

interface ServedFile {
  bytes: Buffer;
  gitSha1: string;
  sha256: string;
  lfs: boolean;
}

interface ServedRevision {
  sha: string;
  files: Map<string, ServedFile>;
}

const LFS_SUFFIXES = ['.onnx', '.onnx_data', '.onnx.data', '.bin', '.safetensors', '.pt', '.h5'];

function walk(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(path.join(dir, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const child = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...walk(dir, child));
    else if (entry.isFile() || (entry.isSymbolicLink() && statSync(path.join(dir, child)).isFile())) out.push(child);
  }
  return out;
}

function loadRevision(id: string, revision: string, dir: string): ServedRevision {
  const files = new Map<string, ServedFile>();
  const commit = createHash('sha1').update(`${id}\0${revision}\0`);
  for (const rel of walk(dir)) {
    const bytes = readFileSync(path.join(dir, rel));
    const gitSha1 = createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    files.set(rel, { bytes, gitSha1, sha256, lfs: LFS_SUFFIXES.some((s) => rel.endsWith(s)) });
    commit.update(`${rel}\0${gitSha1}\0`);
  }
  return { sha: commit.digest('hex'), files };
}

export async function startFakeHub(opts: FakeHubOptions): Promise<FakeHub> {
  const repos = new Map<string, Map<string, ServedRevision>>();
  for (const repo of opts.repos) {
    const revs = new Map<string, ServedRevision>();
    for (const [name, dir] of Object.entries(repo.revisions)) {
      const served = loadRevision(repo.id, name, dir);
      revs.set(name, served);
      revs.set(served.sha, served);
    }
    repos.set(repo.id, revs);
  }
  const requests: FakeHubRequest[] = [];

  function fail(res: http.ServerResponse, status: number, code: string | undefined, message: string): void {
    const body = JSON.stringify({ error: message });
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      ...(code ? { 'x-error-code': code, 'x-error-message': message } : {}),
    });
    res.end(body);
  }

  /** Longest known repo id that `parts` starts with (ids contain a slash). */
  function findRepo(parts: string[]): { id: string; rest: string[] } | undefined {
    for (const n of [2, 1]) {
      const id = parts.slice(0, n).join('/');
      if (parts.length >= n && repos.has(id)) return { id, rest: parts.slice(n) };
    }
    return undefined;
  }

  function handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://hub.local');
    requests.push({ method: req.method ?? 'GET', url: url.pathname + url.search, authorization: req.headers.authorization });
    if (opts.token !== undefined && req.headers.authorization !== `Bearer ${opts.token}`) {
      return fail(res, 401, req.headers.authorization ? undefined : 'RepoNotFound', 'Invalid credentials in Authorization header');
    }
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);

    // /api/models/{id}[/revision/{rev}]
    if (parts[0] === 'api' && parts[1] === 'models') {
      if (req.method !== 'GET') return fail(res, 405, undefined, 'method not allowed');
      const found = findRepo(parts.slice(2));
      if (!found) return fail(res, 401, 'RepoNotFound', `Repository not found: ${parts.slice(2, 4).join('/')}`);
      let revision = 'main';
      if (found.rest.length === 2 && found.rest[0] === 'revision') revision = found.rest[1];
      else if (found.rest.length !== 0) return fail(res, 404, undefined, 'Not Found');
      const served = repos.get(found.id)!.get(revision);
      if (!served) return fail(res, 404, 'RevisionNotFound', `Invalid rev id: ${revision}`);
      const body = JSON.stringify({
        _id: createHash('sha1').update(found.id).digest('hex').slice(0, 24),
        id: found.id,
        modelId: found.id,
        sha: served.sha,
        private: opts.token !== undefined,
        gated: false,
        disabled: false,
        downloads: 0,
        likes: 0,
        pipeline_tag: 'feature-extraction',
        library_name: 'sentence-transformers',
        tags: [],
        lastModified: '2024-01-01T00:00:00.000Z',
        createdAt: '2024-01-01T00:00:00.000Z',
        siblings: [...served.files.keys()].map((rfilename) => ({ rfilename })),
      });
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      return void res.end(body);
    }

    // /{id}/resolve/{rev}/{path}
    const found = findRepo(parts);
    if (found?.rest[0] !== 'resolve' || found.rest.length < 3) {
      return fail(res, found ? 404 : 401, found ? undefined : 'RepoNotFound', found ? 'Not Found' : 'Repository not found');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return fail(res, 405, undefined, 'method not allowed');
    const served = repos.get(found.id)!.get(found.rest[1]);
    if (!served) return fail(res, 404, 'RevisionNotFound', `Invalid rev id: ${found.rest[1]}`);
    const rel = found.rest.slice(2).join('/');
    const file = served.files.get(rel);
    if (!file) return fail(res, 404, 'EntryNotFound', `${rel} does not exist on "${found.rest[1]}"`);

    const total = file.bytes.length;
    const headers: http.OutgoingHttpHeaders = {
      'content-type': 'application/octet-stream',
      'accept-ranges': 'bytes',
      'x-repo-commit': served.sha,
      etag: `"${file.gitSha1}"`,
    };
    if (file.lfs) {
      headers['x-linked-etag'] = `"${file.sha256}"`;
      headers['x-linked-size'] = String(total);
    }
    let start = 0;
    let end = total - 1;
    let status = 200;
    const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
    if (range && total === 0) {
      headers['content-range'] = 'bytes */0';
    } else if (range) {
      if (range[1] === '') {
        start = Math.max(0, total - Number(range[2]));
      } else {
        start = Number(range[1]);
        if (range[2] !== '') end = Math.min(end, Number(range[2]));
      }
      if (start > end || start >= total) {
        res.writeHead(416, { 'content-range': `bytes */${total}` });
        return void res.end();
      }
      status = 206;
      headers['content-range'] = `bytes ${start}-${end}/${total}`;
    }
    headers['content-length'] = total === 0 ? 0 : end - start + 1;
    res.writeHead(status, headers);
    if (req.method === 'HEAD' || total === 0) return void res.end();
    res.end(file.bytes.subarray(start, end + 1));
  }

  const server = http.createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    shaOf(id, revision) {
      const served = repos.get(id)?.get(revision);
      if (!served) throw new Error(`fake hub serves no ${id}@${revision}`);
      return served.sha;
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
