/**
 * `teiplex ctl`: the admin CLI over the manager's REST API (src/ctl, docs/ctl.md). Wires the
 * process: environment, stdout/stderr, Ctrl-C (caught only where a verb ends on it cleanly); a
 * closed stdout (`| head`) ends it quietly.
 */
import { runCtl } from '../ctl/run.js';

export async function run(argv: string[]): Promise<number> {
  const interrupt = new AbortController();
  const onSigint = (): void => interrupt.abort();
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') process.stderr.write(`teiplex ctl: stdout: ${err.message}\n`);
    process.exit(err.code === 'EPIPE' ? 0 : 1);
  });
  try {
    return await runCtl(argv, {
      env: process.env,
      stdout: (t) => void process.stdout.write(t),
      stderr: (t) => void process.stderr.write(t),
      interrupt: interrupt.signal,
      catchInterrupt: () => void process.once('SIGINT', onSigint),
    });
  } finally {
    process.off('SIGINT', onSigint);
  }
}
