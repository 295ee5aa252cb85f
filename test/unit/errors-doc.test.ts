/**
 * docs/errors.md is the error table's documentation and must stay true: every code in ERROR_CODES
 * (src/common/errors.ts) has a row, no row names a code that does not exist, and each row's HTTP
 * status, gRPC status, TEI error_type, OpenAI type and Retry-After are the table's. The README and
 * docs/architecture.md link the page.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { ERROR_CODES, errorCodeInfo, type ErrorCode } from '../../src/common/errors.js';
import { projectPath } from '../../src/common/paths.js';

interface DocRow {
  http: string;
  grpc: string;
  teiType: string;
  openaiType: string;
  retryAfter: string;
}

/** The rows between `<!-- codes:begin -->` and `<!-- codes:end -->`, by code; a code listed twice fails. */
export function readCodeTable(markdown: string): Map<string, DocRow> {
  const begin = markdown.indexOf('<!-- codes:begin -->');
  const end = markdown.indexOf('<!-- codes:end -->');
  assert.ok(begin >= 0 && end > begin, 'docs/errors.md has no code table between <!-- codes:begin --> and <!-- codes:end -->');
  const rows = new Map<string, DocRow>();
  for (const line of markdown.slice(begin, end).split('\n')) {
    const m = /^\|\s*`([A-Z_]+)`\s*\|/.exec(line);
    if (m === null) continue;
    const cells = line.split('|').slice(2).map((c) => c.trim().replace(/^`|`$/g, ''));
    assert.ok(!rows.has(m[1]), `docs/errors.md lists ${m[1]} twice`);
    rows.set(m[1], { http: cells[0], grpc: cells[1], teiType: cells[2], openaiType: cells[3], retryAfter: cells[4] });
  }
  return rows;
}

const doc = readFileSync(projectPath('docs/errors.md'), 'utf8');

describe('docs/errors.md and the error table', () => {
  const rows = readCodeTable(doc);
  const codes = Object.keys(ERROR_CODES) as ErrorCode[];

  test('every code has a row, and every row is a code', () => {
    assert.deepEqual(
      codes.filter((c) => !rows.has(c)),
      [],
      'codes in src/common/errors.ts missing from docs/errors.md',
    );
    assert.deepEqual(
      [...rows.keys()].filter((c) => !Object.hasOwn(ERROR_CODES, c)),
      [],
      'docs/errors.md lists codes that src/common/errors.ts does not have',
    );
  });

  test("each row's statuses, types and Retry-After are the table's", () => {
    for (const code of codes) {
      const row = rows.get(code);
      if (row === undefined) continue;
      const info = errorCodeInfo(code);
      assert.deepEqual(
        row,
        { http: String(info.http), grpc: GrpcStatus[info.grpc], teiType: info.teiType, openaiType: info.openaiType, retryAfter: info.retryAfterSecs === undefined ? '' : String(info.retryAfterSecs) },
        `docs/errors.md's row for ${code}`,
      );
    }
  });

  test('the reader can find it: README and docs/architecture.md link it', () => {
    assert.match(readFileSync(projectPath('README.md'), 'utf8'), /\(docs\/errors\.md\)/);
    assert.match(readFileSync(projectPath('docs/architecture.md'), 'utf8'), /\(errors\.md\)/);
  });

  test('the reader catches a drift: a missing code, an extra one and a wrong status are all seen', () => {
    const table = doc.slice(doc.indexOf('<!-- codes:begin -->'), doc.indexOf('<!-- codes:end -->') + '<!-- codes:end -->'.length);
    const dropped = readCodeTable(table.replace(/^\| `EMPTY` .*\n/m, ''));
    assert.equal(dropped.has('EMPTY'), false);
    const extra = readCodeTable(table.replace('<!-- codes:end -->', '| `NO_SUCH_CODE` | 400 | INVALID_ARGUMENT | `validation` | `invalid_request_error` | | |\n<!-- codes:end -->'));
    assert.equal(extra.has('NO_SUCH_CODE'), true);
    const wrong = readCodeTable(table.replace('| `MODEL_OVERLOADED` | 429 |', '| `MODEL_OVERLOADED` | 503 |'));
    assert.equal(wrong.get('MODEL_OVERLOADED')?.http, '503');
  });
});
