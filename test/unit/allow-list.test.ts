/**
 * The mTLS allow-lists (src/auth/allow-list.ts) on their own: the subject pattern syntax, Node's
 * subjectaltname string, and AllowList's verdict for a certificate. The certificates are plain
 * objects shaped like Node's PeerCertificate (what a TLS socket hands over), not real ones: the
 * e2e tests (test/e2e/auth*.test.ts) present real certificates.
 */
import assert from 'node:assert/strict';
import type { PeerCertificate } from 'node:tls';
import test from 'node:test';
import { AllowList, parseSubjectAltNames, parseSubjectPattern, subjectMatches, subjectText } from '../../src/auth/allow-list.js';
import { ConfigError } from '../../src/config/validate.js';

let serial = 0;
/** A PeerCertificate-shaped object: subject, SAN string, a raw body and a fingerprint (its own unless given; null: none). */
function cert(subject: Record<string, string | string[]>, subjectaltname?: string, fingerprint: string | null = `fp-${++serial}`): PeerCertificate {
  return { subject, subjectaltname, raw: Buffer.from('der'), fingerprint256: fingerprint ?? undefined } as unknown as PeerCertificate;
}

test('parseSubjectPattern: ATTR=value pairs, names lower-cased, values trimmed, backslash escapes', () => {
  assert.deepEqual(parseSubjectPattern('CN=client-a,O=acme'), [
    ['cn', 'client-a'],
    ['o', 'acme'],
  ]);
  assert.deepEqual(parseSubjectPattern(' CN = a b , OU=x=y'), [
    ['cn', 'a b'],
    ['ou', 'x=y'],
  ]);
  assert.deepEqual(parseSubjectPattern('O=Acme\\, Inc.,CN=c\\\\d'), [
    ['o', 'Acme, Inc.'],
    ['cn', 'c\\d'],
  ]);
  assert.deepEqual(parseSubjectPattern('C\\N=v'), [['cn', 'v']], 'an escape in the attribute name');
  assert.deepEqual(parseSubjectPattern('2.5.4.3=oid'), [['2.5.4.3', 'oid']], 'an OID as the attribute');
  assert.deepEqual(parseSubjectPattern('x-1=v'), [['x-1', 'v']]);
});

test('parseSubjectPattern: refuses what is not ATTR=value pairs, naming the problem', () => {
  const refuses = (text: string, message: string) => assert.throws(() => parseSubjectPattern(text), { message }, text);
  refuses('CN', "expected ATTR=value pairs separated by commas, got 'CN'");
  refuses('=v', "expected ATTR=value pairs separated by commas, got '=v'");
  refuses('CN=a,', "expected ATTR=value pairs separated by commas, got 'CN=a,'");
  refuses('', "expected ATTR=value pairs separated by commas, got ''");
  refuses('C N=a', "'C N' is not an attribute name (CN, O, OU, ... or an OID)");
  refuses('1CN=a', "'1CN' is not an attribute name (CN, O, OU, ... or an OID)");
  refuses('CN!=a', "'CN!' is not an attribute name (CN, O, OU, ... or an OID)");
  refuses('2.=a', "'2.' is not an attribute name (CN, O, OU, ... or an OID)");
  refuses('CN= ', "CN has an empty value in 'CN= '");
  refuses('CN=a\\', "'CN=a\\' ends with a lone backslash");
});

test('subjectMatches: every pair of the pattern present (multi-valued attributes: any value), names case-insensitive', () => {
  const p = parseSubjectPattern('CN=client-a,O=acme');
  assert.equal(subjectMatches(p, { CN: 'client-a', O: 'acme', OU: 'x' } as never), true);
  assert.equal(subjectMatches(p, { cn: 'client-a', o: 'acme' } as never), true, 'Node may give lower-case keys');
  assert.equal(subjectMatches(p, { CN: 'client-a' } as never), false, 'O missing');
  assert.equal(subjectMatches(p, { CN: 'client-a', O: 'Acme' } as never), false, 'values are case-sensitive');
  assert.equal(subjectMatches(p, { CN: ['other', 'client-a'], O: 'acme' } as never), true);
  assert.equal(subjectMatches(p, undefined), false);
  assert.equal(subjectMatches(p, null as never), false);
  assert.equal(subjectMatches([], undefined), true, 'an empty pattern asks nothing');
});

test('subjectText: the subject on one line, special characters escaped, multi-valued attributes repeated', () => {
  assert.equal(subjectText({ CN: 'client-b', O: 'other' } as never), 'CN=client-b,O=other');
  assert.equal(subjectText({ CN: 'a,b=c+d\\e' } as never), 'CN=a\\,b\\=c\\+d\\\\e');
  assert.equal(subjectText({ OU: ['x', 'y'] } as never), 'OU=x,OU=y');
  assert.equal(subjectText(undefined), '');
});

test("parseSubjectAltNames: Node's subjectaltname string as a list, JSON-quoted values unquoted", () => {
  assert.deepEqual(parseSubjectAltNames(undefined), []);
  assert.deepEqual(parseSubjectAltNames(''), []);
  assert.deepEqual(parseSubjectAltNames('DNS:a.example, URI:spiffe://x/y, IP Address:127.0.0.1'), [
    { type: 'DNS', value: 'a.example' },
    { type: 'URI', value: 'spiffe://x/y' },
    { type: 'IP Address', value: '127.0.0.1' },
  ]);
  assert.deepEqual(parseSubjectAltNames('URI:"a, b\\"c", DNS:d'), [
    { type: 'URI', value: 'a, b"c' },
    { type: 'DNS', value: 'd' },
  ]);
  assert.deepEqual(parseSubjectAltNames('DNS:"x\\q"'), [{ type: 'DNS', value: 'x\\q' }], 'not valid JSON: the text between the quotes');
  assert.deepEqual(parseSubjectAltNames('no colon here'), []);
  assert.deepEqual(parseSubjectAltNames('DNS:a, junk'), [{ type: 'DNS', value: 'a' }], 'a trailing entry without a type is dropped');
});

test('AllowList: inactive without lists (every certificate, even none, is let through); active with either list, even an empty one', () => {
  const open = new AllowList({});
  assert.equal(open.active, false);
  assert.deepEqual(open.check(undefined), { allowed: true });
  assert.equal(new AllowList({ allowed_subjects: [] }).active, true);
  assert.equal(new AllowList({ allowed_sans: [] }).active, true);
  assert.deepEqual(new AllowList({ allowed_sans: [] }).check(undefined), { allowed: false, reason: 'no client certificate' });
  const noRaw = { subject: { CN: 'a' } } as unknown as PeerCertificate;
  assert.deepEqual(new AllowList({ allowed_subjects: ['CN=a'] }).check(noRaw), { allowed: false, reason: 'no client certificate' });
});

test('AllowList: a subject pattern or a SAN (DNS case-insensitive, other types exact, IPs by address) lets a certificate in', () => {
  const list = new AllowList({ allowed_subjects: ['CN=client-a,O=acme'], allowed_sans: ['Svc.Example', 'spiffe://t/ns/a', '10.0.0.7', '::1'] });
  assert.equal(list.check(cert({ CN: 'client-a', O: 'acme' })).allowed, true);
  assert.equal(list.check(cert({ CN: 'client-a' })).allowed, false);
  assert.equal(list.check(cert({ CN: 'x' }, 'DNS:svc.example')).allowed, true, 'DNS names compare case-insensitively');
  assert.equal(list.check(cert({ CN: 'x' }, 'URI:spiffe://t/ns/a')).allowed, true);
  assert.equal(list.check(cert({ CN: 'x' }, 'URI:SPIFFE://t/ns/a')).allowed, false, 'a URI compares exactly');
  assert.equal(list.check(cert({ CN: 'x' }, 'URI:svc.example')).allowed, false, 'a DNS entry is no URI: case counts');
  assert.equal(list.check(cert({ CN: 'x' }, 'URI:Svc.Example')).allowed, true, 'an entry as written matches any SAN type');
  assert.equal(list.check(cert({ CN: 'x' }, 'IP Address:10.0.0.7')).allowed, true);
  assert.equal(list.check(cert({ CN: 'x' }, 'IP Address:0:0:0:0:0:0:0:1')).allowed, true, 'IPv6 by address, not by text');
  assert.equal(list.check(cert({ CN: 'x' }, 'IP Address:10.0.0.8')).allowed, false);
  assert.equal(list.check(cert({ CN: 'x' }, 'DNS:10.0.0.7')).allowed, false, 'an IP entry does not match a DNS SAN');
  assert.equal(list.check(cert({ CN: 'x' }, 'IP Address:not-an-ip')).allowed, false);
  const noIps = new AllowList({ allowed_sans: ['a.example'] });
  assert.equal(noIps.check(cert({ CN: 'x' }, 'IP Address:0.0.0.0')).allowed, false, 'no IP entries: no IP SAN matches');
});

test('AllowList: a refusal names the subject and the SANs', () => {
  const list = new AllowList({ allowed_sans: ['a.example'] });
  assert.deepEqual(list.check(cert({ CN: 'client-b', O: 'other' }, 'DNS:b.example, IP Address:10.0.0.1')), {
    allowed: false,
    reason: "client certificate 'CN=client-b,O=other' (SANs DNS:b.example, IP Address:10.0.0.1) is not in auth.mtls.allowed_subjects or auth.mtls.allowed_sans",
  });
  assert.deepEqual(list.check(cert({ CN: 'c' })), {
    allowed: false,
    reason: "client certificate 'CN=c' (no SANs) is not in auth.mtls.allowed_subjects or auth.mtls.allowed_sans",
  });
});

test('AllowList: a bad subject pattern is a ConfigError naming where and which entry', () => {
  assert.throws(
    () => new AllowList({ allowed_subjects: ['CN=a', 'CN'] }, 'teiplex.toml'),
    (e: unknown) =>
      e instanceof ConfigError && e.message === "teiplex.toml: auth.mtls.allowed_subjects[1]: expected ATTR=value pairs separated by commas, got 'CN'",
  );
  assert.throws(() => new AllowList({ allowed_subjects: ['CN'] }), { message: /^config: auth\.mtls\.allowed_subjects\[0\]: / });
});

test('AllowList: a verdict is remembered by fingerprint; without a fingerprint it is decided each time', () => {
  const list = new AllowList({ allowed_sans: ['a.example'] });
  assert.equal(list.check(cert({ CN: 'x' }, 'DNS:a.example', 'same')).allowed, true);
  // Same fingerprint, different contents: the remembered verdict answers (a fingerprint names one certificate).
  assert.equal(list.check(cert({ CN: 'x' }, 'DNS:b.example', 'same')).allowed, true);
  assert.equal(list.check(cert({ CN: 'x' }, 'DNS:b.example', null)).allowed, false);
  assert.equal(list.check(cert({ CN: 'x' }, 'DNS:a.example', null)).allowed, true);
  assert.equal(list.check(cert({ CN: 'x' }, 'DNS:b.example', null)).allowed, false, 'nothing was remembered without a fingerprint');
  // The cache holds 1024 verdicts: 'same' and 1023 others; the next one starts it over.
  for (let i = 0; i < 1023; i++) list.check(cert({ CN: 'x' }, 'DNS:b.example'));
  assert.equal(list.check(cert({ CN: 'x' }, 'DNS:b.example', 'same')).allowed, true, 'still remembered with 1024 in the cache');
  list.check(cert({ CN: 'x' }, 'DNS:b.example'));
  assert.equal(list.check(cert({ CN: 'x' }, 'DNS:b.example', 'same')).allowed, false, 'the old verdict was dropped with the full cache');
});
