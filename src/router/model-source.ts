/**
 * Where a model's files come from: a local directory as is, or a HuggingFace Hub repository
 * downloaded into the hub cache layout that `huggingface_hub` and TEI share:
 *
 *   <cache>/models--org--name/blobs/<etag>                      file contents, named by etag
 *   <cache>/models--org--name/snapshots/<commit sha>/<path>     relative symlinks into blobs/
 *   <cache>/models--org--name/refs/<revision>                   the commit sha a branch/tag named
 *   <cache>/models--org--name/.no_exist/<commit sha>/<path>     optional files the repo lacks
 *
 * Only the files TEI reads are fetched (config, tokenizer, sentence-transformers side files, one
 * ONNX graph and its external data), never the whole repository. A snapshot that is already
 * complete is used without any network request, so a restart works offline.
 *
 * HTTP goes through `@huggingface/hub` (`modelInfo` for the commit sha and file list,
 * `fileDownloadInfo` + `downloadFile` per file, which also handle Xet-backed files); the cache
 * layout is written here rather than by its `downloadFileToCacheDir`, which prints a
 * `console.debug` line per file on stdout (where the router's ready line and JSON logs go), needs
 * an extra `paths-info` request per file, never writes `refs/<revision>`, and shares one
 * `.incomplete` name between concurrent downloaders.
 *
 * Paths stay inside the repository's cache folder (model-paths.ts): `--revision` and `--onnx-file`
 * must be relative names without `..`, a `refs/<revision>` file must hold a commit sha, module
 * folders named by `modules.json` must be inside the snapshot, and a cached file whose real
 * location (symlinks followed) is outside the repository's folder is refused, not read.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { copyFile, lstat, mkdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { downloadFile, fileDownloadInfo, HubApiError, modelInfo } from '@huggingface/hub';
import { snapshotSha } from './model-files.js';
import { existsInside, joinInside } from './model-paths.js';

export interface ResolveModelOptions {
  /** A local directory, or a hub repository id ("org/name", or a bare legacy "name"). */
  modelId: string;
  /** Branch, tag or commit sha; default "main". Ignored for a local directory. */
  revision?: string;
  /** The hub cache directory (`--huggingface-hub-cache`); wins over every environment variable. */
  cacheDir?: string;
  /** The ONNX graph to fetch (`--onnx-file`), relative to the repository root. */
  onnxFile?: string;
  /** Progress messages (one line each). */
  log?: (message: string) => void;
  /** Environment to read HF_* variables from; default process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface ResolvedModel {
  /** Absolute directory holding the model files. */
  dir: string;
  /** The commit sha when the directory is a hub snapshot. */
  sha?: string;
}

/**
 * A model that cannot be found or fetched. The message names the model id, the revision, the hub
 * endpoint and, for HTTP failures, the status.
 */
export class ModelSourceError extends Error {
  readonly modelId: string;
  readonly revision?: string;
  /** HTTP status of the failed hub request, when there was one. */
  readonly status?: number;
  constructor(message: string, details: { modelId: string; revision?: string; status?: number; cause?: unknown }) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'ModelSourceError';
    this.modelId = details.modelId;
    this.revision = details.revision;
    this.status = details.status;
  }
}

export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';
export const DEFAULT_REVISION = 'main';

/** Required files besides the ONNX graph. */
const REQUIRED_FILES = ['config.json', 'tokenizer.json'];
/** Files TEI reads when the repository has them. */
const OPTIONAL_FILES = [
  'tokenizer_config.json',
  'special_tokens_map.json',
  'vocab.txt',
  'vocab.json',
  'merges.txt',
  'modules.json',
  'sentence_bert_config.json',
  'config_sentence_transformers.json',
  '1_Pooling/config.json',
];
/** Where the graph is looked for when `onnxFile` is not given, in order (as model-files.ts does). */
const ONNX_CANDIDATES = ['onnx/model.onnx', 'model.onnx'];

/**
 * The hub cache directory: `cacheDir`, else HUGGINGFACE_HUB_CACHE (TEI's variable), else
 * HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
 * ~/.cache/huggingface/hub.
 */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env, cacheDir?: string): string {
  const explicit = cacheDir || env.HUGGINGFACE_HUB_CACHE || env.HF_HUB_CACHE;
  if (explicit) return path.resolve(explicit);
  if (env.HF_HOME) return path.resolve(env.HF_HOME, 'hub');
  const xdg = env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.resolve(xdg, 'huggingface', 'hub');
}

/** HF_ENDPOINT without a trailing slash, default https://huggingface.co. */
export function hubEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  return (env.HF_ENDPOINT || DEFAULT_HUB_ENDPOINT).replace(/\/+$/, '');
}

/** HF_TOKEN, else the older HF_API_TOKEN / HUGGING_FACE_HUB_TOKEN names. */
export function hubToken(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.HF_TOKEN || env.HF_API_TOKEN || env.HUGGING_FACE_HUB_TOKEN || undefined;
}

/** `models--org--name`, the repository's folder in the cache. */
export function repoFolderName(modelId: string): string {
  return ['models', ...modelId.split('/')].join('--');
}

const REPO_ID = /^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/;
const COMMIT_SHA = /^[0-9a-f]{40}$/;

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file); // follows symlinks: a dangling one does not count
    return true;
  } catch {
    return false;
  }
}

function looksLikePath(id: string): boolean {
  return id.startsWith('.') || id.startsWith('/') || id.startsWith('~') || id.includes('\\') || path.isAbsolute(id);
}

/**
 * A local directory as is; otherwise a hub repository id, resolved to a complete snapshot in the
 * cache (downloaded when missing).
 */
export async function resolveModelDir(o: ResolveModelOptions): Promise<ResolvedModel> {
  const env = o.env ?? process.env;
  const log = o.log ?? (() => {});
  const local = o.modelId.startsWith('~') ? path.join(os.homedir(), o.modelId.slice(1)) : o.modelId;
  if (await exists(local)) {
    const dir = path.resolve(local);
    return { dir, sha: snapshotSha(dir) };
  }
  const revision = o.revision || DEFAULT_REVISION;
  if (looksLikePath(o.modelId) || !REPO_ID.test(o.modelId)) {
    throw new ModelSourceError(
      `model ${o.modelId} is neither an existing local directory nor a hub repository id ("org/name")`,
      { modelId: o.modelId },
    );
  }
  const cacheDir = hubCacheDir(env, o.cacheDir);
  const refuse = (message: string) => new ModelSourceError(message, { modelId: o.modelId, revision });
  // Both name files in the repository's cache folder: checked by name before anything is read or fetched.
  joinInside(path.join(cacheDir, repoFolderName(o.modelId), 'refs'), revision, '--revision', refuse);
  if (o.onnxFile) joinInside(o.modelId, o.onnxFile, '--onnx-file', refuse);
  return new HubSnapshot(o.modelId, revision, cacheDir, hubEndpoint(env), hubToken(env), o.onnxFile || undefined, log, env).resolve();
}

/** One repository at one revision in the cache. */
class HubSnapshot {
  private readonly storage: string;
  private readonly fetch: typeof fetch;

  constructor(
    private readonly modelId: string,
    private readonly revision: string,
    cacheDir: string,
    private readonly endpoint: string,
    token: string | undefined,
    private readonly onnxFile: string | undefined,
    private readonly log: (message: string) => void,
    private readonly env: NodeJS.ProcessEnv,
  ) {
    this.storage = path.join(cacheDir, repoFolderName(modelId));
    this.fetch = authorizedFetch(endpoint, token);
  }

  private get where(): string {
    return `model ${this.modelId} at revision ${this.revision}`;
  }

  private snapshotDir(sha: string): string {
    return path.join(this.storage, 'snapshots', sha);
  }

  private refuse = (message: string): ModelSourceError =>
    new ModelSourceError(message, { modelId: this.modelId, revision: this.revision });

  /** `rel` ('/'-separated, from the hub or modules.json) under `dir`, refused when it leaves it. */
  private join(dir: string, rel: string, what: string): string {
    return joinInside(dir, rel, what, this.refuse);
  }

  /** Whether `file` exists with its real location inside the repository's cache folder (throws when outside). */
  private has(file: string): Promise<boolean> {
    return existsInside(this.storage, file, path.relative(this.storage, file), this.refuse);
  }

  async resolve(): Promise<ResolvedModel> {
    const cached = await this.cachedSnapshot();
    if (cached) {
      this.log(`using cached snapshot ${cached.dir} for ${this.where}`);
      return cached;
    }
    if (isTrue(this.env.HF_HUB_OFFLINE) || isTrue(this.env.TRANSFORMERS_OFFLINE)) {
      throw new ModelSourceError(
        `${this.where} is not in the hub cache ${path.dirname(this.storage)} (or is incomplete) and HF_HUB_OFFLINE is set`,
        { modelId: this.modelId, revision: this.revision },
      );
    }
    return this.download();
  }

  /** The snapshot when it is complete on disk: the commit is known, and every file TEI needs is there. */
  private async cachedSnapshot(): Promise<ResolvedModel | undefined> {
    let sha: string;
    if (COMMIT_SHA.test(this.revision)) sha = this.revision;
    else {
      const ref = this.join(path.join(this.storage, 'refs'), this.revision, '--revision');
      if (!(await this.has(ref))) return undefined;
      try {
        sha = (await readFile(ref, 'utf8')).trim();
      } catch {
        return undefined;
      }
      if (sha === '') return undefined; // written by a process that died before its data reached the disk
      if (!COMMIT_SHA.test(sha)) {
        throw this.refuse(
          `${ref} does not hold a commit sha (it reads ${JSON.stringify(sha.slice(0, 80))}); remove it to fetch ${this.where} again`,
        );
      }
    }
    const dir = this.snapshotDir(sha);
    for (const file of REQUIRED_FILES) if (!(await this.has(this.join(dir, file, file)))) return undefined;
    // The graph is fetched last, so its presence means the files before it are complete.
    const graphs = this.onnxFile ? [this.onnxFile] : ONNX_CANDIDATES;
    let graph = false;
    for (const file of graphs) if (await this.has(this.join(dir, file, file))) graph = true;
    if (!graph) return undefined;
    return { dir, sha };
  }

  private async download(): Promise<ResolvedModel> {
    const { sha, files } = await this.repoInfo();
    const dir = this.snapshotDir(sha);
    const available = new Set(files);
    const missing = (file: string) =>
      new ModelSourceError(`${this.where} (commit ${sha}) has no ${file} on ${this.endpoint}; TEI needs it`, {
        modelId: this.modelId,
        revision: this.revision,
        status: 404,
      });

    for (const file of REQUIRED_FILES) if (!available.has(file)) throw missing(file);
    const graph = this.onnxFile ?? ONNX_CANDIDATES.find((f) => available.has(f));
    if (graph === undefined) {
      throw new ModelSourceError(
        `${this.where} (commit ${sha}) on ${this.endpoint} has no ONNX model: looked for ${ONNX_CANDIDATES.join(' and ')} (choose another with --onnx-file)`,
        { modelId: this.modelId, revision: this.revision, status: 404 },
      );
    }
    if (!available.has(graph)) throw missing(graph);
    const graphDir = path.posix.dirname(graph);
    const graphBase = path.posix.basename(graph);
    // External data sits beside the graph and is named after it: model.onnx_data, model.onnx.data, model.onnx_data_1 ...
    const externalData = files.filter(
      (f) => f !== graph && path.posix.dirname(f) === graphDir && path.posix.basename(f).startsWith(graphBase),
    );

    this.log(`downloading ${this.where} (commit ${sha}) from ${this.endpoint} into ${dir}`);
    const optional = OPTIONAL_FILES.filter((f) => available.has(f));
    for (const file of [...REQUIRED_FILES, ...optional]) await this.fetchFile(sha, file);
    // A Pooling module in another folder than 1_Pooling (modules.json names it).
    const poolingConfig = await this.poolingConfigPath(dir);
    if (poolingConfig && poolingConfig !== '1_Pooling/config.json' && available.has(poolingConfig)) {
      await this.fetchFile(sha, poolingConfig);
    }
    for (const file of OPTIONAL_FILES.filter((f) => !available.has(f))) await this.markAbsent(sha, file);
    for (const file of externalData) await this.fetchFile(sha, file);
    await this.fetchFile(sha, graph); // last: marks the snapshot complete

    if (this.revision !== sha) {
      const ref = this.join(path.join(this.storage, 'refs'), this.revision, '--revision');
      await mkdir(path.dirname(ref), { recursive: true });
      const partial = `${ref}.${process.pid}.${randomBytes(4).toString('hex')}.incomplete`;
      await writeFile(partial, sha);
      await rename(partial, ref);
    }
    return { dir, sha };
  }

  /** The commit sha the revision names and the repository's file list. */
  private async repoInfo(): Promise<{ sha: string; files: string[] }> {
    let info: { sha?: string; filePaths?: string[] };
    try {
      info = await modelInfo({
        name: this.modelId,
        revision: this.revision,
        hubUrl: this.endpoint,
        fetch: this.fetch,
        additionalFields: ['sha', 'filePaths'],
      });
    } catch (err) {
      throw this.httpError(err, 'cannot look up');
    }
    if (typeof info.sha !== 'string' || !COMMIT_SHA.test(info.sha) || !Array.isArray(info.filePaths)) {
      throw new ModelSourceError(`${this.endpoint} answered for ${this.where} without a commit sha or file list`, {
        modelId: this.modelId,
        revision: this.revision,
      });
    }
    return { sha: info.sha, files: info.filePaths };
  }

  /** The Pooling module's config file named by the snapshot's modules.json; refused when its folder is outside the snapshot. */
  private async poolingConfigPath(dir: string): Promise<string | undefined> {
    let modules: unknown;
    try {
      modules = JSON.parse(await readFile(path.join(dir, 'modules.json'), 'utf8'));
    } catch {
      return undefined;
    }
    const pooling = Array.isArray(modules)
      ? (modules as Array<{ path?: unknown; type?: unknown } | null>).find((m) => typeof m?.type === 'string' && m.type.endsWith('.Pooling'))
      : undefined;
    if (typeof pooling?.path !== 'string' || pooling.path === '') return undefined;
    const file = `${pooling.path}/config.json`;
    this.join(dir, file, `modules.json's Pooling module path`);
    return path.posix.normalize(file);
  }

  /** One file into blobs/ (unless there already) and its symlink into the snapshot. */
  private async fetchFile(sha: string, file: string): Promise<void> {
    const pointer = this.join(this.snapshotDir(sha), file, 'a hub file name');
    if (await exists(pointer)) return;
    const repo = { type: 'model' as const, name: this.modelId };
    let blobPath: string;
    try {
      const info = await fileDownloadInfo({ repo, path: file, revision: sha, hubUrl: this.endpoint, fetch: this.fetch });
      if (!info) {
        throw new ModelSourceError(`${this.where} (commit ${sha}): ${file} not found on ${this.endpoint} (HTTP 404)`, {
          modelId: this.modelId,
          revision: this.revision,
          status: 404,
        });
      }
      blobPath = path.join(this.storage, 'blobs', normalizeEtag(info.etag));
      if (!(await exists(blobPath))) {
        this.log(`fetching ${file} (${info.size} bytes)`);
        const blob = await downloadFile({ repo, path: file, revision: sha, hubUrl: this.endpoint, fetch: this.fetch, downloadInfo: info });
        if (!blob) throw new ModelSourceError(`${this.where}: ${file} vanished from ${this.endpoint} (HTTP 404)`, { modelId: this.modelId, revision: this.revision, status: 404 });
        await mkdir(path.dirname(blobPath), { recursive: true });
        const partial = `${blobPath}.${process.pid}.${randomBytes(4).toString('hex')}.incomplete`;
        try {
          await pipeline(Readable.fromWeb(blob.stream() as WebReadableStream), createWriteStream(partial));
          const written = (await stat(partial)).size;
          if (written !== info.size) {
            throw new ModelSourceError(`${this.where}: ${file} from ${this.endpoint} is truncated (${written} of ${info.size} bytes)`, {
              modelId: this.modelId,
              revision: this.revision,
            });
          }
          await rename(partial, blobPath);
        } finally {
          await rm(partial, { force: true });
        }
      }
    } catch (err) {
      if (err instanceof ModelSourceError) throw err;
      throw this.httpError(err, `cannot download ${file} of`);
    }
    await mkdir(path.dirname(pointer), { recursive: true });
    await rm(pointer, { force: true }); // a dangling symlink left by an earlier run
    try {
      await symlink(path.relative(path.dirname(pointer), blobPath), pointer);
    } catch {
      await copyFile(blobPath, pointer); // file systems without symlinks
    }
  }

  /** huggingface_hub's marker for a file the repository does not have at this commit. */
  private async markAbsent(sha: string, file: string): Promise<void> {
    const marker = path.join(this.storage, '.no_exist', sha, ...file.split('/'));
    try {
      await lstat(marker);
    } catch {
      await mkdir(path.dirname(marker), { recursive: true });
      await writeFile(marker, '');
    }
  }

  private httpError(err: unknown, what: string): ModelSourceError {
    const details = { modelId: this.modelId, revision: this.revision, cause: err };
    if (err instanceof HubApiError) {
      const status = err.statusCode;
      const hint =
        status === 401 || status === 403
          ? 'unauthorized: the repository is private or gated, does not exist, or HF_TOKEN is missing or wrong'
          : status === 404
            ? 'not found: check the model id and the revision'
            : 'hub request failed';
      return new ModelSourceError(`${what} ${this.where} on ${this.endpoint}: HTTP ${status} (${hint}): ${err.message}`, { ...details, status });
    }
    const reason = err instanceof Error ? err.message + (err.cause instanceof Error ? ` (${err.cause.message})` : '') : String(err);
    return new ModelSourceError(`${what} ${this.where} on ${this.endpoint}: ${reason}`, details);
  }
}

/** A fetch that sends the token to the hub's own origin only (never to a CDN it redirects to). */
function authorizedFetch(endpoint: string, token: string | undefined): typeof fetch {
  if (!token) return (input, init) => fetch(input, init);
  const origin = new URL(endpoint).origin;
  return (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    if (new URL(url).origin !== origin) return fetch(input, init);
    const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
    if (!headers.has('authorization')) headers.set('authorization', `Bearer ${token}`);
    return fetch(input, { ...init, headers });
  };
}

/** An etag as huggingface_hub names blobs: without the weak prefix and the quotes. */
function normalizeEtag(etag: string): string {
  const bare = etag.replace(/^W\//, '').replace(/^"|"$/g, '');
  if (!/^[\w.+=-]+$/.test(bare)) throw new Error(`unusable etag ${JSON.stringify(etag)}`);
  return bare;
}

function isTrue(v: string | undefined): boolean {
  return v !== undefined && ['1', 'true', 'yes', 'on'].includes(v.toLowerCase());
}
