// Browser test of the console's desks (run by tests/integration/desk-ts.sh):
// Debian's chromium driven by playwright-core (web/node_modules).
//
// Environment: ROAM_URL (a server whose terminal server runs DESK_USER's
// desk), DESK_USER, USER_TOKEN (its user's), OTHER_TOKEN (another user's),
// SHOTS (directory for screenshots), CHROMIUM, WEB_DIR.
// Prints "ok - ..." per check; exits 1 at the first failure.
'use strict';
const { createRequire } = require('module');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');

const env = (k, d) => process.env[k] || d;
const URL_ = env('ROAM_URL');
const USER = env('DESK_USER', 'alice');
const SHOTS = env('SHOTS', fs.mkdtempSync(path.join(os.tmpdir(), 'roam-shots-')));
const WEB_DIR = env('WEB_DIR', path.join(__dirname, '..', '..', 'web'));
const { chromium } = createRequire(path.join(WEB_DIR, 'package.json'))('playwright-core');

let step = 0;
function ok(what) { console.log(`ok ${++step} - ${what}`); }
function check(cond, what) { if (!cond) throw new Error(what); ok(what); }

async function browse(token) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roam-chrome-'));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: env('CHROMIUM', '/usr/bin/chromium'), headless: true, viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  page.on('pageerror', (e) => console.log(`# page error: ${e.message}`));
  page.setDefaultTimeout(60000);
  await page.goto(`${URL_}/`);
  await page.waitForSelector('#login-form', { state: 'visible' });
  await page.fill('#token', token);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#app', { state: 'visible' });
  return { page, close: async () => { await ctx.close(); fs.rmSync(dir, { recursive: true, force: true }); } };
}

// A WebSocket handshake on a desk's display route: the HTTP status it gets.
function upgradeStatus(user, token) {
  return new Promise((resolve, reject) => {
    const u = new URL(`${URL_}/v1/console/desks/${user}/vnc?access_token=${encodeURIComponent(token)}`);
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname + u.search, headers: {
        Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
      },
    });
    req.on('upgrade', (res, sock) => { sock.destroy(); resolve(101); });
    req.on('response', (res) => { res.resume(); resolve(res.statusCode); });
    req.on('error', reject);
    req.end();
  });
}

async function main() {
  const row = `tr[data-desk="${USER}"]`;
  const u = await browse(env('USER_TOKEN'));
  const p = u.page;
  await p.waitForSelector(`${row}[data-state="running"]`);
  const cells = await p.$$eval(`${row} td`, (tds) => tds.map((t) => t.textContent.trim()));
  check(cells[1] === USER && cells[2] === 'running' && /^:\d+$/.test(cells[3]),
    `the console lists the desk under its terminal server (${cells.slice(0, 4).join(' | ')})`);
  await p.click(`${row} button[data-action="desk-desktop"]`);
  await p.waitForFunction(() => window.roamDesktop && window.roamDesktop.connected, null, { timeout: 60000 });
  ok('noVNC connects to the desk through /v1/console/desks/USER/vnc');
  // the desk's Xfce draws: the framebuffer is not one colour
  await p.waitForFunction(() => {
    const c = document.querySelector('#screen canvas');
    if (!c || c.width < 640) return false;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const seen = new Set();
    for (let i = 0; i < d.length && seen.size < 16; i += 4 * 97) seen.add(`${d[i]},${d[i + 1]},${d[i + 2]}`);
    return seen.size >= 16;
  }, null, { timeout: 60000 });
  const size = await p.evaluate(() => { const c = document.querySelector('#screen canvas'); return `${c.width}x${c.height}`; });
  check(size === '1280x800', `the desk's display is there, Xvnc's 1280x800 (${size})`);
  await p.screenshot({ path: path.join(SHOTS, 'desk.png') });
  await u.close();

  const o = await browse(env('OTHER_TOKEN'));
  await o.page.waitForTimeout(4000); // a refresh or two
  check(await o.page.$(row) === null, `another user's console does not list ${USER}'s desk`);
  await o.close();
  check(await upgradeStatus(USER, env('OTHER_TOKEN')) === 404, `another user's token cannot open ${USER}'s display (404)`);
  check(await upgradeStatus(USER, 'roam_not-a-token') === 401, 'a bad token cannot open it (401)');
}

main().then(() => process.exit(0), (e) => { console.log(`not ok - ${e.message}`); process.exit(1); });
