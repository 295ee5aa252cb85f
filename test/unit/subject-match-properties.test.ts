/**
 * Properties of the mTLS allow-list's subject patterns and SAN parsing (src/auth/allow-list.ts),
 * fast-check with fixed seeds and bounded runs, against docs/security.md ("allowed_subjects",
 * "allowed_sans"): a pattern written from a certificate's subject (values escaped with `\`)
 * matches that subject; changing any one value breaks the match; attribute names match in any
 * case, order and unlisted attributes do not matter; spaces around names and values are ignored;
 * and the SAN list Node prints (values that are not "safe" written as JSON strings, as Node's
 * PrintAltName does) parses back to the same names.
 */
import assert from 'node:assert/strict';
import type { PeerCertificate } from 'node:tls';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseSubjectAltNames, parseSubjectPattern, subjectMatches } from '../../src/auth/allow-list.js';

const ATTRS = ['CN', 'O', 'OU', 'C', 'ST', 'L', 'DC', 'emailAddress', 'serialNumber', '2.5.4.97'];
/** Any characters, the special ones (, = + \ space) often; never empty or all spaces (an empty value is refused). */
const value = fc
  .array(fc.oneof(fc.constantFrom(',', '=', '+', '\\', ' ', 'a', 'é', '🙂', '"', '#'), fc.string({ minLength: 1, maxLength: 3 })), {
    minLength: 1,
    maxLength: 8,
  })
  .map((parts) => parts.join(''))
  .filter((v) => v.trim() !== '');
/** A subject as Node gives it: attribute -> value, or a list of values for a repeated attribute. */
const subject = fc
  .uniqueArray(fc.constantFrom(...ATTRS), { minLength: 1, maxLength: ATTRS.length })
  .chain((attrs) =>
    fc.tuple(
      ...attrs.map((a) =>
        fc.oneof({ weight: 4, arbitrary: value }, { weight: 1, arbitrary: fc.uniqueArray(value, { minLength: 2, maxLength: 3 }) }).map((v) => [a, v] as const),
      ),
    ),
  );
type Subject = ReadonlyArray<readonly [string, string | readonly string[]]>;
const asCert = (s: Subject) => Object.fromEntries(s) as unknown as PeerCertificate['subject'];

/** `\` before , = + \ and before a space at either end (so that the trimming of spaces around values keeps it). */
function escapeValue(v: string): string {
  const lead = v.length - v.trimStart().length;
  const trail = v.length - v.trimEnd().length;
  return v
    .split('')
    .map((ch, i) => (/[,=+\\]/.test(ch) || i < lead || i >= v.length - trail ? `\\${ch}` : ch))
    .join('');
}
function patternText(s: Subject, opts: { caseOf?: (a: string) => string; spaces?: boolean } = {}): string {
  const sp = opts.spaces ? '  ' : '';
  return s
    .flatMap(([a, vs]) => (typeof vs === 'string' ? [vs] : vs).map((v) => `${sp}${(opts.caseOf ?? ((x) => x))(a)}${sp}=${sp}${escapeValue(v)}${sp}`))
    .join(',');
}

test('a pattern written from a subject (values escaped) parses to its pairs and matches it', () => {
  fc.assert(
    fc.property(subject, (s) => {
      const p = parseSubjectPattern(patternText(s));
      const want = s.flatMap(([a, vs]) => (typeof vs === 'string' ? [vs] : vs).map((v) => [a.toLowerCase(), v]));
      assert.deepEqual(p, want);
      assert.equal(subjectMatches(p, asCert(s)), true);
    }),
    { seed: 6101, numRuns: 500 },
  );
});

test('changing any one value of the subject breaks the match (values are exact and case-sensitive)', () => {
  fc.assert(
    fc.property(
      subject.chain((s) => fc.tuple(fc.constant(s), fc.nat({ max: s.length - 1 }), value)),
      ([s, k, other]) => {
        const p = parseSubjectPattern(patternText(s));
        const [attr, vs] = s[k];
        const changed = typeof vs === 'string' ? (other === vs ? `${vs}x` : other) : [...vs.slice(1), vs.includes(other) ? `${vs[0]}x` : other];
        if (typeof vs === 'string' && vs.toUpperCase() !== vs) {
          const upper = s.map(([a, v]) => (a === attr ? ([a, vs.toUpperCase()] as const) : ([a, v] as const)));
          assert.equal(subjectMatches(p, asCert(upper)), false, 'another case is another value');
        }
        const broken = s.map(([a, v]) => (a === attr ? ([a, changed] as const) : ([a, v] as const)));
        assert.equal(subjectMatches(p, asCert(broken)), false, `${attr}: ${JSON.stringify(vs)} -> ${JSON.stringify(changed)}`);
        const without = s.filter(([a]) => a !== attr);
        assert.equal(subjectMatches(p, asCert(without)), false, `${attr} missing`);
      },
    ),
    { seed: 6102, numRuns: 500 },
  );
});

test('attribute names in any case, pairs in any order, spaces around names and values, attributes the pattern does not list: still a match', () => {
  fc.assert(
    fc.property(
      subject.chain((s) => fc.tuple(fc.constant(s), fc.shuffledSubarray([...s], { minLength: 1 }), fc.boolean(), fc.boolean())),
      ([s, listed, upper, spaces]) => {
        const p = parseSubjectPattern(patternText(listed, { caseOf: upper ? (a) => a.toUpperCase() : (a) => a.toLowerCase(), spaces }));
        assert.equal(subjectMatches(p, asCert(s)), true, patternText(listed));
      },
    ),
    { seed: 6103, numRuns: 500 },
  );
});

/** A SAN as Node's PrintAltName writes it: as is when "safe", else a JSON-compatible string with commas as \u002c. */
function nodeAltName(type: string, v: string): string {
  const safe = ![...v].some((ch) => ch === '"' || ch === ',' || ch === '\\' || ch === "'" || ch < ' ' || ch === '\u007f');
  if (safe) return `${type}:${v}`;
  let out = '"';
  for (const ch of v) {
    if (ch === '\\') out += '\\\\';
    else if (ch === '"') out += '\\"';
    else if ((ch >= ' ' && ch !== ',' && ch <= '~') || ch.codePointAt(0)! > 0x7f) out += ch;
    else out += `\\u${ch.codePointAt(0)!.toString(16).padStart(4, '0')}`;
  }
  return `${type}:${out}"`;
}

test("parseSubjectAltNames reads back every SAN list as Node prints it (unsafe values as JSON strings, ', ' between entries)", () => {
  const san = fc.record({
    type: fc.constantFrom('DNS', 'URI', 'email', 'IP Address', 'DirName', 'othername'),
    value: fc.oneof(
      fc.string({ maxLength: 12 }),
      fc.constantFrom('a,b', 'a, b', 'x"y', "it's", 'C:\\dir', 'spiffe://td/ns/a', '::1', 'a\tb', 'DNS:evil.com', 'x, DNS:evil.com'),
    ),
  });
  fc.assert(
    fc.property(fc.array(san, { maxLength: 6 }), (sans) => {
      const text = sans.map((s) => nodeAltName(s.type, s.value)).join(', ');
      assert.deepEqual(
        parseSubjectAltNames(text),
        sans.map((s) => ({ type: s.type, value: s.value })),
        text,
      );
    }),
    { seed: 6104, numRuns: 1000 },
  );
});
