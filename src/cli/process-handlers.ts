/**
 * The manager's process-level handlers, for errors no handler caught. An unhandled promise
 * rejection, and an I/O error of the machine (disk full, broken pipe, too many open files) that
 * escaped a stream, are logged, counted and survived, so the children stay supervised. Any other
 * uncaught exception means the manager's own state may be inconsistent: it is logged and the
 * process exits 70 at once; its children keep running and the next manager finds and stops them
 * at boot (docs/manager.md, "Crash recovery").
 */
import type pino from 'pino';

/** Error codes of the machine, not of the manager's logic: surviving them is safe. */
const MACHINE_IO_ERRORS = new Set(['EPIPE', 'EIO', 'ENOSPC', 'EDQUOT', 'EMFILE', 'ENFILE', 'EROFS', 'EAGAIN', 'ECONNRESET']);

export type Survived = 'unhandled_rejection' | 'io_error';

/** Install the handlers (once per process); set `survived` on the result to count what is survived. */
export function installProcessHandlers(log: pino.Logger): { survived: (kind: Survived) => void } {
  const counters = { survived: (_kind: Survived): void => undefined };
  let ioLoggedAt = -Infinity; // a failing stdout must not turn one error into a flood of log lines

  process.on('unhandledRejection', (reason) => {
    counters.survived('unhandled_rejection');
    log.error({ err: reason instanceof Error ? { message: reason.message, stack: reason.stack } : String(reason) }, 'unhandled promise rejection: logged, supervision goes on');
  });
  process.on('uncaughtException', (err) => {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== undefined && MACHINE_IO_ERRORS.has(code)) {
      counters.survived('io_error');
      if (Date.now() - ioLoggedAt < 1000) return;
      ioLoggedAt = Date.now();
      log.error({ err: { message: err.message, code, stack: err.stack } }, 'I/O error outside any handler: logged, supervision goes on');
      return;
    }
    log.fatal({ err: { message: err.message, stack: err.stack } }, 'uncaught exception: exiting 70; children are stopped by the next manager at boot');
    process.exit(70);
  });
  return counters;
}
