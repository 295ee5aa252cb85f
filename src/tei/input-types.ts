/**
 * Prompts by input type: a request says what its texts are (`input_type`: `query`, `document`, or
 * Cohere's `search_query`, `search_document`, `classification`, `clustering`) and gets the model's
 * prompt for that type, found among the model's prompt names (sentence-transformers' `prompts`, or
 * the instance spec's `prompts`) in the order CANDIDATES lists. A type the model has no prompt
 * for gets none (the model treats such texts plainly, e.g. bge's documents).
 *
 * A model is asymmetric when its query prompt and its document prompt differ (a missing one counts
 * as the empty prompt): a request to it that names neither an `input_type` nor a `prompt_name`
 * is answered with a warning (ASYMMETRIC_WARNING_HEADER), never silently.
 */

import { TeiplexError } from '../common/errors.js';

export const INPUT_TYPES = ['query', 'document', 'search_query', 'search_document', 'classification', 'clustering'] as const;
export type InputType = (typeof INPUT_TYPES)[number];

/** The prompt names each input type looks for, in order. */
export const CANDIDATES: Readonly<Record<InputType, readonly string[]>> = {
  query: ['query', 'search_query', 'retrieval.query', 'Retrieval-query'],
  search_query: ['search_query', 'query', 'retrieval.query', 'Retrieval-query'],
  document: ['document', 'passage', 'search_document', 'retrieval.passage', 'Retrieval-document', 'corpus'],
  search_document: ['search_document', 'document', 'passage', 'retrieval.passage', 'Retrieval-document', 'corpus'],
  classification: ['classification', 'Classification'],
  clustering: ['clustering', 'Clustering'],
};

export const ASYMMETRIC_WARNING_HEADER = 'x-teiplex-warning';

/** A model's prompts and who knows them: the child itself (`model`: sent by name) or only the manager (`spec`: prepended). */
export interface ModelPrompts {
  readonly prompts: ReadonlyMap<string, string>;
  readonly source: 'model' | 'spec';
}

/** How a request's texts get a prompt: by name (the child applies it) or as a prefix. */
export interface PromptChoice {
  readonly promptName?: string;
  readonly prefix?: string;
}

/** The prompt name for an input type, if the model has one. */
export function promptNameFor(prompts: ReadonlyMap<string, string>, t: InputType): string | undefined {
  return CANDIDATES[t].find((name) => prompts.has(name));
}

/** What a request of input type `t` sends. */
export function promptFor(p: ModelPrompts | undefined, t: InputType): PromptChoice {
  if (p === undefined) return {};
  const name = promptNameFor(p.prompts, t);
  if (name === undefined) return {};
  return p.source === 'model' ? { promptName: name } : { prefix: p.prompts.get(name) ?? '' };
}

/** The warning for a request without a type to an asymmetric model; undefined when the model is symmetric. */
export function asymmetricWarning(p: ModelPrompts | undefined, model: string): string | undefined {
  if (p === undefined || p.prompts.size === 0) return undefined;
  const q = p.prompts.get(promptNameFor(p.prompts, 'query') ?? '') ?? '';
  const d = p.prompts.get(promptNameFor(p.prompts, 'document') ?? '') ?? '';
  if (q === d) return undefined;
  // a header value: the prompts JSON-quoted, control characters escaped
  return `no input_type: model ${JSON.stringify(model)} has different prompts for queries (${JSON.stringify(q)}) and documents (${JSON.stringify(d)}); set input_type`.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * A request's `input_type` as the model's prompt: by name when the child knows the model's
 * prompts, else prepended to each text (token-id inputs cannot take a prefix: VALIDATION). Without
 * a type or a prompt name, the warning for an asymmetric model (undefined for a symmetric one).
 */
export function applyInputType<I extends string | number[], E extends { promptName?: string; textPrefix?: string }>(
  inputs: I[],
  e: E,
  inputType: InputType | undefined,
  prompts: ModelPrompts | undefined,
  modelName: string,
): { inputs: I[]; e: E; warning?: string } {
  if (inputType === undefined) {
    const warning = e.promptName === undefined ? asymmetricWarning(prompts, modelName) : undefined;
    return warning === undefined ? { inputs, e } : { inputs, e, warning };
  }
  if (e.promptName !== undefined) throw new TeiplexError('VALIDATION', 'give `input_type` or `prompt_name`, not both', { param: 'input_type' });
  const choice = promptFor(prompts, inputType);
  if (choice.promptName !== undefined) return { inputs, e: { ...e, promptName: choice.promptName } };
  const prefix = choice.prefix;
  if (prefix === undefined || prefix === '') return { inputs, e };
  if (inputs.some((x) => typeof x !== 'string')) {
    throw new TeiplexError('VALIDATION', "`input_type` cannot prefix token-id inputs with the prompt of this model (its prompts are the instance spec's): send text, or the token ids of the prompted text", { param: 'input_type' });
  }
  return { inputs: inputs.map((x) => `${prefix}${x}` as I), e: { ...e, textPrefix: prefix } };
}

export function isInputType(s: unknown): s is InputType {
  return typeof s === 'string' && (INPUT_TYPES as readonly string[]).includes(s);
}

/** A request's `input_type` field (empty or absent: none); an unknown one is VALIDATION naming the types. */
export function parseInputType(t: string | undefined): InputType | undefined {
  if (t === undefined || t === '') return undefined;
  if (!isInputType(t)) throw new TeiplexError('VALIDATION', `\`input_type\` must be one of ${INPUT_TYPES.map((x) => `"${x}"`).join(', ')}, got ${JSON.stringify(t)}`, { param: 'input_type' });
  return t;
}
