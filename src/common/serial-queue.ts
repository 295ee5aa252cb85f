/**
 * Runs async operations one at a time, in call order: each starts when the previous one has
 * settled (a failure does not block the next). `idle` settles once everything queued so far has.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }

  get idle(): Promise<void> {
    return this.tail.then(() => undefined);
  }
}
