/**
 * TEI's rules for what a model is: its kind (embedding, classifier, reranker, SPLADE, and token
 * classifier: a `*ForTokenClassification` architecture, which TEI does not serve), its pooling,
 * its labels, its maximum input length and its prompts. Pure functions over the files that
 * model-files.ts read, so every rule can be checked on hand-written configs.
 */
import type { ModelDescription, ModelKind, Pooling } from '../tei/types.js';
import type { RouterOptions } from './options.js';
import type { ModelFiles, PoolingConfigFile } from './model-files.js';

/** The model cannot be served as configured (startup error). */
export class ModelConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelConfigError';
  }
}

/** The files model-config reads: a subset of ModelFiles, so tests can hand-write them. */
export type ModelConfigInput = Pick<ModelFiles, 'config'> &
  Partial<Pick<ModelFiles, 'poolingConfig' | 'sentenceBertConfig' | 'sentenceTransformersConfig' | 'modelSha'>>;

/** The options model-config honours. */
export type ModelConfigOptions = Pick<RouterOptions, 'modelId'> &
  Partial<Pick<RouterOptions, 'pooling' | 'servedModelName' | 'dtype' | 'defaultPromptName' | 'defaultPrompt'>>;

export interface ResolvedModel {
  model: ModelDescription;
  /** The pooling named by 1_Pooling/config.json, when there is one (the graph's own sentence_embedding uses it). */
  configPooling?: Exclude<Pooling, 'splade'>;
  /** Things an operator should know (e.g. CLS pooling assumed). */
  warnings: string[];
  /** config.json vocab_size: the rows of the model's token embedding table, when it says. */
  embeddingRows?: number;
}

/** Model types TEI treats as BERT variants (CLS pooling assumed when nothing else says). */
export const BERT_FAMILY = new Set([
  'bert',
  'roberta',
  'xlm-roberta',
  'camembert',
  'distilbert',
  'mpnet',
  'nomic_bert',
  'jina_bert',
  'new',
  'gte',
  'modernbert',
  'electra',
  'deberta',
  'deberta-v2',
  'albert',
]);

/** Model types whose position ids start after the padding index (max length loses pad_token_id + 1). */
export const PADDING_OFFSET_POSITIONS = new Set(['roberta', 'xlm-roberta', 'camembert']);

function architectures(config: Record<string, unknown>): string[] {
  const a = config.architectures;
  return Array.isArray(a) ? a.filter((x): x is string => typeof x === 'string') : [];
}

function num(config: Record<string, unknown>, key: string): number | undefined {
  const v = config[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/**
 * The most labels a classifier may have (config.json id2label entries or num_labels). Real heads
 * have a few to a few thousand; the limit keeps a hostile config.json from making the router
 * build a label table of billions of entries at startup.
 */
export const MAX_LABELS = 100_000;

/** A label index as config.json must spell it: a canonical non-negative integer ("0", "17"; not "01", "-1", "1e3", "1.0"). */
const LABEL_ID = /^(0|[1-9][0-9]*)$/;

/**
 * The labels by index from config.json's id2label ({"0": "NEG", "1": "POS"}), else num_labels
 * generic names (LABEL_0 ...). id2label's keys must be exactly 0..n-1 (canonical integers, no gaps)
 * with string labels, and n at most MAX_LABELS; otherwise ModelConfigError naming the key.
 */
export function labelsOf(config: Record<string, unknown>): string[] {
  const id2label = config.id2label;
  if (id2label !== undefined && id2label !== null) {
    if (typeof id2label !== 'object' || Array.isArray(id2label)) {
      throw new ModelConfigError('config.json id2label must be an object mapping label ids ("0", "1", ...) to label names');
    }
    const entries = Object.entries(id2label as Record<string, unknown>);
    if (entries.length > MAX_LABELS) {
      throw new ModelConfigError(`config.json id2label has ${entries.length} entries: at most ${MAX_LABELS} labels are supported`);
    }
    if (entries.length > 0) {
      const out = new Array<string>(entries.length);
      for (const [key, label] of entries) {
        if (!LABEL_ID.test(key)) {
          throw new ModelConfigError(`config.json id2label key ${JSON.stringify(key)} is not a label id: ids are canonical non-negative integers ("0", "1", ...)`);
        }
        const id = Number(key);
        if (id >= entries.length) {
          throw new ModelConfigError(
            `config.json id2label key ${JSON.stringify(key)} is out of range: the ${entries.length} ids must be 0..${entries.length - 1} (at most ${MAX_LABELS} labels)`,
          );
        }
        if (typeof label !== 'string') {
          throw new ModelConfigError(`config.json id2label ${JSON.stringify(key)} is ${JSON.stringify(label)}: labels are strings`);
        }
        out[id] = label;
      }
      return out; // n distinct ids, each below n: every index 0..n-1 is set
    }
  }
  const n = config.num_labels;
  if (n === undefined || n === null) return [];
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_LABELS) {
    throw new ModelConfigError(`config.json num_labels ${JSON.stringify(n)} is not a label count: an integer 1..${MAX_LABELS}`);
  }
  return Array.from({ length: n }, (_, i) => `LABEL_${i}`);
}

/** The pooling a sentence-transformers Pooling config asks for: cls > mean > lasttoken, as TEI reads it. */
export function poolingFromConfig(pc: PoolingConfigFile): Exclude<Pooling, 'splade'> {
  if (pc.pooling_mode_cls_token) return 'cls';
  if (pc.pooling_mode_mean_tokens) return 'mean';
  if (pc.pooling_mode_lasttoken) return 'last-token';
  const on = Object.entries(pc)
    .filter(([k, v]) => k.startsWith('pooling_mode_') && v === true)
    .map(([k]) => k);
  throw new ModelConfigError(
    `1_Pooling/config.json asks for ${on.length ? on.join(', ') : 'no pooling mode'}, which is not supported (cls, mean or lasttoken); set --pooling`,
  );
}

/**
 * Maximum input length in tokens: sentence_bert_config.max_seq_length, else max_position_embeddings
 * (minus pad_token_id + 1 for roberta-style position ids); never more than the position table allows.
 */
export function maxInputLength(input: ModelConfigInput): number {
  const config = input.config;
  const modelType = String(config.model_type ?? '');
  let positions = num(config, 'max_position_embeddings');
  if (positions !== undefined && PADDING_OFFSET_POSITIONS.has(modelType)) {
    positions -= (num(config, 'pad_token_id') ?? 1) + 1;
  }
  const st = input.sentenceBertConfig?.max_seq_length;
  const fromSt = typeof st === 'number' && Number.isFinite(st) && st > 0 ? Math.floor(st) : undefined;
  const length = fromSt !== undefined ? (positions !== undefined ? Math.min(fromSt, positions) : fromSt) : positions;
  if (length === undefined || length <= 0) {
    throw new ModelConfigError('cannot tell the maximum input length: config.json has no max_position_embeddings and there is no sentence_bert_config.json max_seq_length');
  }
  return length;
}

/** Apply TEI's rules to the model files and options. Throws ModelConfigError when the model cannot be served. */
export function describeModel(input: ModelConfigInput, opts: ModelConfigOptions): ResolvedModel {
  const config = input.config;
  const warnings: string[] = [];
  const archs = architectures(config);
  const modelType = String(config.model_type ?? '');
  const isClassifier = archs.some((a) => a.endsWith('ForSequenceClassification'));
  const isTokenClassifier = !isClassifier && archs.some((a) => a.endsWith('ForTokenClassification'));
  const isMaskedLm = archs.some((a) => a.endsWith('ForMaskedLM'));
  const configPooling = input.poolingConfig ? poolingFromConfig(input.poolingConfig) : undefined;

  let kind: ModelKind;
  let pooling: Pooling | undefined;
  let id2label: string[] = [];
  if (isClassifier) {
    id2label = labelsOf(config);
    if (id2label.length === 0) throw new ModelConfigError(`${archs.join(', ')} has no id2label or num_labels in config.json`);
    kind = id2label.length === 1 ? 'reranker' : 'classifier';
    if (opts.pooling !== undefined) warnings.push(`--pooling ${opts.pooling} is ignored for a ${kind} model`);
  } else if (isTokenClassifier) {
    // *ForTokenClassification (named-entity recognition): labels per token, served on /predict_tokens.
    id2label = labelsOf(config);
    if (id2label.length < 2) throw new ModelConfigError(`${archs.join(', ')} needs at least 2 labels in config.json (id2label or num_labels), got ${id2label.length}`);
    kind = 'token-classifier';
    if (opts.pooling !== undefined) warnings.push(`--pooling ${opts.pooling} is ignored for a token classification model`);
  } else if (opts.pooling === 'splade') {
    if (!isMaskedLm) {
      throw new ModelConfigError(
        `--pooling splade needs a *ForMaskedLM model; config.json architectures: ${archs.length ? archs.join(', ') : 'none'}`,
      );
    }
    kind = 'splade';
    pooling = 'splade';
  } else {
    kind = 'embedding';
    if (opts.pooling !== undefined) {
      pooling = opts.pooling;
    } else if (configPooling !== undefined) {
      pooling = configPooling;
    } else if (BERT_FAMILY.has(modelType)) {
      pooling = 'cls';
      warnings.push(
        `--pooling is not set and the model has no 1_Pooling/config.json, but it is a BERT variant (${modelType}): using CLS pooling`,
      );
    } else {
      throw new ModelConfigError(
        `--pooling is not set and the model has no 1_Pooling/config.json (model_type ${modelType || 'unknown'}); set --pooling cls|mean|last-token`,
      );
    }
  }

  // A Map, so a name is one of the model's own prompts and never something every object inherits
  // (`constructor`, `toString`, `__proto__`).
  const prompts = new Map<string, string>();
  const rawPrompts = input.sentenceTransformersConfig?.prompts;
  if (rawPrompts && typeof rawPrompts === 'object' && !Array.isArray(rawPrompts)) {
    for (const [name, text] of Object.entries(rawPrompts)) if (typeof text === 'string') prompts.set(name, text);
  }
  if (opts.defaultPromptName !== undefined && opts.defaultPrompt !== undefined) {
    throw new ModelConfigError('--default-prompt-name and --default-prompt cannot both be set');
  }
  if (opts.defaultPromptName !== undefined && !prompts.has(opts.defaultPromptName)) {
    const known = [...prompts.keys()];
    throw new ModelConfigError(
      `--default-prompt-name ${opts.defaultPromptName} is not a prompt of this model (${known.length ? `known: ${known.join(', ')}` : 'config_sentence_transformers.json has no prompts'})`,
    );
  }

  const hidden = num(config, 'hidden_size') ?? num(config, 'd_model') ?? input.poolingConfig?.word_embedding_dimension;
  const vocab = num(config, 'vocab_size');
  const model: ModelDescription = {
    modelId: opts.servedModelName ?? opts.modelId,
    modelSha: input.modelSha,
    dtype: opts.dtype ?? 'float32',
    kind,
    pooling,
    hiddenSize: kind === 'embedding' ? hidden : undefined,
    vocabSize: kind === 'splade' ? vocab : undefined,
    maxInputLength: maxInputLength(input),
    id2label,
    prompts,
  };
  return { model, configPooling, warnings, embeddingRows: vocab !== undefined && vocab > 0 ? Math.floor(vocab) : undefined };
}
