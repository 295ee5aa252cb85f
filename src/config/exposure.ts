/**
 * Where the manager listens, and whether that is safe without credentials: the REST admin API
 * can start any program the config allows, so serving it on a non-loopback `listen_host` while it
 * needs neither an API key (`[[auth.api_keys]]` with `admin_requires_key`) nor a client
 * certificate (`[auth.mtls]`) takes `security.allow_remote_admin_without_auth = true`, and logs a
 * warning at every boot (docs/security.md).
 */
import { isIP } from 'node:net';
import type { Config } from './config.js';

/** `localhost`, 127.0.0.0/8, ::1 (and their IPv4-mapped forms). Any other name or address is the network. */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || /^(0{1,4}:){7}0{0,3}1$/.test(h) || /^::ffff:127\./.test(h);
  return false;
}

/** The admin API asks every caller for a credential: a client certificate, or an admin API key. */
export function adminNeedsCredential(auth: Config['auth']): boolean {
  return auth.mtls !== undefined || (auth.api_keys.length > 0 && auth.admin_requires_key);
}

/** The admin API is open to anyone who reaches listen_host on the network. */
export function adminOpenToNetwork(c: Pick<Config, 'listen_host' | 'auth'>): boolean {
  return !isLoopbackHost(c.listen_host) && !adminNeedsCredential(c.auth);
}

/** Why this config may not start, or undefined. */
export function exposureRefusal(c: Pick<Config, 'listen_host' | 'auth' | 'security'>): string | undefined {
  if (!adminOpenToNetwork(c) || c.security.allow_remote_admin_without_auth) return undefined;
  return (
    `listen_host '${c.listen_host}' is not a loopback address and the admin API would need no credential: ` +
    'configure [[auth.api_keys]] with an admin key (admin_requires_key = true) or [auth.mtls], ' +
    'listen on 127.0.0.1, or set security.allow_remote_admin_without_auth = true in the config file'
  );
}

/** The warning logged at every boot of an opted-in, open manager, or undefined. */
export function exposureWarning(c: Pick<Config, 'listen_host' | 'auth' | 'security'>): string | undefined {
  if (!adminOpenToNetwork(c)) return undefined;
  return (
    `the REST admin API on ${c.listen_host} needs no credential (security.allow_remote_admin_without_auth = true): ` +
    'anyone who reaches this port can create, change and delete instances'
  );
}
