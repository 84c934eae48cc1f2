// Browser test of the console of a fleet member (run by
// tests/integration/fleet-sessions.sh inside one member's network namespace):
// Debian's chromium driven by playwright-core (web/node_modules).
//
// Environment: ROAM_URL (a member), ADMIN_TOKEN (its admin token), ALICE_TOKEN
// (a user token of that member's), HOSTS (the members, comma-separated),
// SESSIONS (name:member,... every session of the fleet and the member that
// runs it), REMOTE (a running session of alice's that another member runs),
// SHOTS, CHROMIUM, WEB_DIR. Prints "ok - ..." per check; exits 1 at the
// first failure.
'use strict';
const { createRequire } = require('module');
const fs = require('fs');
const os = require('os');
const path = require('path');

const env = (k, d) => process.env[k] || d;
const URL_ = env('ROAM_URL');
const SHOTS = env('SHOTS', fs.mkdtempSync(path.join(os.tmpdir(), 'roam-shots-')));
const WEB_DIR = env('WEB_DIR', path.join(__dirname, '..', '..', 'web'));
const { chromium } = createRequire(path.join(WEB_DIR, 'package.json'))('playwright-core');
const HOSTS = env('HOSTS', '').split(',').filter(Boolean);
const SESSIONS = env('SESSIONS', '').split(',').filter(Boolean).map((x) => x.split(':'));
const REMOTE = env('REMOTE');

let step = 0;
function ok(what) { console.log(`ok ${++step} - ${what}`); }
function check(cond, what) { if (!cond) throw new Error(what); ok(what); }

const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

async function newBrowser() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roam-chrome-'));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: env('CHROMIUM', '/usr/bin/chromium'), headless: true, viewport: { width: 1280, height: 800 },
    args: LAUNCH_ARGS,
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  page.on('pageerror', (e) => console.log(`# page error: ${e.message}`));
  page.setDefaultTimeout(30000);
  return { page, close: async () => { await ctx.close(); fs.rmSync(dir, { recursive: true, force: true }); } };
}

async function login(page, token) {
  await page.goto(`${URL_}/`);
  await page.waitForSelector('#login-form', { state: 'visible' });
  await page.fill('#token', token);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#app', { state: 'visible' });
}

const row = (name) => `tr[data-session="${name}"]`;

// The desktop of REMOTE through this member (the broker): noVNC connects and
// gets the guest's framebuffer from the member that runs it.
async function remoteDesktop(page, who) {
  // a second click when the first connection did not come up (what a user
  // does); the first one's status is printed for the log
  for (let attempt = 1; ; attempt++) {
    await page.click(`${row(REMOTE)} button[data-action="desktop"]`);
    try {
      await page.waitForFunction(() => window.roamDesktop && window.roamDesktop.connected, null, { timeout: 45000 });
      break;
    } catch (e) {
      const status = await page.textContent('#desktop-status').catch(() => '?');
      console.log(`# ${who}: attempt ${attempt} to open ${REMOTE}'s desktop: not connected after 45 s (status "${status}")`);
      if (attempt === 2) throw e;
      await page.click('#desktop-close');
    }
  }
  const remote = await page.evaluate(() => window.roamDesktop.remote);
  check(remote, `${who}: noVNC connects to ${REMOTE}'s desktop through /v1/fleet/sessions/NAME/vnc`);
  await page.waitForFunction(() => {
    const c = document.querySelector('#screen canvas');
    return c && c.width >= 320 && c.height >= 200;
  }, null, { timeout: 30000 });
  const size = await page.evaluate(() => { const c = document.querySelector('#screen canvas'); return `${c.width}x${c.height}`; });
  ok(`${who}: the guest's framebuffer (${size}) came from the member that runs it`);
  await page.click('#desktop-close');
}

(async () => {
  const b = await newBrowser();
  const p = b.page;
  await login(p, env('ADMIN_TOKEN'));

  // Hosts: every member with its capacity and load
  await p.click('nav a[data-tab="hosts"]');
  await p.waitForSelector('#fleet-box', { state: 'visible' });
  for (const h of HOSTS) {
    await p.waitForSelector(`#fleet-hosts tr[data-host="${h}"]`);
    const cores = Number(await p.textContent(`#fleet-hosts tr[data-host="${h}"] td.cores`));
    const ram = await p.textContent(`#fleet-hosts tr[data-host="${h}"] td.ram`);
    const load = await p.textContent(`#fleet-hosts tr[data-host="${h}"] td.load`);
    check(cores >= 1 && /[0-9.]+ (MiB|GiB|TiB)/.test(ram) && /per core/.test(load),
      `the Hosts page shows member ${h}: ${cores} cores, ${ram} RAM, load "${load.trim()}"`);
  }
  const self = await p.textContent('#fleet-hosts tbody');
  check(/\(this one\)/.test(self), 'the member the console talks to is marked');
  await p.screenshot({ path: path.join(SHOTS, 'fleet-hosts.png') });

  // Sessions: every session of the fleet, with the member that runs it
  await p.click('nav a[data-tab="sessions"]');
  for (const [name, host] of SESSIONS) {
    await p.waitForFunction(([sel, h]) => {
      const r = document.querySelector(sel);
      return r && r.dataset.host === h && r.querySelector('td.owner').textContent.includes(h);
    }, [row(name), host], { timeout: 30000 });
    ok(`session ${name}: runs on member ${host}`);
  }
  await p.screenshot({ path: path.join(SHOTS, 'fleet-sessions.png') });
  await remoteDesktop(p, 'admin');
  await p.screenshot({ path: path.join(SHOTS, 'fleet-desktop.png') });
  await b.close();

  // a user sees the fleet's sessions of theirs and opens their desktop through any member
  const u = await newBrowser();
  await login(u.page, env('ALICE_TOKEN'));
  await u.page.waitForSelector(`${row(REMOTE)} button[data-action="desktop"]`);
  ok(`alice sees ${REMOTE} through a member that does not run it`);
  await remoteDesktop(u.page, 'alice');
  await u.close();
  console.log(`# screenshots in ${SHOTS}`);
})().catch((e) => {
  console.log(`not ok ${++step} - ${e.message}`);
  console.log(`# screenshots in ${SHOTS}`);
  process.exit(1);
});
