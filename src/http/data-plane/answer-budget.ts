/**
 * The most JSON one data-plane answer may take (`http_response_limit_mb`), charged while the
 * child's results arrive (the ChildClient's `onFloats` hook): the values of each chunk as they
 * come back, counted at the most bytes a value takes in JSON. Past the limit the request fails
 * with 413 naming the limit, and the child calls still in flight are cancelled and no further
 * chunk is sent (src/child/child-client.ts), so neither the child's work nor the manager's memory
 * grows with what a request asks for beyond the limit.
 */
import { AnswerMeter } from '../../child/answer-meter.js';
import { JSON_BYTES_PER_FLOAT } from '../../tei/json-answer.js';
import { TeiplexError } from '../../common/errors.js';

export class AnswerBudget extends AnswerMeter {
  constructor(limitBytes: number) {
    super(
      limitBytes,
      () =>
        new TeiplexError('PAYLOAD_TOO_LARGE', `the answer would exceed http_response_limit_mb (${limitBytes} bytes, at ${JSON_BYTES_PER_FLOAT} bytes per value): send fewer or shorter inputs per request`, { param: 'inputs' }),
    );
  }

  /** Count `n` more float values; throws PAYLOAD_TOO_LARGE (413) once the answer would exceed the limit. */
  floats(n: number): void {
    this.add(n * JSON_BYTES_PER_FLOAT);
  }

  /** This budget as a ChildClient call's answer size hook. */
  readonly onFloats = (n: number): void => this.floats(n);
}
