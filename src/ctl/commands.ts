/**
 * What each verb of `teiplex ctl` does: the AdminClient's calls (src/client) and how their answers
 * are printed (`-o table`: views.ts; `-o json`: the manager's answer as it came; `-o name`: one
 * name a line). Verbs over several names try each in turn and print every failure; the exit code
 * is 1 if any failed. `--wait` polls the instance until it runs (or fails, or --timeout runs out);
 * `logs -f` polls GET /instances/{name}/logs?start= from the last line seen.
 */
import type { AdminClient } from '../client/admin.js';
import type { CatalogModelInfo, InstanceInfo, LogRange } from '../client/types.js';
import type { FlagValues, GlobalOptions } from './args.js';
import { intValue } from './args.js';
import { createSpec } from './create-spec.js';
import { describeFailure } from './failure.js';
import type { VerbDef } from './verbs.js';
import { gpusTable, instanceDetail, instancesTable, memoryTable, modelLine, modelsTable, reloadReport, replicaFootprints } from './views.js';

export interface Io {
  out(text: string): void;
  err(text: string): void;
  now(): number;
  /** Resolves after `ms`, or early (false) when the command is being interrupted. */
  pause(ms: number): Promise<boolean>;
  /** Aborted when the command is being interrupted (Ctrl-C in `logs -f` and `--wait`): cancels a call in flight. */
  interrupt: AbortSignal;
}

export interface Command {
  verb: VerbDef;
  names: string[];
  flags: FlagValues;
  extra: string[];
  global: GlobalOptions;
}

/** How often `logs -f` and `--wait` ask the manager. */
export const POLL_MS = 500;

const json = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;

export async function execute(cmd: Command, client: AdminClient, io: Io): Promise<number> {
  const { verb, names, flags, global } = cmd;
  const out = global.output;
  const fail = (what: string, err: unknown): void => io.err(`teiplex ctl: ${what}${describeFailure(err, global.url)}\n`);
  /** Runs `call` for each name; prints the answers together (json) or one line each (table). */
  const each = async <T>(call: (name: string) => Promise<T>, line: (name: string, answer: T) => string): Promise<number> => {
    const answers: T[] = [];
    let failed = 0;
    for (const name of names) {
      try {
        const a = await call(name);
        answers.push(a);
        if (out !== 'json') io.out(`${line(name, a)}\n`);
      } catch (err) {
        failed++;
        fail(`${verb.name} ${name}: `, err);
      }
    }
    if (out === 'json' && answers.length > 0) io.out(json(names.length === 1 ? answers[0] : answers));
    return failed > 0 ? 1 : 0;
  };
  const waitRunning = async (name: string, first: InstanceInfo): Promise<InstanceInfo> => {
    if (flags.wait !== true) return first;
    const deadline = io.now() + global.timeoutMs;
    let i = first;
    for (;;) {
      if (i.status === 'running') return i;
      if (i.status === 'failed' || (i.status === 'stopped' && i.desired_state !== 'running')) {
        throw new Error(`instance '${name}' ${i.status} before it ran${i.last_error ? `: ${i.last_error}` : ''}`);
      }
      if (io.now() >= deadline)
        throw new Error(
          `instance '${name}' not running within --timeout (${global.timeoutMs / 1000} s): status ${i.status}${i.last_error ? `, last error: ${i.last_error}` : ''}`,
        );
      const interrupted = new Error(`interrupted while waiting for instance '${name}' (status ${i.status})`);
      if (!(await io.pause(POLL_MS))) throw interrupted;
      i = await client.instance(name, { signal: io.interrupt }).catch((err: unknown) => {
        throw io.interrupt.aborted ? interrupted : err;
      });
    }
  };
  const lifecycle = (action: 'startInstance' | 'stopInstance' | 'restartInstance' | 'deleteInstance', past: string) =>
    each(
      async (name) => {
        const i = await client[action](name);
        return action === 'startInstance' || action === 'restartInstance' ? waitRunning(name, i) : i;
      },
      (name, i) => `${name}: ${past} (status ${i.status})`,
    );

  switch (verb.name) {
    case 'ls': {
      const [instances, models] = await Promise.all([client.instances(), client.models()]);
      if (out === 'json') io.out(json(instances));
      else if (out === 'name') io.out(instances.map((i) => `${i.name}\n`).join(''));
      else io.out(`${instancesTable(instances, replicaFootprints(models))}\n`);
      return 0;
    }
    case 'get': {
      const i = await client.instance(names[0]);
      if (out === 'json') {
        io.out(json(i));
        return 0;
      }
      const footprint = i.model === null ? undefined : replicaFootprints([await client.model(i.model)]).get(i.name);
      io.out(`${instanceDetail(i, footprint, io.now())}\n`);
      return 0;
    }
    case 'create': {
      const start = flags['no-start'] !== true;
      const spec = createSpec(names[0], flags, cmd.extra);
      const created = await client.createInstance(spec, { start });
      const i = start ? await waitRunning(created.name, created) : created;
      io.out(out === 'json' ? json(i) : `${instancesTable([i], new Map())}\n`);
      return 0;
    }
    case 'start':
      return lifecycle('startInstance', 'started');
    case 'stop':
      return lifecycle('stopInstance', 'stopped');
    case 'restart':
      return lifecycle('restartInstance', 'restarted');
    case 'rm':
      return lifecycle('deleteInstance', 'deleted');
    case 'logs':
      return logs(cmd, client, io);
    case 'models': {
      if (names.length === 0) {
        const models = await client.models();
        if (out === 'json') io.out(json(models));
        else if (out === 'name') io.out(models.map((m) => `${m.name}\n`).join(''));
        else io.out(`${modelsTable(models, io.now())}\n`);
        return 0;
      }
      const found: CatalogModelInfo[] = [];
      let failed = 0;
      for (const name of names) {
        try {
          found.push(await client.model(name));
        } catch (err) {
          failed++;
          fail(`models ${name}: `, err);
        }
      }
      if (out === 'json') io.out(json(found));
      else if (out === 'name') io.out(found.map((m) => `${m.name}\n`).join(''));
      else if (found.length > 0) io.out(`${modelsTable(found, io.now())}\n`);
      return failed > 0 ? 1 : 0;
    }
    case 'load':
      return each(
        (name) => client.loadModel(name),
        (_, m) => modelLine('load', m),
      );
    case 'unload':
      return each(
        (name) => client.unloadModel(name),
        (_, m) => modelLine('unload', m),
      );
    case 'memory': {
      const answer = await client.memory();
      io.out(out === 'json' ? json(answer) : `${memoryTable(answer.devices)}\n`);
      return 0;
    }
    case 'reload': {
      const answer = await client.reload();
      io.out(out === 'json' ? json(answer) : `${reloadReport(answer)}\n`);
      return 0;
    }
    case 'gpus': {
      const answer = await client.gpus();
      io.out(out === 'json' ? json(answer) : `${gpusTable(answer)}\n`);
      return 0;
    }
    default:
      throw new Error(`verb '${verb.name}' has no implementation`);
  }
}

/**
 * `ctl logs NAME [--tail N] [-f]`: the manager's in-memory tail (its last N lines), then, with
 * -f, every new line as it comes, until interrupted. Line numbers are the manager's: a poll asks
 * from the last line seen; lines the manager dropped from its tail in between are reported as
 * missed on stderr; a log that starts over (the instance re-created) is followed from its start.
 */
async function logs(cmd: Command, client: AdminClient, io: Io): Promise<number> {
  const name = cmd.names[0];
  const out = cmd.global.output;
  const tail = typeof cmd.flags.tail === 'string' ? intValue('tail', cmd.flags.tail, 0, Number.MAX_SAFE_INTEGER, 'logs') : undefined;
  const first = await client.logs(name);
  const keep = tail === undefined ? first.lines.length : Math.min(tail, first.lines.length);
  const shown = { ...first, start: first.end - keep, lines: first.lines.slice(first.lines.length - keep) };
  const follow = cmd.flags.follow === true;
  const print = (r: typeof first): void => {
    if (out === 'json') io.out(follow ? `${JSON.stringify(r)}\n` : json(r));
    else io.out(r.lines.map((l) => `${l}\n`).join(''));
  };
  if (!follow || shown.lines.length > 0) print(shown);
  if (!follow) return 0;
  let next = first.end;
  for (;;) {
    if (!(await io.pause(POLL_MS))) return 0;
    let r: LogRange;
    let missed: number;
    try {
      r = await client.logs(name, { start: next }, { signal: io.interrupt });
      missed = r.start - next;
      if (r.total_lines < next) {
        io.err(`teiplex ctl: logs ${name}: the log started over (the instance was re-created); following it from its first line kept\n`);
        r = await client.logs(name, undefined, { signal: io.interrupt });
        missed = 0;
      }
    } catch (err) {
      if (io.interrupt.aborted) return 0;
      throw err;
    }
    if (missed > 0) io.err(`teiplex ctl: logs ${name}: ${missed} lines missed (gone from the manager's tail between two polls)\n`);
    if (r.lines.length > 0) print(r);
    next = r.end;
  }
}
