/**
 * Reading a local model directory laid out like a HuggingFace repository: config.json, the
 * tokenizer files, the ONNX graph and the sentence-transformers side files. Only reads; the rules
 * that turn these files into a model description live in model-config.ts.
 *
 * Every file is read through model-paths.ts: names from `--onnx-file` and `modules.json` must be
 * relative paths inside the directory, and every file's real location (symlinks followed) must be
 * inside the model folder: the directory itself, or for a hub cache snapshot
 * (`models--org--name/snapshots/<sha>/`, whose files are symlinks into `../../blobs/`) the
 * repository's folder. Anything else is a ModelFilesError naming the file.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { existsInside, joinInside } from './model-paths.js';

/** A JSON object as read from disk. */
export type Json = Record<string, unknown>;

/** 1_Pooling/config.json (sentence-transformers Pooling module). */
export interface PoolingConfigFile {
  word_embedding_dimension?: number;
  pooling_mode_cls_token?: boolean;
  pooling_mode_mean_tokens?: boolean;
  pooling_mode_max_tokens?: boolean;
  pooling_mode_mean_sqrt_len_tokens?: boolean;
  pooling_mode_weightedmean_tokens?: boolean;
  pooling_mode_lasttoken?: boolean;
  [key: string]: unknown;
}

/** One entry of modules.json. */
export interface ModuleEntry {
  idx?: number;
  name?: string;
  path: string;
  type: string;
}

/** config_sentence_transformers.json. */
export interface SentenceTransformersConfigFile {
  prompts?: Record<string, string>;
  default_prompt_name?: string | null;
  [key: string]: unknown;
}

/** sentence_bert_config.json. */
export interface SentenceBertConfigFile {
  max_seq_length?: number;
  do_lower_case?: boolean;
  [key: string]: unknown;
}

export interface ModelFiles {
  /** Absolute model directory. */
  dir: string;
  /** config.json. */
  config: Json;
  /** tokenizer.json (absolute path). */
  tokenizerPath: string;
  tokenizerConfig?: Json;
  specialTokensMap?: Json;
  /** The ONNX graph (absolute path); external data files sit beside it. */
  onnxPath: string;
  /** The sentence-transformers Pooling module's config, when the model has one. */
  poolingConfig?: PoolingConfigFile;
  modules?: ModuleEntry[];
  sentenceBertConfig?: SentenceBertConfigFile;
  sentenceTransformersConfig?: SentenceTransformersConfigFile;
  /** The revision when the directory is a hub cache snapshot (`.../snapshots/<sha>/`). */
  modelSha?: string;
}

/** A model directory that cannot be used: the message names the directory and the file. */
export class ModelFilesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelFilesError';
  }
}

const fail = (message: string): ModelFilesError => new ModelFilesError(message);

/** The folder every file of the model directory `dir` must really be in (see the file comment). */
function modelFolder(dir: string): string {
  return snapshotSha(dir) !== undefined ? path.dirname(path.dirname(dir)) : dir;
}

/** One model directory: names joined inside it, files checked to be inside its model folder. */
class ModelDir {
  readonly folder: string;
  constructor(readonly dir: string) {
    this.folder = modelFolder(dir);
  }

  /** The absolute path of `rel` (from `what`: a flag, modules.json, ...), refused when it leaves the directory. */
  join(rel: string, what: string): string {
    return joinInside(this.dir, rel, what, fail);
  }

  /** Whether `file` exists inside the model folder (throws when it leads outside). */
  has(file: string): Promise<boolean> {
    return existsInside(this.folder, file, path.relative(this.dir, file) || '.', fail);
  }

  async readJson<T = Json>(rel: string, required: boolean): Promise<T | undefined> {
    const file = this.join(rel, rel);
    if (!(await this.has(file))) {
      if (!required) return undefined;
      throw new ModelFilesError(`model directory ${this.dir} has no ${rel}`);
    }
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new ModelFilesError(`cannot read ${rel} in ${this.dir}: ${(err as Error).message}`);
    }
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw new ModelFilesError(`${rel} in ${this.dir} is not valid JSON: ${(err as Error).message}`);
    }
  }

  /**
   * The graph: `onnxFile` when given, else onnx/model.onnx, else model.onnx. Its external data
   * files (beside it, named after it: model.onnx_data, model.onnx.data, ...) must be inside the
   * model folder too, since ONNX Runtime opens them.
   */
  async onnxFile(onnxFile?: string): Promise<string> {
    let graph: string | undefined;
    if (onnxFile !== undefined && onnxFile !== '') {
      graph = this.join(onnxFile, '--onnx-file');
      if (!(await this.has(graph))) throw new ModelFilesError(`model directory ${this.dir} has no ${onnxFile} (--onnx-file)`);
    } else {
      for (const candidate of ['onnx/model.onnx', 'model.onnx']) {
        const file = this.join(candidate, candidate);
        if (await this.has(file)) {
          graph = file;
          break;
        }
      }
      if (graph === undefined) {
        throw new ModelFilesError(`model directory ${this.dir} has no ONNX model: looked for onnx/model.onnx and model.onnx (choose another with --onnx-file)`);
      }
    }
    const base = path.basename(graph);
    const siblings = await readdir(path.dirname(graph)).catch(() => [] as string[]);
    for (const name of siblings) if (name !== base && name.startsWith(base)) await this.has(path.join(path.dirname(graph), name));
    return graph;
  }
}

/** Where the ONNX graph is: `onnxFile` when given (relative to the directory), else onnx/model.onnx, else model.onnx. */
export async function findOnnxFile(dir: string, onnxFile?: string): Promise<string> {
  return new ModelDir(path.resolve(dir)).onnxFile(onnxFile);
}

/** The snapshot revision when `dir` is `.../snapshots/<40 hex>/` in a hub cache. */
export function snapshotSha(dir: string): string | undefined {
  const base = path.basename(dir);
  const parent = path.basename(path.dirname(dir));
  return parent === 'snapshots' && /^[0-9a-f]{40}$/i.test(base) ? base : undefined;
}

/** Read every file the router uses from a local model directory. */
export async function readModelFiles(dir: string, opts: { onnxFile?: string; densePath?: string } = {}): Promise<ModelFiles> {
  const root = path.resolve(dir);
  const exists = await stat(root).then(
    () => true,
    () => false,
  );
  if (!exists) throw new ModelFilesError(`model directory ${root} does not exist`);
  const model = new ModelDir(root);
  const config = (await model.readJson<Json>('config.json', true))!;
  const tokenizerPath = model.join('tokenizer.json', 'tokenizer.json');
  if (!(await model.has(tokenizerPath))) throw new ModelFilesError(`model directory ${root} has no tokenizer.json`);
  const onnxPath = await model.onnxFile(opts.onnxFile);

  const [tokenizerConfig, specialTokensMap, modules, sentenceBertConfig, sentenceTransformersConfig] = await Promise.all([
    model.readJson<Json>('tokenizer_config.json', false),
    model.readJson<Json>('special_tokens_map.json', false),
    model.readJson<ModuleEntry[]>('modules.json', false),
    model.readJson<SentenceBertConfigFile>('sentence_bert_config.json', false),
    model.readJson<SentenceTransformersConfigFile>('config_sentence_transformers.json', false),
  ]);
  if (modules !== undefined && !Array.isArray(modules)) throw new ModelFilesError(`modules.json in ${root} is not a list`);
  // Every module folder must be inside the model directory, read or not.
  modules?.forEach((m, i) => {
    if (typeof m?.path === 'string') model.join(m.path, `modules.json entry ${i} (${String(m.type)}) path`);
  });

  await refuseDense(model, modules, opts.densePath);

  // The Pooling module's folder comes from modules.json when it names one; 1_Pooling otherwise.
  const poolingModule = modules?.find((m) => typeof m?.type === 'string' && m.type.endsWith('.Pooling'));
  const poolingDir = typeof poolingModule?.path === 'string' && poolingModule.path !== '' ? poolingModule.path : '1_Pooling';
  const poolingConfig = await model.readJson<PoolingConfigFile>(`${poolingDir}/config.json`, false);

  return {
    dir: root,
    config,
    tokenizerPath,
    tokenizerConfig,
    specialTokensMap,
    onnxPath,
    poolingConfig,
    modules,
    sentenceBertConfig,
    sentenceTransformersConfig,
    modelSha: snapshotSha(root),
  };
}

/**
 * The router pools and normalizes but applies no sentence-transformers Dense module (a Linear layer
 * and an activation after pooling, in `2_Dense/`): a model that has one would be served with
 * vectors that are not the model's (and of another size). Refuse it, whether modules.json names
 * the module or `--dense-path` (TEI's flag) names a folder that exists; a `--dense-path` that
 * names nothing in the model changes nothing.
 */
async function refuseDense(model: ModelDir, modules: ModuleEntry[] | undefined, densePath: string | undefined): Promise<void> {
  const listed = modules?.find((m) => typeof m?.type === 'string' && m.type.endsWith('.Dense'));
  let found: string | undefined;
  if (listed !== undefined) found = `modules.json lists ${listed.type} in ${JSON.stringify(listed.path)}`;
  else if (densePath !== undefined && densePath.trim() !== '' && (await model.has(model.join(densePath, '--dense-path')))) found = `--dense-path ${JSON.stringify(densePath)} is in the model`;
  if (found !== undefined) {
    throw new ModelFilesError(
      `model directory ${model.dir} has a sentence-transformers Dense module (${found}): teiplex router applies no Dense layers, so its vectors would not be the model's; serve this model with text-embeddings-router`,
    );
  }
}

/** True when modules.json ends the pipeline with a Normalize module (the graph's pooled output is unit length). */
export function hasNormalizeModule(files: Pick<ModelFiles, 'modules'>): boolean {
  return files.modules?.some((m) => typeof m?.type === 'string' && m.type.endsWith('.Normalize')) ?? false;
}
