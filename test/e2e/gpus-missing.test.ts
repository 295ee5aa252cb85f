/**
 * A host without nvidia-smi is told apart from a failing one (the supervisor asks the first again
 * only after a minute): real execFile of a path that does not exist, and of a script that fails.
 */
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { discoverGpus, nvidiaSmiMissing } from '../../src/supervisor/gpus.js';

test('no nvidia-smi binary: missing; a failing or a working one (canned scripts, no GPU here): not missing', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'teiplex-gpus-'));
  try {
    const none = await discoverGpus(path.join(dir, 'nvidia-smi'));
    assert.equal(nvidiaSmiMissing(none), true, JSON.stringify(none));
    const failing = path.join(dir, 'failing-smi');
    await writeFile(failing, '#!/bin/sh\necho "NVIDIA-SMI has failed" >&2\nexit 9\n');
    await chmod(failing, 0o755);
    const failed = await discoverGpus(failing);
    assert.equal(failed.gpus.length, 0);
    assert.match(failed.error ?? '', /Command failed/, JSON.stringify(failed));
    assert.equal(nvidiaSmiMissing(failed), false, JSON.stringify(failed));
    const canned = path.join(dir, 'canned-smi');
    await writeFile(canned, '#!/bin/sh\necho "0, GPU-1, Canned GPU, 81920, 100, 0"\n');
    await chmod(canned, 0o755);
    const one = await discoverGpus(canned);
    assert.deepEqual(one.gpus.map((g) => [g.index, g.name]), [[0, 'Canned GPU']]);
    assert.equal(nvidiaSmiMissing(one), false);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
