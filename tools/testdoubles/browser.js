#!/usr/bin/env node
// Drives Debian's Chromium through playwright-core to watch the tracking page
// the way a customer's phone would, for the Go tests (browser.go).
//
//   node browser.js <url> <screenshot.png> <timeout-ms>
//
// It opens the page at 390x844, records every change of body[data-stage] and
// of #drone-marker's data-lat/data-lon, waits until the page is done (its
// stage is terminal: Completed, or Cancelled/Failed, which never move on; or
// it says the delivery is unknown) or the timeout passes, saves a screenshot
// and stops. The timeout only ends a page that hangs: a test waits for what
// the page shows, never for time to pass.
//
// It prints one JSON object a line, each with an "event":
//   state   after every change the page makes to what is recorded:
//           {"event":"state","seq":n,"stage":"...","error":"...","push":"...",
//            "stages":[...],"positions":[{"lat":..,"lon":..,"at":..,"via":".."}],
//            "connections":[...]}
//   ready   once, as soon as the page has loaded and rendered its first
//           state (a stage, or an error); the same fields as state. A test
//           starts what the page is to watch (a flight) only after it.
//   result  last: {"event":"result","stages":[...],"positions":[...],
//           "finalStage":"...","connections":[...],"text":"...","errors":[...]}
// stage, error and push are body[data-stage], body[data-error] and
// body[data-push] (how the page is pushed to: sse, webpubsub, poll) at that
// moment; each position carries when it was shown (Date.now()) and
// body[data-via] then (push or poll: how its feed came);
// stages, positions and connections every value each took, in order;
// connections are the changes of body[data-connection] ("ok", "lost") and
// text is what the page finally says, for tests of its error states.
// COLOR_SCHEME=dark renders the page as a phone in dark mode would, and
// CHROMIUM_PATH points at another Chromium build.
// It never downloads a browser: Playwright's own builds cannot be fetched here.
'use strict';

const fs = require('fs');
const path = require('path');
const { withPage, run } = require('./chromium');

const TERMINAL = ['Completed', 'Cancelled', 'Failed'];

async function main() {
  const [url, screenshot, timeoutArg] = process.argv.slice(2);
  const timeout = Number(timeoutArg || 30000);
  if (!url || !screenshot || !(timeout > 0)) {
    throw new Error('usage: node browser.js <url> <screenshot.png> <timeout-ms>');
  }
  const phone = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
  await withPage('track-browser-', phone, async (page, errors) => {

    // Every change reaches this process at once, in order (seq), and is
    // printed as a state line for the test to wait on.
    const emit = (event, fields) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
    await page.exposeBinding('__trackChanged', (_source, rec) => emit('state', rec));

    // A MutationObserver sees every change, however fast the page polls; a
    // sampling loop here could miss a stage that lasts one poll.
    await page.addInitScript(() => {
      const rec = { seq: 0, stage: '', error: '', push: '', stages: [], positions: [], connections: [] };
      window.__trackRecord = rec;
      const look = () => {
        let changed = false;
        const body = document.body;
        const stage = body ? body.getAttribute('data-stage') || '' : '';
        if (stage && rec.stages[rec.stages.length - 1] !== stage) rec.stages.push(stage);
        const error = body ? body.getAttribute('data-error') || '' : '';
        if (stage !== rec.stage || error !== rec.error) {
          rec.stage = stage;
          rec.error = error;
          changed = true;
        }
        const push = body ? body.getAttribute('data-push') || '' : '';
        if (push !== rec.push) {
          rec.push = push;
          changed = true;
        }
        const conn = body ? body.getAttribute('data-connection') : null;
        if (conn && rec.connections[rec.connections.length - 1] !== conn) {
          rec.connections.push(conn);
          changed = true;
        }
        const m = document.getElementById('drone-marker');
        const lat = m && m.getAttribute('data-lat'), lon = m && m.getAttribute('data-lon');
        if (lat !== null && lon !== null) {
          const p = { lat: Number(lat), lon: Number(lon), at: Date.now(), via: (body && body.getAttribute('data-via')) || '' };
          const last = rec.positions[rec.positions.length - 1];
          if (!last || last.lat !== p.lat || last.lon !== p.lon) {
            rec.positions.push(p);
            changed = true;
          }
        }
        if (changed && window.__trackChanged) {
          rec.seq++;
          window.__trackChanged(JSON.parse(JSON.stringify(rec)));
        }
      };
      new MutationObserver(look).observe(document, {
        subtree: true, childList: true, attributes: true,
        attributeFilter: ['data-stage', 'data-error', 'data-connection', 'data-push', 'data-lat', 'data-lon'],
      });
    });

    await page.goto(url, { waitUntil: 'load', timeout });
    // Ready: the page has rendered what its first feed (or its failure) said.
    await page.waitForFunction(() => !!(document.body.getAttribute('data-stage') || document.body.getAttribute('data-error')),
      null, { timeout, polling: 50 });
    emit('ready', await page.evaluate(() => window.__trackRecord));
    try {
      // Done: a terminal stage, or the page has given up on an unknown id.
      await page.waitForFunction(
        (terminal) => terminal.includes(document.body.getAttribute('data-stage')) || !!document.body.getAttribute('data-error'),
        TERMINAL, { timeout, polling: 50 });
      // Let the last frame of the drone's glide and the countdown settle.
      await page.waitForTimeout(600);
    } catch (e) {
      if (!/Timeout/i.test(String(e && e.name)) && !/Timeout/i.test(String(e && e.message))) throw e;
    }
    const rec = await page.evaluate(() => window.__trackRecord);
    const finalStage = await page.evaluate(() => document.body.getAttribute('data-stage') || '');
    const text = await page.evaluate(() => document.body.innerText);
    fs.mkdirSync(path.dirname(path.resolve(screenshot)), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });
    emit('result', { stages: rec.stages, positions: rec.positions, finalStage, connections: rec.connections, text, errors });
  });
}

run('browser.js', main);
