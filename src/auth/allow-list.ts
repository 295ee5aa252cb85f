/**
 * The mTLS allow-lists (`auth.mtls.allowed_subjects`, `auth.mtls.allowed_sans`) and the check of a
 * peer certificate against them. The TLS handshake has already verified the chain to `client_ca`;
 * this decides which of those certificates may call.
 *
 * - `allowed_subjects` entries are `ATTR=value` pairs separated by commas, e.g.
 *   `CN=client-a,O=acme` (attribute names as OpenSSL's short names: CN, O, OU, C, ST, L, DC,
 *   emailAddress...; case-insensitive; values exact and case-sensitive; `\,` `\=` `\+` `\\` escape;
 *   spaces around names and values are ignored, an escaped one, `\ `, is kept).
 *   A certificate matches an entry when its subject has every listed attribute with that value;
 *   attributes the entry does not list are not looked at (`O=acme` admits every certificate of
 *   the CA whose subject has O=acme). Order does not matter.
 * - `allowed_sans` entries match a subject alternative name of the certificate exactly: a DNS name
 *   (case-insensitive), a URI (`spiffe://...`), an IP address (any spelling of the same address),
 *   or an e-mail address. No wildcards.
 * - A certificate is allowed when it matches an entry of either list. With neither list set,
 *   every certificate the CA signed is allowed (and no per-call check runs).
 */
import { BlockList, isIP } from 'node:net';
import type { PeerCertificate } from 'node:tls';
import type { MtlsConfig } from '../config/config.js';
import { ConfigError } from '../config/validate.js';

export type SubjectPattern = ReadonlyArray<readonly [attr: string, value: string]>;

/** `CN=client-a,O=acme` -> [['cn', 'client-a'], ['o', 'acme']] (attribute names lower-cased); throws on bad syntax. */
export function parseSubjectPattern(text: string): SubjectPattern {
  const pairs: Array<[string, string]> = [];
  let attr = '';
  let value = '';
  let inValue = false;
  // Escaped characters are kept as they are: `\ ` at either end of a value is a space of the value.
  let escapedAt = new Set<number>();
  const trimUnescaped = (v: string): string => {
    let s = 0;
    let e = v.length;
    while (s < e && /\s/.test(v[s]) && !escapedAt.has(s)) s++;
    while (e > s && /\s/.test(v[e - 1]) && !escapedAt.has(e - 1)) e--;
    return v.slice(s, e);
  };
  const finish = (): void => {
    const a = attr.trim();
    if (!inValue || a === '') throw new Error(`expected ATTR=value pairs separated by commas, got '${text}'`);
    if (!/^[A-Za-z][A-Za-z0-9-]*$|^\d+(\.\d+)+$/.test(a)) throw new Error(`'${a}' is not an attribute name (CN, O, OU, ... or an OID)`);
    const v = trimUnescaped(value);
    if (v === '') throw new Error(`${a} has an empty value in '${text}'`);
    pairs.push([a.toLowerCase(), v]);
    attr = '';
    value = '';
    inValue = false;
    escapedAt = new Set();
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '\\') {
      const next = text[++i];
      if (next === undefined) throw new Error(`'${text}' ends with a lone backslash`);
      if (inValue) {
        escapedAt.add(value.length);
        value += next;
      } else attr += next;
    } else if (ch === ',') {
      finish();
    } else if (ch === '=' && !inValue) {
      inValue = true;
    } else if (inValue) {
      value += ch;
    } else {
      attr += ch;
    }
  }
  finish();
  return pairs;
}

/** A certificate subject as Node gives it (multi-valued attributes as arrays), keys lower-cased. */
function subjectValues(subject: PeerCertificate['subject'] | undefined): Map<string, string[]> {
  const out = new Map<string, string[]>();
  if (subject === undefined || subject === null) return out;
  for (const [k, v] of Object.entries(subject as unknown as Record<string, string | string[]>)) {
    out.set(k.toLowerCase(), Array.isArray(v) ? v : [v]);
  }
  return out;
}

export function subjectMatches(pattern: SubjectPattern, subject: PeerCertificate['subject'] | undefined): boolean {
  const values = subjectValues(subject);
  return pattern.every(([attr, value]) => values.get(attr)?.includes(value) ?? false);
}

/** The subject as one line, `CN=client-b,O=other`, for messages. */
export function subjectText(subject: PeerCertificate['subject'] | undefined): string {
  const parts: string[] = [];
  for (const [k, vs] of Object.entries((subject ?? {}) as unknown as Record<string, string | string[]>)) {
    for (const v of Array.isArray(vs) ? vs : [vs]) parts.push(`${k}=${v.replace(/([,=+\\])/g, '\\$1')}`);
  }
  return parts.join(',');
}

export interface SubjectAltName {
  /** `DNS`, `URI`, `IP Address`, `email`, ... as Node names them. */
  type: string;
  value: string;
}

/**
 * Node's `subjectaltname` string (`DNS:a, URI:spiffe://x, IP Address:127.0.0.1`) as a list. A
 * value with a comma or quote in it is written by Node as a JSON string (`URI:"a,b"`).
 */
export function parseSubjectAltNames(text: string | undefined): SubjectAltName[] {
  const out: SubjectAltName[] = [];
  if (text === undefined || text === '') return out;
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const type = text.slice(i, colon).trim();
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      // A JSON string: find its closing quote (skip escaped characters).
      let j = colon + 2;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(text.slice(colon + 1, j + 1)) as string;
      } catch {
        value = text.slice(colon + 2, j);
      }
      next = text.indexOf(', ', j + 1);
    } else {
      next = text.indexOf(', ', colon + 1);
      value = text.slice(colon + 1, next < 0 ? text.length : next);
    }
    out.push({ type, value });
    if (next < 0) break;
    i = next + 2;
  }
  return out;
}

export interface Verdict {
  allowed: boolean;
  /** Why not (for the UNAUTHENTICATED / 401 message). */
  reason?: string;
}

/** The compiled allow-lists. */
export class AllowList {
  /** False when neither list is set: every certificate of the CA may call. */
  readonly active: boolean;
  private readonly subjects: SubjectPattern[];
  /** DNS names, lower-cased. */
  private readonly dnsNames = new Set<string>();
  /** Every non-IP entry as written (URI, e-mail and other SAN types match exactly). */
  private readonly exactNames = new Set<string>();
  private readonly ips = new BlockList();
  private hasIps = false;
  /** Verdicts by certificate fingerprint (bounded). */
  private readonly cache = new Map<string, Verdict>();

  constructor(mtls: Pick<MtlsConfig, 'allowed_subjects' | 'allowed_sans'>, where = 'config') {
    this.subjects = (mtls.allowed_subjects ?? []).map((s, i) => {
      try {
        return parseSubjectPattern(s);
      } catch (err) {
        throw new ConfigError(`${where}: auth.mtls.allowed_subjects[${i}]: ${(err as Error).message}`);
      }
    });
    for (const san of mtls.allowed_sans ?? []) {
      const family = isIP(san);
      if (family !== 0) {
        this.ips.addAddress(san, family === 6 ? 'ipv6' : 'ipv4');
        this.hasIps = true;
      } else {
        this.exactNames.add(san);
        this.dnsNames.add(san.toLowerCase());
      }
    }
    this.active = mtls.allowed_subjects !== undefined || mtls.allowed_sans !== undefined;
  }

  check(cert: PeerCertificate | undefined): Verdict {
    if (!this.active) return { allowed: true };
    if (cert === undefined || cert.raw === undefined) return { allowed: false, reason: 'no client certificate' };
    const key = cert.fingerprint256;
    const hit = key === undefined ? undefined : this.cache.get(key);
    if (hit !== undefined) return hit;
    const verdict = this.decide(cert);
    if (key !== undefined) {
      if (this.cache.size >= 1024) this.cache.clear();
      this.cache.set(key, verdict);
    }
    return verdict;
  }

  private decide(cert: PeerCertificate): Verdict {
    if (this.subjects.some((p) => subjectMatches(p, cert.subject))) return { allowed: true };
    const sans = parseSubjectAltNames(cert.subjectaltname);
    for (const san of sans) {
      if (san.type === 'IP Address') {
        const family = isIP(san.value);
        if (this.hasIps && family !== 0 && this.ips.check(san.value, family === 6 ? 'ipv6' : 'ipv4')) return { allowed: true };
      } else if (san.type === 'DNS' ? this.dnsNames.has(san.value.toLowerCase()) : this.exactNames.has(san.value)) {
        return { allowed: true };
      }
    }
    const sanText = sans.length === 0 ? 'no SANs' : `SANs ${sans.map((s) => `${s.type}:${s.value}`).join(', ')}`;
    return {
      allowed: false,
      reason: `client certificate '${subjectText(cert.subject)}' (${sanText}) is not in auth.mtls.allowed_subjects or auth.mtls.allowed_sans`,
    };
  }
}
