/**
 * TEI's per-input Metadata, aggregated for answers that cover several inputs (rerank, batches,
 * HTTP requests), and TEI's timing headers derived from it.
 */
import type { Metadata } from './types.js';

/** Tokens the inputs took, summed (OpenAI's prompt_tokens, Cohere's input_tokens, EmbedTyped's). */
export function tokenCount(metadata: readonly Metadata[]): number {
  let n = 0;
  for (const m of metadata) n += m.computeTokens;
  return n;
}

/** Several inputs' Metadata as one, as TEI does for rerank: sums of sizes, means of stage times. */
export function aggregateMetadata(all: readonly Metadata[], totalTimeNs?: bigint): Metadata {
  let chars = 0;
  let tokens = 0;
  let total = 0n;
  let tok = 0n;
  let queue = 0n;
  let inf = 0n;
  for (const m of all) {
    chars += m.computeChars;
    tokens += m.computeTokens;
    if (m.totalTimeNs > total) total = m.totalTimeNs;
    tok += m.tokenizationTimeNs;
    queue += m.queueTimeNs;
    inf += m.inferenceTimeNs;
  }
  const n = BigInt(Math.max(1, all.length));
  return {
    computeChars: chars,
    computeTokens: tokens,
    totalTimeNs: totalTimeNs ?? total,
    tokenizationTimeNs: tok / n,
    queueTimeNs: queue / n,
    inferenceTimeNs: inf / n,
  };
}

const ms = (ns: bigint): string => (ns / 1_000_000n).toString();

/** TEI's `x-*` response headers (times in whole milliseconds). */
export function timingHeaders(m: Metadata): Array<[string, string]> {
  return [
    ['x-compute-time', ms(m.totalTimeNs)],
    ['x-compute-characters', String(m.computeChars)],
    ['x-compute-tokens', String(m.computeTokens)],
    ['x-total-time', ms(m.totalTimeNs)],
    ['x-tokenization-time', ms(m.tokenizationTimeNs)],
    ['x-queue-time', ms(m.queueTimeNs)],
    ['x-inference-time', ms(m.inferenceTimeNs)],
  ];
}
