/**
 * `teiplex ctl`: parse (usage errors exit 2 with the help hint), print help, or build the
 * AdminClient from the global flags (certificate files read here; one that cannot be read is a
 * usage error) and run the verb. A failed call exits 1 with the server's code and message on
 * stderr, never a stack trace. Ctrl-C (SIGINT) ends a `logs -f` cleanly (exit 0) and a `--wait`
 * with exit 1; any other verb it ends at once, as usual. The `batch` verbs call the manager's HTTP
 * data plane through the client's BatchClient, the others its admin API through AdminClient.
 */
import { readFileSync } from 'node:fs';
import { AdminClient } from '../client/admin.js';
import { BatchClient } from '../client/batches.js';
import type { ClientOptions } from '../client/options.js';
import { parseCtlArgs, UsageError, type GlobalOptions } from './args.js';
import { executeBatch } from './batch-commands.js';
import { execute, type Io } from './commands.js';
import { bashCompletion } from './completion.js';
import { describeFailure } from './failure.js';
import { ctlUsage, groupUsage, verbUsage } from './help.js';
import { findVerb, VERB_GROUPS } from './verbs.js';

export interface CtlProcess {
  env: NodeJS.ProcessEnv;
  stdout(text: string): void;
  stderr(text: string): void;
  /** Aborted on Ctrl-C, once `catchInterrupt` was called (before that Ctrl-C ends the process as usual). */
  interrupt: AbortSignal;
  /** The command ends cleanly on Ctrl-C (`logs -f`, `--wait`): catch it from now on. */
  catchInterrupt(): void;
}

export async function runCtl(argv: readonly string[], p: CtlProcess): Promise<number> {
  let cmd: ReturnType<typeof parseCtlArgs>;
  let options: ClientOptions;
  try {
    cmd = parseCtlArgs(argv, p.env);
    if (cmd.kind === 'help') {
      p.stdout(cmd.verb !== undefined ? verbUsage(cmd.verb) : cmd.group !== undefined ? groupUsage(cmd.group) : ctlUsage());
      return 0;
    }
    options = clientOptions(cmd.global);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    const hint = err.verb !== undefined && (findVerb(err.verb) || Object.hasOwn(VERB_GROUPS, err.verb)) ? `teiplex ctl ${err.verb} --help` : 'teiplex ctl --help';
    p.stderr(`teiplex ctl: ${err.message}\nRun \`${hint}\` for usage.\n`);
    return 2;
  }
  const io: Io = {
    out: p.stdout,
    err: p.stderr,
    now: () => Date.now(),
    interrupt: p.interrupt,
    pause: (ms) =>
      new Promise((resolve) => {
        if (p.interrupt.aborted) return resolve(false);
        const t = setTimeout(() => (p.interrupt.removeEventListener('abort', stop), resolve(true)), ms);
        const stop = (): void => (clearTimeout(t), resolve(false));
        p.interrupt.addEventListener('abort', stop, { once: true });
      }),
  };
  if (cmd.verb.name === 'completion') {
    p.stdout(bashCompletion());
    return 0;
  }
  if ((cmd.verb.name === 'logs' && cmd.flags.follow === true) || cmd.flags.wait === true) p.catchInterrupt();
  const client = cmd.verb.name.startsWith('batch ') ? new BatchClient(options) : new AdminClient(options);
  try {
    return await (client instanceof BatchClient ? executeBatch(cmd, client, io) : execute(cmd, client, io));
  } catch (err) {
    if (err instanceof UsageError) {
      p.stderr(`teiplex ctl: ${err.message}\nRun \`teiplex ctl ${cmd.verb.name} --help\` for usage.\n`);
      return 2;
    }
    p.stderr(`teiplex ctl: ${cmd.verb.name}${cmd.names.length === 1 ? ` ${cmd.names[0]}` : ''}: ${describeFailure(err, cmd.global.url, client instanceof BatchClient ? 'data' : 'admin')}\n`);
    return 1;
  } finally {
    await client.close().catch(() => undefined);
  }
}

/** The client's options from the global flags; a certificate file that cannot be read is a usage error naming it. */
function clientOptions(g: GlobalOptions): ClientOptions {
  const read = (flag: string, file: string | undefined): Buffer | undefined => {
    if (file === undefined) return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      throw new UsageError(`--${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const ca = read('cacert', g.cacert);
  const cert = read('cert', g.cert);
  const key = read('key', g.key);
  const tls = ca || cert || key ? { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) } : undefined;
  // retry: GETs only (the client never retries a call that changes something).
  return { url: g.url, ...(g.apiKey !== undefined ? { apiKey: g.apiKey } : {}), ...(tls ? { tls } : {}), timeoutMs: g.timeoutMs };
}
