/**
 * The size of an answer counted while a child's rows arrive, against a limit: past it, the
 * caller's error is thrown at once (from inside the row callback or `onFloats` hook), which ends
 * the request and cancels the child work still in flight instead of finishing it for nothing.
 * The multiplexer's Arrow RPCs count packed bytes against grpc_max_message_size_mb; the data plane
 * counts JSON bytes against http_response_limit_mb (src/http/data-plane/answer-budget.ts).
 */
export class AnswerMeter {
  private bytes = 0;

  /** @param over the error for an answer past `limitBytes` (told the bytes counted so far) */
  constructor(
    readonly limitBytes: number,
    private readonly over: (bytes: number) => Error,
  ) {}

  /** Bytes counted so far. */
  get counted(): number {
    return this.bytes;
  }

  /** Count `n` more bytes; throws once the answer passes the limit. */
  add(n: number): void {
    this.bytes += n;
    if (this.bytes > this.limitBytes) throw this.over(this.bytes);
  }
}
