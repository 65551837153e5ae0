// What browser.js and page.js share: Debian's Chromium, headless, driven
// through playwright-core in a profile of its own. CHROMIUM_PATH points at
// another Chromium build and COLOR_SCHEME=dark renders pages in dark mode;
// nothing is downloaded (Playwright's own builds cannot be fetched here).
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

// withPage starts Chromium with the given context options (the viewport and
// the like) and calls fn(page, errors), errors gathering the page's
// exceptions and console errors as they come. The profile is a fresh one
// named by prefix, so nothing is cached from an earlier page version and no
// lock is shared with a concurrent test; it goes, with the browser, once fn
// is done.
async function withPage(prefix, options, fn) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)`);
  }
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ],
      locale: 'en-US',
      colorScheme: process.env.COLOR_SCHEME || 'light',
      timeout: 60000,
      ...options,
    });
    const page = context.pages()[0] || await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
    return await fn(page, errors);
  } finally {
    if (context) await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

// run runs the script's main; when it fails, it says why on stderr and
// exits 1.
function run(script, main) {
  main().catch((e) => {
    process.stderr.write(`${script}: ${e && e.stack || e}\n`);
    process.exit(1);
  });
}

module.exports = { withPage, run };
