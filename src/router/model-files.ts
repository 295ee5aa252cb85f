/**
 * Reading a local model directory laid out like a HuggingFace repository: config.json, the
 * tokenizer files, the ONNX graph and the sentence-transformers side files. Only reads; the rules
 * that turn these files into a model description live in model-config.ts.
 */
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';

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

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

async function readJson<T = Json>(file: string, dir: string, required: boolean): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    const rel = path.relative(dir, file);
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ModelFilesError(`model directory ${dir} has no ${rel}`);
    throw new ModelFilesError(`cannot read ${rel} in ${dir}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new ModelFilesError(`${path.relative(dir, file)} in ${dir} is not valid JSON: ${(err as Error).message}`);
  }
}

/** Where the ONNX graph is: `onnxFile` when given (relative to the directory), else onnx/model.onnx, else model.onnx. */
export async function findOnnxFile(dir: string, onnxFile?: string): Promise<string> {
  if (onnxFile !== undefined && onnxFile !== '') {
    const file = path.resolve(dir, onnxFile);
    if (!(await exists(file))) throw new ModelFilesError(`model directory ${dir} has no ${onnxFile} (--onnx-file)`);
    return file;
  }
  for (const candidate of ['onnx/model.onnx', 'model.onnx']) {
    const file = path.join(dir, candidate);
    if (await exists(file)) return file;
  }
  throw new ModelFilesError(`model directory ${dir} has no ONNX model: looked for onnx/model.onnx and model.onnx (choose another with --onnx-file)`);
}

/** The snapshot revision when `dir` is `.../snapshots/<40 hex>/` in a hub cache. */
export function snapshotSha(dir: string): string | undefined {
  const base = path.basename(dir);
  const parent = path.basename(path.dirname(dir));
  return parent === 'snapshots' && /^[0-9a-f]{40}$/i.test(base) ? base : undefined;
}

/** Read every file the router uses from a local model directory. */
export async function readModelFiles(dir: string, opts: { onnxFile?: string } = {}): Promise<ModelFiles> {
  const root = path.resolve(dir);
  if (!(await exists(root))) throw new ModelFilesError(`model directory ${root} does not exist`);
  const config = (await readJson<Json>(path.join(root, 'config.json'), root, true))!;
  const tokenizerPath = path.join(root, 'tokenizer.json');
  if (!(await exists(tokenizerPath))) throw new ModelFilesError(`model directory ${root} has no tokenizer.json`);
  const onnxPath = await findOnnxFile(root, opts.onnxFile);

  const [tokenizerConfig, specialTokensMap, modules, sentenceBertConfig, sentenceTransformersConfig] = await Promise.all([
    readJson<Json>(path.join(root, 'tokenizer_config.json'), root, false),
    readJson<Json>(path.join(root, 'special_tokens_map.json'), root, false),
    readJson<ModuleEntry[]>(path.join(root, 'modules.json'), root, false),
    readJson<SentenceBertConfigFile>(path.join(root, 'sentence_bert_config.json'), root, false),
    readJson<SentenceTransformersConfigFile>(path.join(root, 'config_sentence_transformers.json'), root, false),
  ]);
  if (modules !== undefined && !Array.isArray(modules)) throw new ModelFilesError(`modules.json in ${root} is not a list`);

  // The Pooling module's folder comes from modules.json when it names one; 1_Pooling otherwise.
  const poolingModule = modules?.find((m) => typeof m?.type === 'string' && m.type.endsWith('.Pooling'));
  const poolingDir = poolingModule?.path ? poolingModule.path : '1_Pooling';
  const poolingConfig = await readJson<PoolingConfigFile>(path.join(root, poolingDir, 'config.json'), root, false);

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

/** True when modules.json ends the pipeline with a Normalize module (the graph's pooled output is unit length). */
export function hasNormalizeModule(files: Pick<ModelFiles, 'modules'>): boolean {
  return files.modules?.some((m) => typeof m?.type === 'string' && m.type.endsWith('.Normalize')) ?? false;
}
