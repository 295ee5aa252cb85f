/** Ids of files and batches (a prefix and 24 random hex digits, as OpenAI's look), and times as the API reports them. */
import { randomBytes } from 'node:crypto';

export function newId(prefix: 'file-' | 'batch_' | 'batch_req_'): string {
  return `${prefix}${randomBytes(12).toString('hex')}`;
}

/** Epoch ms as the API's unix seconds. */
export function unixSecs(ms: number): number {
  return Math.floor(ms / 1000);
}
