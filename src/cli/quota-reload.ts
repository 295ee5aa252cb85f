/**
 * A config reload that also applies the API keys' quotas (`tokens_per_minute`,
 * `requests_per_minute`, `limits`) live: after the reloader applied the file (an invalid one
 * changes nothing, quotas included), the same file's keys reconfigure the quotas, and `auth` is
 * no longer reported as needing a restart when only quota fields changed in it.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Quotas } from '../auth/quotas.js';
import type { ReloadReport } from '../catalog/reload.js';
import { type AuthConfig, loadConfig } from '../config/config.js';

function withoutQuotas(auth: AuthConfig): unknown {
  return { ...auth, api_keys: auth.api_keys.map(({ tokens_per_minute: _t, requests_per_minute: _r, limits: _l, ...rest }) => rest) };
}

export function withQuotaReload(reload: () => Promise<ReloadReport>, path: string | undefined, boot: AuthConfig, quotas: Quotas, env: NodeJS.ProcessEnv = process.env): () => Promise<ReloadReport> {
  return async () => {
    const report = await reload();
    if (path === undefined) return report;
    const next = await loadConfig(path, env).catch(() => undefined);
    // The file turned invalid since the reloader read it: the quotas stay as they are.
    if (next === undefined) return report;
    quotas.configure(next.auth.api_keys);
    if (isDeepStrictEqual(withoutQuotas(next.auth), withoutQuotas(boot))) report.restart_required = report.restart_required.filter((k) => k !== 'auth');
    return report;
  };
}
