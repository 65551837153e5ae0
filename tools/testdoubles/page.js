#!/usr/bin/env node
// Drives Debian's Chromium through playwright-core for a Go test that works
// a page the way a person would (page.go): it types, clicks, waits for what
// the page shows and takes screenshots, one command at a time.
//
//   node page.js <url> <width> <height>
//
// It opens url at width×height, then reads one JSON command a line on stdin
// and answers each with one JSON line on stdout, {"id":n,"value":...} or
// {"id":n,"error":"..."}:
//   {"id":n,"op":"fill","selector":"...","value":"..."}   type into a field
//   {"id":n,"op":"click","selector":"..."}                 click an element
//   {"id":n,"op":"wait","expr":"...","timeout":ms}         until the JS expression is truthy
//   {"id":n,"op":"eval","expr":"..."}                      the expression's value
//   {"id":n,"op":"screenshot","path":"..."}                a PNG of the whole page
//   {"id":n,"op":"errors"}                                 page exceptions and console errors so far
// It stops when stdin ends. "wait" is the test's way to wait for a
// condition; its timeout only ends a page that never gets there.
// CHROMIUM_PATH points at another Chromium build; nothing is downloaded.
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');
const { withPage, run } = require('./chromium');

// asFunction turns an expression into a function returning its value.
function asFunction(expr) {
  return new Function(`return (${expr});`);
}

async function main() {
  const [url, w, h] = process.argv.slice(2);
  if (!url || !(Number(w) > 0) || !(Number(h) > 0)) throw new Error('usage: node page.js <url> <width> <height>');
  const answer = (rec) => process.stdout.write(JSON.stringify(rec) + '\n');
  await withPage('page-browser-', { viewport: { width: Number(w), height: Number(h) } }, async (page, errors) => {
    await page.goto(url, { waitUntil: 'load', timeout: 60000 });
    answer({ id: 0, value: 'loaded' });

    const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
    for await (const line of rl) {
      if (!line.trim()) continue;
      let cmd;
      try { cmd = JSON.parse(line); } catch (e) { answer({ id: -1, error: `not JSON: ${line}` }); continue; }
      try {
        let value = null;
        switch (cmd.op) {
          case 'fill': await page.fill(cmd.selector, cmd.value, { timeout: 30000 }); break;
          case 'click': await page.click(cmd.selector, { timeout: 30000 }); break;
          // Handed over as a function, the expression is not eval'ed by the
          // page, so the page's CSP (no 'unsafe-eval') stays as it is.
          case 'wait': await page.waitForFunction(asFunction(cmd.expr), null, { timeout: cmd.timeout || 30000, polling: 50 }); break;
          case 'eval': value = await page.evaluate(asFunction(cmd.expr)); break;
          case 'screenshot':
            fs.mkdirSync(path.dirname(path.resolve(cmd.path)), { recursive: true });
            await page.screenshot({ path: cmd.path, fullPage: true });
            break;
          case 'errors': value = errors.slice(); break;
          default: throw new Error(`unknown op ${cmd.op}`);
        }
        answer({ id: cmd.id, value });
      } catch (e) {
        answer({ id: cmd.id, error: String(e && e.message || e) });
      }
    }
  });
}

run('page.js', main);
