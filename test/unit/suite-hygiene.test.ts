/**
 * The suite keeps its own rules (test/helpers/suite-hygiene.ts): no sleep as synchronization, no
 * upper bound on how long something took, no error status checked without its documented code or
 * body, no loop without a bound. Each rule is shown firing on a doctored source, so the scan of
 * the real suite cannot pass by being blind.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { countByRule, type HygieneRule, scanSuite, scanTestSource } from '../helpers/suite-hygiene.js';

const rulesIn = (source: string): HygieneRule[] => scanTestSource('doctored.test.ts', source).filter((f) => f.exempt === undefined).map((f) => f.rule);

describe('suite hygiene', () => {
  test('the suite has no finding (exemptions carry a reason)', () => {
    const findings = scanSuite();
    const failing = findings.filter((f) => f.exempt === undefined);
    assert.deepEqual(
      failing.map((f) => `${f.file}:${f.line} ${f.rule}: ${f.text}`),
      [],
      'wait with until() / elapse() from test/helpers/wait.ts, assert what happened instead of how fast, check the error code next to the status',
    );
    for (const f of findings) assert.ok((f.exempt ?? 'x').length >= 10, `${f.file}:${f.line}: an exemption says why in a few words`);
    const counts = countByRule(findings);
    assert.ok(counts['sleep-as-sync'].exempt + counts['timing-assertion'].exempt <= 5, `few exemptions: ${JSON.stringify(counts)}`);
  });

  test('a fixed sleep is found, in both spellings, under any local name', () => {
    assert.deepEqual(rulesIn("import { setTimeout as nap } from 'node:timers/promises';\nawait nap(100);"), ['sleep-as-sync']);
    assert.deepEqual(rulesIn('await new Promise((r) => setTimeout(r, 50));'), ['sleep-as-sync']);
    assert.deepEqual(rulesIn("import { setTimeout } from 'node:timers/promises';\nawait setTimeout(5);"), ['sleep-as-sync']);
    assert.deepEqual(rulesIn("await until('ready', () => up);\nawait elapse(1000, 'past the idle timeout');"), []);
  });

  test('an upper bound on elapsed time is found; a lower bound and a size bound are not', () => {
    assert.deepEqual(rulesIn('assert.ok(Date.now() - t0 < 300);'), ['timing-assertion']);
    assert.deepEqual(rulesIn("assert.ok(performance.now() - t0 < 500, 'answered at once');"), ['timing-assertion']);
    assert.deepEqual(rulesIn('assert.ok(health.slowestMs < 1000, `slow`);'), ['timing-assertion']);
    assert.deepEqual(rulesIn('assert.ok(took < 10_000, `took`);'), ['timing-assertion']);
    assert.deepEqual(rulesIn('assert.ok(Date.now() - t0 >= 250);'), []);
    assert.deepEqual(rulesIn('assert.ok(bomb.length < 64 * 1024);'), []);
  });

  test('an error status without its code is found; with the code next to it, it is not', () => {
    assert.deepEqual(rulesIn('assert.equal(r.status, 409);\nassert.ok(true);'), ['status-only']);
    assert.deepEqual(rulesIn('assert.equal((await get(x)).statusCode, 401, JSON.stringify(r.body));'), ['status-only']);
    assert.deepEqual(rulesIn("assert.equal(r.status, 409);\nassert.equal(r.body.code, 'ALREADY_RUNNING');"), []);
    assert.deepEqual(rulesIn('assert.equal(r.status, 200);'), []);
  });

  test('a loop with no bound is found; a bounded one is not', () => {
    assert.deepEqual(rulesIn('while (!done) await tick();\n\n\n'), ['unbounded-loop']);
    assert.deepEqual(rulesIn('while (!done && Date.now() < end) await tick();'), []);
    assert.deepEqual(rulesIn('for (let i = 0; i < 10 && !done; i++) await tick();'), []);
    assert.deepEqual(rulesIn('while (v >= 0x80) {\n  out.push(v & 0x7f);\n  v >>>= 7;\n}'), []);
  });

  test('a reasoned exemption is listed, not failed', () => {
    const [f] = scanTestSource('x.test.ts', 'await new Promise((r) => setTimeout(r, 5)); // hygiene: the subject is a timer wheel tick');
    assert.equal(f?.exempt, 'the subject is a timer wheel tick');
  });
});
