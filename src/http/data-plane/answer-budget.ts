/**
 * The most JSON one data-plane answer may take (`http_response_limit_mb`), charged while the
 * child's results arrive: the values of each chunk as they come back, counted at the most bytes
 * a value takes in JSON. Past the limit the request fails with 413 naming the limit, and no
 * further chunk is sent to the child (fan-out.ts), so neither the child's work nor the manager's
 * memory grows with what a request asks for beyond the limit.
 */
import { RequestError } from './errors.js';

/**
 * The most characters one float32 value takes in the JSON we write (json.ts): 25 for the value
 * (`-0.0000010741975984274177`: JavaScript writes 1e-7 to 1e21 without an exponent), one for its
 * comma, one more that covers its list's brackets.
 */
export const JSON_BYTES_PER_FLOAT = 27;

export class AnswerBudget {
  private bytes = 0;

  constructor(readonly limitBytes: number) {}

  /** Count `n` more float values; throws PAYLOAD_TOO_LARGE (413) once the answer would exceed the limit. */
  floats(n: number): void {
    this.bytes += n * JSON_BYTES_PER_FLOAT;
    if (this.bytes > this.limitBytes) {
      throw new RequestError(
        'PAYLOAD_TOO_LARGE',
        `the answer would exceed http_response_limit_mb (${this.limitBytes} bytes, at ${JSON_BYTES_PER_FLOAT} bytes per value): send fewer or shorter inputs per request`,
        'inputs',
      );
    }
  }
}
