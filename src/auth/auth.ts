/**
 * The manager's authentication, built once at startup from `config.auth` (before any child is
 * touched; every problem is a ConfigError naming the key or the file):
 * - mTLS material read from the PEM files and checked (key matches certificate, CA parses), and
 *   the allow-lists compiled;
 * - the API keys;
 * - which endpoints stay open (health, metrics, reflection/OpenAPI) and whether the admin API
 *   needs an admin key.
 * grpc-auth.ts and http-auth.ts apply it to the two listeners.
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import type { AuthConfig, MtlsConfig } from '../config/config.js';
import { ConfigError } from '../config/validate.js';
import { AllowList } from './allow-list.js';
import { ApiKeys } from './api-keys.js';
import { Quotas } from './quotas.js';

/** PEM bytes of `[auth.mtls]`. */
export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer;
}

export interface Mtls {
  readonly material: TlsMaterial;
  readonly allowList: AllowList;
}

export interface Auth {
  /** Undefined: plaintext listeners. */
  readonly mtls?: Mtls;
  readonly keys: ApiKeys;
  /** The keys' quotas (in memory, this process; a config reload reconfigures them). */
  readonly quotas: Quotas;
  readonly openHealth: boolean;
  readonly openMetrics: boolean;
  readonly openReflection: boolean;
  /** Keys are configured and admin_requires_key: admin routes need an `admin = true` key. */
  readonly adminNeedsKey: boolean;
  /** Something must be checked per call (allow-lists or keys): the interceptor and hook are installed. */
  readonly perCall: boolean;
  /** Things an operator should hear about at startup. */
  readonly warnings: readonly string[];
}

async function readPem(where: string, key: keyof Pick<MtlsConfig, 'server_cert' | 'server_key' | 'client_ca'>, file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new ConfigError(`${where}: auth.mtls.${key}: cannot read '${file}': ${(err as Error).message}`);
  }
}

export async function loadTlsMaterial(mtls: MtlsConfig, where = 'config'): Promise<TlsMaterial> {
  const [cert, key, ca] = await Promise.all([
    readPem(where, 'server_cert', mtls.server_cert),
    readPem(where, 'server_key', mtls.server_key),
    readPem(where, 'client_ca', mtls.client_ca),
  ]);
  try {
    new X509Certificate(cert);
  } catch (err) {
    throw new ConfigError(`${where}: auth.mtls.server_cert: '${mtls.server_cert}' is not a PEM certificate: ${(err as Error).message}`);
  }
  try {
    new X509Certificate(ca);
  } catch (err) {
    throw new ConfigError(`${where}: auth.mtls.client_ca: '${mtls.client_ca}' is not a PEM certificate: ${(err as Error).message}`);
  }
  try {
    createSecureContext({ cert, key, ca });
  } catch (err) {
    throw new ConfigError(
      `${where}: auth.mtls.server_key: '${mtls.server_key}' does not go with auth.mtls.server_cert '${mtls.server_cert}' (or is not a PEM private key): ${(err as Error).message}`,
    );
  }
  return { cert, key, ca };
}

/** Build the manager's Auth from the validated config; throws ConfigError. */
export async function loadAuth(auth: AuthConfig, where = 'config'): Promise<Auth> {
  const keys = new ApiKeys(auth.api_keys);
  let mtls: Mtls | undefined;
  if (auth.mtls !== undefined) {
    const allowList = new AllowList(auth.mtls, where);
    mtls = { material: await loadTlsMaterial(auth.mtls, where), allowList };
  }
  const adminNeedsKey = keys.enabled && auth.admin_requires_key;
  const warnings: string[] = [];
  if (adminNeedsKey && !keys.hasAdminKey) {
    warnings.push('auth.admin_requires_key is on and no key in auth.api_keys has admin = true: the REST admin API refuses every call');
  }
  if (keys.enabled && mtls === undefined) {
    warnings.push('API keys travel in plaintext: configure [auth.mtls] (or a TLS-terminating proxy) outside a trusted network');
  }
  return {
    mtls,
    keys,
    quotas: new Quotas(auth.api_keys),
    openHealth: auth.open_health,
    openMetrics: auth.open_metrics,
    openReflection: auth.open_reflection,
    adminNeedsKey,
    perCall: keys.enabled || (mtls?.allowList.active ?? false),
    warnings,
  };
}

/** No TLS, no keys (tests, and callers that build the servers without a config). */
export const NO_AUTH: Auth = {
  keys: new ApiKeys([]),
  quotas: new Quotas([]),
  openHealth: true,
  openMetrics: true,
  openReflection: true,
  adminNeedsKey: false,
  perCall: false,
  warnings: [],
};
