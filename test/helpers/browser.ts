/**
 * Headless Chromium for the status page's tests: Debian's `chromium` (scripts/test-packages.sh
 * installs it; TEIPLEX_CHROMIUM points elsewhere), driven by playwright-core, and the folder the
 * screenshots go to (reports/screenshots/: test artifacts, ignored by git).
 */
import { mkdir } from 'node:fs/promises';
import { chromium, type Browser } from 'playwright-core';
import { projectPath } from '../../src/common/paths.js';

export const CHROMIUM = process.env.TEIPLEX_CHROMIUM ?? '/usr/bin/chromium';
export const SCREENSHOTS = projectPath('reports', 'screenshots');

export async function launchBrowser(): Promise<Browser> {
  await mkdir(SCREENSHOTS, { recursive: true });
  // --no-sandbox: tests may run as root (CI containers), where Chromium's sandbox refuses to start.
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
}
