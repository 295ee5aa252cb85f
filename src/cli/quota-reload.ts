/**
 * The live part of `[auth]` on a config reload (ConfigReloader's `liveAuth`): the API keys' quotas
 * (`tokens_per_minute`, `requests_per_minute`, `limits`) are applied to `quotas` from the file the
 * reloader just applied (an invalid one changes nothing, quotas included), and `auth` no longer
 * needs a restart when only quota fields changed in it.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Quotas } from '../auth/quotas.js';
import type { AuthConfig } from '../config/config.js';

function withoutQuotas(auth: AuthConfig): unknown {
  return { ...auth, api_keys: auth.api_keys.map(({ tokens_per_minute: _t, requests_per_minute: _r, limits: _l, ...rest }) => rest) };
}

/** @param boot the `[auth]` the manager runs with (the rest of it changes only by a restart) */
export function quotaReload(boot: AuthConfig, quotas: Quotas): (next: AuthConfig) => boolean {
  return (next) => {
    quotas.configure(next.api_keys);
    return isDeepStrictEqual(withoutQuotas(next), withoutQuotas(boot));
  };
}
