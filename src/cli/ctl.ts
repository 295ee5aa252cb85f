/**
 * `teiplex ctl`: the admin CLI over the manager's REST API (src/ctl, docs/ctl.md). Wires the
 * process: environment, stdout/stderr, Ctrl-C; a closed stdout (`| head`) ends it quietly.
 */
import { runCtl } from '../ctl/run.js';

export async function run(argv: string[]): Promise<number> {
  const interrupt = new AbortController();
  const onSigint = (): void => interrupt.abort();
  process.once('SIGINT', onSigint);
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  try {
    return await runCtl(argv, {
      env: process.env,
      stdout: (t) => void process.stdout.write(t),
      stderr: (t) => void process.stderr.write(t),
      interrupt: interrupt.signal,
    });
  } finally {
    process.off('SIGINT', onSigint);
  }
}
