/**
 * The swap's view of the two versions: a ChildClient to the candidate on its own ChildChannel
 * (the routing pool serves only registered instances; the candidate is not one until the flip),
 * and the probe, the same texts through each version's client, answered as a ProbeAnswer
 * (compare.ts). The kind comes from the child's tei.v1 Info: embedding models are probed with
 * Embed (EmbedSparse when the spec's pooling is splade), classifiers and rerankers with Predict
 * (raw scores, one vector of label scores per text); a token classifier (Info says classifier,
 * Predict answers WRONG_MODEL_TYPE) with PredictTokens: per text a sparse vector with one entry per
 * token, at index `position * LABEL_SLOTS + slot(label)`, its score as the value, so a token whose
 * label changed counts as orthogonal and one whose score changed by its score.
 */
import { ChildChannel, type ChildChannelSettings } from '../child/child-channel.js';
import { ChildClient } from '../child/child-client.js';
import { childMessageLimit } from '../child/child-message-limit.js';
import type { InstanceSpec } from '../config/instance-spec.js';
import type { Instance } from '../supervisor/instance.js';
import type { ProbeAnswer, ProbeVector } from './compare.js';
import { TeiplexError } from '../common/errors.js';

/** A client of its own to a candidate's child; `close` ends its channel. */
export function candidateClient(candidate: Instance, settings: ChildChannelSettings, timeoutMs: number): ChildClient {
  const childLimit = childMessageLimit(candidate.spec);
  const channel = new ChildChannel(candidate.placement.port, childLimit === undefined ? settings : { ...settings, childLimit });
  return new ChildClient(channel, { who: `the swap candidate of instance '${candidate.name}'`, timeoutMs, batch: candidate.spec.runtime === 'tei' ? 'no' : 'unknown' });
}

/** The pooling a spec asks for, as the report names it. */
export function poolingOf(spec: InstanceSpec): string {
  return spec.pooling ?? 'model default';
}

const KINDS = { MODEL_TYPE_EMBEDDING: 'embedding', MODEL_TYPE_CLASSIFIER: 'classifier', MODEL_TYPE_RERANKER: 'reranker' } as const;

/** Embed (or score) `texts` with one version; every call bounded by `deadlineMs`. */
export async function probe(client: ChildClient, spec: InstanceSpec, texts: readonly string[], deadlineMs: number): Promise<ProbeAnswer> {
  const call = { deadlineMs };
  const info = await client.info(call);
  const pooling = poolingOf(spec);
  const base = KINDS[info.model_type] ?? String(info.model_type);
  if (base === 'embedding') {
    if (spec.pooling === 'splade') {
      const r = await client.embedSparse([...texts], { truncate: true, truncationDirection: 'right' }, call);
      return { kind: 'embedding/sparse', pooling, dims: undefined, vectors: r.results };
    }
    const r = await client.embed([...texts], { truncate: true, truncationDirection: 'right', normalize: true }, call);
    return { kind: 'embedding/dense', pooling, dims: r.results[0]?.length, vectors: r.results };
  }
  let r: Awaited<ReturnType<ChildClient['predict']>>;
  try {
    r = await client.predict([...texts], { truncate: true, truncationDirection: 'right', rawScores: true }, call);
  } catch (err) {
    if (err instanceof TeiplexError && err.code === 'WRONG_MODEL_TYPE') return tokenProbe(client, spec, texts, call);
    throw err;
  }
  // Labels in a fixed order, so the two versions' score vectors line up.
  const vectors: ProbeVector[] = r.results.map((preds) => [...preds].sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0)).map((p) => p.score));
  const labels = (r.results[0] ?? []).map((p) => p.label).sort();
  return { kind: `${base} (${labels.join(', ')})`, pooling, dims: labels.length, vectors };
}

/** Label slots per token position in a token classifier's probe vector (labels hashed into them). */
const LABEL_SLOTS = 4096;

/** FNV-1a of a label, into LABEL_SLOTS. */
function labelSlot(label: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193);
  return (h >>> 0) % LABEL_SLOTS;
}

async function tokenProbe(client: ChildClient, spec: InstanceSpec, texts: readonly string[], call: { deadlineMs: number }): Promise<ProbeAnswer> {
  const r = await client.predictTokens([...texts], { truncate: true, truncationDirection: 'right', rawScores: false, aggregation: 'none' }, call);
  const vectors: ProbeVector[] = r.results.map((p) => {
    const tokens = 'tokens' in p ? p.tokens : [];
    return { indices: Float64Array.from(tokens, (t, i) => i * LABEL_SLOTS + labelSlot(t.label)), values: Float64Array.from(tokens, (t) => t.score) };
  });
  return { kind: 'token-classifier', pooling: poolingOf(spec), dims: undefined, vectors };
}
