/**
 * src/metrics/child-resources.ts: CPU ticks from /proc/<pid>/stat (a command name with spaces and
 * parentheses), VmRSS from /proc/<pid>/status, the per-instance CPU total that only goes up across
 * a child's restart, and this process's own /proc entries read as a tree.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { statusRssBytes } from '../../src/catalog/footprint.js';
import { CpuTotals, USER_HZ, statCpuTicks, treeUsage } from '../../src/metrics/child-resources.js';

// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
const stat = (comm: string, utime: number, stime: number, cutime: number, cstime: number) =>
  `4242 (${comm}) S 1 4242 4242 0 -1 4194560 100 0 0 0 ${utime} ${stime} ${cutime} ${cstime} 20 0 3 0 123 456 789`;

describe('child resources from /proc', () => {
  test('CPU ticks: utime + stime, plus the reaped children for the leader; a command with ") " in it', () => {
    assert.equal(statCpuTicks(stat('node', 150, 50, 7, 3), false), 200);
    assert.equal(statCpuTicks(stat('node', 150, 50, 7, 3), true), 210);
    assert.equal(statCpuTicks(stat('odd) S 1 2 (name', 11, 22, 33, 44), true), 110);
    assert.throws(() => statCpuTicks('4242 (node) S 1', false), /field 14 is not a tick count/);
  });

  test('VmRSS in bytes; none (a zombie): 0', () => {
    assert.equal(statusRssBytes('Name:\tnode\nVmPeak:\t  999 kB\nVmRSS:\t   2048 kB\nThreads:\t7\n'), 2048 * 1024);
    assert.equal(statusRssBytes('Name:\tnode\nState:\tZ (zombie)\n'), 0);
  });

  test('the CPU total only goes up: a new child (pid) adds to the earlier ones; a lower reading keeps the higher one', () => {
    const t = new CpuTotals();
    assert.equal(t.observe('a', 100, 5), 5);
    assert.equal(t.observe('a', 100, 7), 7);
    assert.equal(t.observe('a', 100, 6), 7, 'a descendant exited unreaped: no drop');
    assert.equal(t.observe('a', 200, 1), 8, 'restarted: 7 of the first child + 1');
    assert.equal(t.total('a'), 8);
    assert.equal(t.observe('b', 300, 2), 2);
    t.retain(new Set(['b']));
    assert.equal(t.total('a'), undefined, 'a deleted instance is forgotten');
    assert.equal(t.total('b'), 2);
  });

  test("this process's tree: CPU seconds and resident bytes from its own /proc entries; a pid that is gone: undefined", async () => {
    const own = await treeUsage([process.pid]);
    assert.ok(own !== undefined);
    assert.ok(own.cpuSeconds > 0 && Number.isInteger(Math.round(own.cpuSeconds * USER_HZ)), `cpu ${own.cpuSeconds}`);
    const rss = process.memoryUsage().rss;
    assert.ok(own.rssBytes > rss / 2 && own.rssBytes < rss * 2, `rss ${own.rssBytes} vs ${rss}`);
    assert.equal(await treeUsage([2 ** 22 + 1]), undefined);
  });
});
