/**
 * What the manager knows of a model's prompts, for a request's `input_type`
 * (src/tei/input-types.ts): the instance spec's `prompts` (the manager prepends them: the child
 * does not know them), else the `prompts` of `config_sentence_transformers.json` in the model's
 * folder when `model_id` is a local directory (the child knows them by name). A hub id without
 * spec prompts: none known (the files are the child's, downloaded by it).
 *
 * Read once per spec object (a respec or a swap is a new object); the file is bounded in size.
 */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { InstanceSpec } from '../config/instance-spec.js';
import type { ModelPrompts } from '../tei/input-types.js';

/** Largest config_sentence_transformers.json read. */
const MAX_CONFIG_BYTES = 1024 * 1024;

const known = new WeakMap<InstanceSpec, ModelPrompts | null>();

export function modelPrompts(spec: InstanceSpec): ModelPrompts | undefined {
  let p = known.get(spec);
  if (p === undefined) {
    p = fromSpec(spec) ?? fromModelFolder(spec.model_id) ?? null;
    known.set(spec, p);
  }
  return p ?? undefined;
}

function fromSpec(spec: InstanceSpec): ModelPrompts | undefined {
  const entries = Object.entries(spec.prompts ?? {});
  return entries.length === 0 ? undefined : { prompts: new Map(entries), source: 'spec' };
}

function fromModelFolder(modelId: string): ModelPrompts | undefined {
  const file = path.join(modelId, 'config_sentence_transformers.json');
  try {
    const st = statSync(file);
    if (!st.isFile() || st.size > MAX_CONFIG_BYTES) return undefined;
    const raw = JSON.parse(readFileSync(file, 'utf8')) as { prompts?: unknown };
    if (raw.prompts === null || typeof raw.prompts !== 'object') return undefined;
    const prompts = new Map<string, string>();
    for (const [name, text] of Object.entries(raw.prompts as Record<string, unknown>)) if (typeof text === 'string') prompts.set(name, text);
    return prompts.size === 0 ? undefined : { prompts, source: 'model' };
  } catch {
    return undefined; // no such folder or file, or not JSON: nothing known (the child says what it thinks of its files)
  }
}
