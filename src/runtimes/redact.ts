/**
 * Secrets kept out of logs and API answers: the values of secret flags (--api-key, --hf-token,
 * --hf-api-token, and any flag named like a token, secret or password) and of environment
 * variables named like one (HF_TOKEN, AWS_SECRET_ACCESS_KEY, DB_PASSWORD, ...) become `***`.
 * `spawnLine` is the child's command line as the manager logs it; `redactText` scrubs free text
 * (error messages, log lines) of the same forms: `--flag value`, `--flag=value`, `NAME=value`.
 */
import { flagName } from '../config/spec-policy.js';
import type { ChildCommand } from './child-command.js';

export const REDACTED = '***';

/** Flag names whose value is a secret: the TEI ones, and any name saying token/secret/password/key. */
const SECRET_FLAG = /^--(?:[a-z0-9-]*-)?(?:api-key|apikey|token|hf-api-token|secret|password|passwd|credentials?|private-key|access-key)(?:-[a-z0-9-]*)?$/i;
/** Environment names whose value is a secret. */
const SECRET_ENV = /(?:^|_)(?:TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|CREDENTIALS?|PRIVATE_KEY|ACCESS_KEY|AUTH)(?:_|$)/i;

export function isSecretFlag(flag: string): boolean {
  return SECRET_FLAG.test(flag);
}

export function isSecretEnv(name: string): boolean {
  return SECRET_ENV.test(name);
}

/** argv with the values of secret flags replaced. */
export function redactArgs(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const flag = a.startsWith('--') ? flagName(a) : undefined;
    if (flag === undefined || !isSecretFlag(flag)) out.push(a);
    else if (flag !== a) out.push(`${flag}=${REDACTED}`);
    else if (i + 1 < args.length && !args[i + 1].startsWith('--')) out.push(a, REDACTED), i++;
    else out.push(a);
  }
  return out;
}

/** An environment with the values of secret names replaced. */
export function redactEnv(env: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, isSecretEnv(k) ? REDACTED : v]));
}

/** The spawn line the manager logs: executable, argv and the spec's own env, secrets redacted. */
export function spawnLine(cmd: Pick<ChildCommand, 'command' | 'args'>, specEnv?: Readonly<Record<string, string>>): string {
  const env = Object.entries(redactEnv(specEnv ?? {})).map(([k, v]) => `${k}=${v}`);
  return `spawn: ${cmd.command} ${redactArgs(cmd.args).join(' ')}${env.length > 0 ? ` (env: ${env.join(' ')})` : ''}`;
}

const FLAG_IN_TEXT = /(--[A-Za-z0-9-]+)([= ])((?!--)(?:"[^"]*"|'[^']*'|[^\s"',;)]+))/g;
const ENV_IN_TEXT = /\b([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|'[^']*'|[^\s"',;)]+)/g;

/** Free text with the values of secret flags and secret `NAME=value` pairs replaced. */
export function redactText(text: string): string {
  return text
    .replace(FLAG_IN_TEXT, (m, flag: string, sep: string) => (isSecretFlag(flag) ? `${flag}${sep}${REDACTED}` : m))
    .replace(ENV_IN_TEXT, (m, name: string) => (isSecretEnv(name) ? `${name}=${REDACTED}` : m));
}
