/**
 * The router's log, on stdout like text-embeddings-router: pino JSON lines with --json-output,
 * plain text lines otherwise. The ready line is one JSON object on one line in both modes, so the
 * manager and tests parse it the same way:
 *
 *   {"level":30,"time":...,"msg":"ready","grpc_port":3000,"http_port":8080,...}   (--json-output)
 *   {"msg":"ready","grpc_port":3000,"http_port":8080,...}                          (plain)
 */
import { pino, type Logger } from 'pino';

export type LogFields = Record<string, unknown>;

export interface RouterLog {
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** The machine-readable ready line: `{"msg":"ready", ...fields}` on one stdout line. */
  ready(fields: LogFields): void;
}

export interface RouterLogOptions {
  json: boolean;
  /** Bound to every line (e.g. the model id). */
  base?: LogFields;
  /** Where lines go; default stdout (fd 1, written synchronously so nothing is lost on exit). */
  write?: (line: string) => void;
}

function plainValue(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) ? JSON.stringify(v) : v;
  if (v instanceof Error) return JSON.stringify(v.message);
  return JSON.stringify(v) ?? String(v);
}

export function createRouterLog(opts: RouterLogOptions): RouterLog {
  const write = opts.write ?? ((line: string) => process.stdout.write(line));
  if (opts.json) {
    const logger: Logger = pino(
      { base: { pid: process.pid, ...opts.base }, timestamp: pino.stdTimeFunctions.isoTime },
      opts.write ? { write } : pino.destination({ dest: 1, sync: true }),
    );
    return {
      info: (msg, fields) => logger.info(fields ?? {}, msg),
      warn: (msg, fields) => logger.warn(fields ?? {}, msg),
      error: (msg, fields) => logger.error(fields ?? {}, msg),
      ready: (fields) => logger.info(fields, 'ready'),
    };
  }
  const line = (level: string, msg: string, fields?: LogFields): void => {
    const extra = fields ? Object.entries(fields).filter(([, v]) => v !== undefined) : [];
    const tail = extra.map(([k, v]) => ` ${k}=${plainValue(v)}`).join('');
    write(`${new Date().toISOString()} ${level.padEnd(5)} ${msg}${tail}\n`);
  };
  return {
    info: (msg, fields) => line('INFO', msg, fields),
    warn: (msg, fields) => line('WARN', msg, fields),
    error: (msg, fields) => line('ERROR', msg, fields),
    ready: (fields) => write(JSON.stringify({ msg: 'ready', ...fields }) + '\n'),
  };
}

/** A log that drops everything (tests, embedding the router in-process). */
export const silentLog: RouterLog = { info: () => undefined, warn: () => undefined, error: () => undefined, ready: () => undefined };
