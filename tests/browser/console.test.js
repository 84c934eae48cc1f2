// Browser test of roam's web console (run by tests/integration/console.sh):
// Debian's chromium driven by playwright-core (web/node_modules).
//
// Environment: ROAM_URL, SESSION (a running session of alice's), ADMIN_TOKEN,
// ALICE_TOKEN, BOB_TOKEN, SHOTS (directory for screenshots), CHROMIUM,
// WEB_DIR; optional: OCR (tesseract), LAPTOP_URL + LAPTOP_TOKEN (a laptop
// daemon paired with the server, for take offline / take online).
// Prints "ok - ..." per check; exits 1 at the first failure.
'use strict';
const { createRequire } = require('module');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');

const env = (k, d) => process.env[k] || d;
const URL_ = env('ROAM_URL');
const SESSION = env('SESSION', 's1');
const SHOTS = env('SHOTS', fs.mkdtempSync(path.join(os.tmpdir(), 'roam-shots-')));
const WEB_DIR = env('WEB_DIR', path.join(__dirname, '..', '..', 'web'));
const { chromium } = createRequire(path.join(WEB_DIR, 'package.json'))('playwright-core');

let step = 0;
function ok(what) { console.log(`ok ${++step} - ${what}`); }
function fail(what) { throw new Error(what); }
function check(cond, what) { if (!cond) fail(what); ok(what); }

const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

async function newBrowser(viewport) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roam-chrome-'));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: env('CHROMIUM', '/usr/bin/chromium'), headless: true, viewport, args: LAUNCH_ARGS,
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  page.on('pageerror', (e) => console.log(`# page error: ${e.message}`));
  page.setDefaultTimeout(30000);
  return { ctx, page, close: async () => { await ctx.close(); fs.rmSync(dir, { recursive: true, force: true }); } };
}

async function login(page, base, token) {
  await page.goto(`${base}/`);
  await page.waitForSelector('#login-form', { state: 'visible' });
  await page.fill('#token', token);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#app', { state: 'visible' });
}

const row = (name) => `tr[data-session="${name}"]`;
async function waitState(page, name, state, timeout = 30000) {
  await page.waitForSelector(`${row(name)}[data-state="${state}"]`, { timeout });
}
async function press(page, name, action) {
  await page.click(`${row(name)} button[data-action="${action}"]:not([disabled])`);
}
async function resultText(page, re, timeout = 60000) {
  await page.waitForFunction((src) => {
    const r = document.querySelector('#result');
    return r && !r.hidden && !r.classList.contains('busy') && new RegExp(src).test(r.textContent);
  }, re.source, { timeout });
  return page.textContent('#result');
}

// A raw WebSocket handshake on the VNC route: the HTTP status it gets.
function upgradeStatus(base, name, token) {
  return new Promise((resolve, reject) => {
    const u = new URL(`${base}/v1/console/sessions/${name}/vnc?access_token=${encodeURIComponent(token)}`);
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

// Pixels of the noVNC canvas that are clearly lit (text on the dark console).
async function litPixels(page) {
  return page.evaluate(() => {
    const c = document.querySelector('#screen canvas');
    if (!c || !c.width) return -1;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 300) n++;
    return n;
  });
}

// The guest's screen as a PNG, inverted and scaled 2x (black on white reads
// better for OCR), straight from noVNC's framebuffer canvas.
async function screenPng(page, file) {
  const b64 = await page.evaluate(() => {
    const src = document.querySelector('#screen canvas');
    const c = document.createElement('canvas');
    c.width = src.width * 2;
    c.height = src.height * 2;
    const g = c.getContext('2d');
    g.filter = 'invert(1) grayscale(1)';
    g.imageSmoothingEnabled = false;
    g.drawImage(src, 0, 0, c.width, c.height);
    return c.toDataURL('image/png').split(',')[1];
  });
  fs.writeFileSync(file, Buffer.from(b64, 'base64'));
}

async function serverSide() {
  // ---- alice, 1280x800 -------------------------------------------------------
  const a = await newBrowser({ width: 1280, height: 800 });
  const p = a.page;
  await p.goto(`${URL_}/`);
  await p.waitForSelector('#login-form', { state: 'visible' });
  check(await p.isHidden('#app'), 'the console asks for a token first, showing no data');
  await p.fill('#token', 'roam_not-a-token');
  await p.click('#login-form button[type=submit]');
  await p.waitForFunction(() => /not accepted/.test(document.querySelector('#login-error').textContent));
  ok('a wrong token is refused with a message');
  await login(p, URL_, env('ALICE_TOKEN'));
  await waitState(p, SESSION, 'running');
  const cells = await p.$$eval(`${row(SESSION)} td`, (tds) => tds.map((t) => t.textContent.trim()));
  check(cells[1] === 'alice' && cells[2] === 'deb' && cells[3] === 'this server' && /^\d+$/.test(cells[5]),
    `alice sees her session with user, image, where it runs, epoch (${cells.slice(0, 6).join(' | ')})`);
  check(await p.evaluate(() => sessionStorage.getItem('roam.token') !== null), 'the token is kept in sessionStorage');
  // the running session's screen in the list (GET /v1/console/thumbnails/NAME, fetched with the token)
  await p.waitForFunction((sel) => {
    const i = document.querySelector(sel);
    return i && i.complete && i.naturalWidth >= 320;
  }, `${row(SESSION)} img.thumb`, { timeout: 30000 });
  ok('the session list shows the running session\'s screen (a thumbnail)');
  await p.screenshot({ path: path.join(SHOTS, 'sessions-1280.png') });

  // the live desktop through noVNC and roam's WebSocket route
  await press(p, SESSION, 'desktop');
  await p.waitForFunction(() => window.roamDesktop && window.roamDesktop.connected, null, { timeout: 30000 });
  ok('noVNC connects through /v1/console/sessions/NAME/vnc');
  await p.waitForFunction(() => {
    const c = document.querySelector('#screen canvas');
    return c && c.width >= 320;
  });
  let lit = -1;
  for (let i = 0; i < 40 && lit < 500; i++) {
    await p.waitForTimeout(250);
    lit = await litPixels(p);
  }
  check(lit >= 500, `the guest's screen is not blank (${lit} lit pixels)`);
  await p.screenshot({ path: path.join(SHOTS, 'desktop-1280.png') });
  const screen = path.join(SHOTS, 'guest-screen.png');
  await screenPng(p, screen);
  // SCREEN_TEXT: what the guest shows on its VGA console (the firmware's
  // banner, or "tick N" when the guest writes its ticks to tty0 too)
  const want = new RegExp(env('SCREEN_TEXT', 'SeaBIOS|Booting|tick'), 'i');
  if (process.env.OCR) {
    let text = '';
    for (let i = 0; i < 10 && !want.test(text); i++) {
      if (i) await p.waitForTimeout(1000);
      await screenPng(p, screen);
      text = execFileSync(process.env.OCR, [screen, '-', '--psm', '6'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    }
    const line = text.split('\n').map((l) => l.trim()).filter((l) => want.test(l)).pop() || text.trim().split('\n')[0];
    check(want.test(text), `the guest's console text is on the desktop (OCR: ${JSON.stringify(line)})`);
  }
  if (process.env.SCREEN_CHANGES) {
    const frame = () => p.evaluate(() => document.querySelector('#screen canvas').toDataURL());
    const f1 = await frame();
    let f2 = f1;
    for (let i = 0; i < 20 && f2 === f1; i++) {
      await p.waitForTimeout(500);
      f2 = await frame();
    }
    check(f2 !== f1, 'the desktop is live: the guest\'s screen changes between frames');
  }

  // actions, with the state coming back over the event stream
  await press(p, SESSION, 'pause');
  await waitState(p, SESSION, 'paused');
  await resultText(p, /pause done/);
  ok('Pause: the state turns to paused without a reload');
  await press(p, SESSION, 'resume');
  await waitState(p, SESSION, 'running');
  ok('Resume: running again');
  await press(p, SESSION, 'checkpoint');
  const ck = await resultText(p, /Checkpoint \d+ of/);
  await p.waitForFunction((sel) => document.querySelector(sel).textContent.trim() !== '–', `${row(SESSION)} td.checkpoint`);
  ok(`Checkpoint: ${ck.trim()}`);
  // a file that is no sync file: uploaded, refused with the check named, nothing changes
  const junk = path.join(SHOTS, 'not-a-sync-file.sync');
  fs.writeFileSync(junk, Buffer.alloc(4096, 7));
  check(await p.isVisible('#sync-form'), 'the server console offers to apply a sync file');
  await p.setInputFiles('#sync-file', junk);
  await p.click('#sync-apply');
  const refused = await resultText(p, /refused/);
  check(/bad magic/.test(refused), `Apply sync file: ${refused.trim()}`);
  check(await p.$(`${row(SESSION)}[data-state="running"]`) !== null, 'the refused sync file changed nothing');
  await p.screenshot({ path: path.join(SHOTS, 'sync-refused.png') });
  await press(p, SESSION, 'stop');
  await p.waitForSelector('#confirm[open]');
  await p.screenshot({ path: path.join(SHOTS, 'confirm-stop.png') });
  await p.click('#confirm button[value=cancel]');
  await p.waitForTimeout(1500);
  check(await p.$(`${row(SESSION)}[data-state="running"]`) !== null, 'Stop asks first; Cancel keeps it running');
  check(await p.$(`${row(SESSION)} button[data-action="move"]`) === null &&
    await p.$(`${row(SESSION)} button[data-action="reclaim"]`) === null, 'a user gets no move or reclaim buttons');

  // ---- bob sees nothing of alice's ------------------------------------------------
  const b = await newBrowser({ width: 1280, height: 800 });
  await login(b.page, URL_, env('BOB_TOKEN'));
  await b.page.waitForSelector('#no-sessions', { state: 'visible' });
  check(await b.page.$(row(SESSION)) === null, 'bob does not see alice\'s session');
  const bobWs = await b.page.evaluate(({ name, token }) => new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}/v1/console/sessions/${name}/vnc?access_token=${encodeURIComponent(token)}`);
    ws.onopen = () => resolve('open');
    ws.onclose = () => resolve('refused');
  }), { name: SESSION, token: env('BOB_TOKEN') });
  check(bobWs === 'refused', 'bob\'s browser cannot open alice\'s desktop');
  const bobThumb = await b.page.evaluate(async ({ name, token }) => (await fetch(`/v1/console/thumbnails/${name}`,
    { headers: { Authorization: `Bearer ${token}` } })).status, { name: SESSION, token: env('BOB_TOKEN') });
  check(bobThumb === 404, `bob cannot fetch the screen of alice's session (${bobThumb})`);
  check(await upgradeStatus(URL_, SESSION, env('BOB_TOKEN')) === 404, 'the VNC route answers bob 404');
  check(await upgradeStatus(URL_, SESSION, 'roam_bogus') === 401, 'the VNC route answers a bad token 401');
  const bobPause = await b.page.evaluate(async ({ name, token }) => (await fetch(`/v1/console/sessions/${name}/pause`, {
    method: 'POST', headers: { Authorization: `Bearer ${token}` },
  })).status, { name: SESSION, token: env('BOB_TOKEN') });
  check(bobPause === 404, 'bob cannot pause alice\'s session (404)');
  await b.close();

  // ---- phone width --------------------------------------------------------------
  const m = await newBrowser({ width: 390, height: 844 });
  await login(m.page, URL_, env('ALICE_TOKEN'));
  await waitState(m.page, SESSION, 'running');
  const overflow = await m.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await m.page.screenshot({ path: path.join(SHOTS, 'sessions-phone.png'), fullPage: true });
  check(overflow <= 1, `no horizontal scrolling at phone width (overflow ${overflow}px)`);
  const btn = await m.page.$eval(`${row(SESSION)} button[data-action="pause"]`, (e) => e.getBoundingClientRect().right);
  check(btn <= 390, 'the action buttons fit the phone screen');
  await m.close();

  // ---- admin: all sessions, images, hosts, stop and start -------------------------
  const ad = await newBrowser({ width: 1280, height: 800 });
  const q = ad.page;
  await login(q, URL_, env('ADMIN_TOKEN'));
  await waitState(q, SESSION, 'running');
  check(await q.$(`${row(SESSION)} button[data-action="move"]`) !== null, 'the admin sees alice\'s session, with Move');
  await q.click('nav a[data-tab=images]');
  await q.waitForSelector('tr[data-image="deb"]');
  const size = await q.textContent('tr[data-image="deb"] td:nth-child(2)');
  check(/MiB|GiB/.test(size), `Images: deb with its size (${size})`);
  await q.screenshot({ path: path.join(SHOTS, 'images-1280.png') });
  await q.click('nav a[data-tab=hosts]');
  check((await q.textContent('#host-role')) === 'server', 'Hosts: this daemon is a server');
  await q.click('nav a[data-tab=sessions]');
  await press(q, SESSION, 'stop');
  await q.click('#confirm-ok');
  await waitState(q, SESSION, 'stopped', 120000);
  await resultText(q, /stopped/);
  check(await q.$(`${row(SESSION)} button[data-action="desktop"]`) === null, 'Stop (confirmed): stopped, no desktop any more');
  // alice's page followed on its own (event stream)
  await waitState(p, SESSION, 'stopped', 15000);
  ok('alice\'s open console shows the stop without a reload');
  await press(q, SESSION, 'start');
  await waitState(q, SESSION, 'running', 60000);
  ok('Start: running again');
  await q.screenshot({ path: path.join(SHOTS, 'admin-1280.png') });
  await ad.close();
  await a.close();
}

async function laptopSide() {
  const LAPTOP = env('LAPTOP_URL');
  if (!LAPTOP) return;
  const l = await newBrowser({ width: 1280, height: 800 });
  const p = l.page;
  await login(p, LAPTOP, env('LAPTOP_TOKEN'));
  await p.click('nav a[data-tab=hosts]');
  await p.waitForSelector('#server-connected.yes', { timeout: 60000 });
  ok('laptop console: the server is connected');
  await p.screenshot({ path: path.join(SHOTS, 'laptop-hosts.png') });
  // the image is hoarded in the background; the Images tab shows the progress
  await p.click('nav a[data-tab=images]');
  await p.waitForSelector('tr[data-hoard="images/deb"]', { timeout: 60000 });
  await p.waitForFunction(() => {
    const r = document.querySelector('tr[data-hoard="images/deb"]');
    return r && r.children[2].textContent === 'done';
  }, null, { timeout: 180000 });
  await p.waitForSelector('tr[data-image="deb"]', { timeout: 10000 });
  ok(`laptop console: image deb hoarded (${(await p.textContent('tr[data-hoard="images/deb"] td:nth-child(4)')).trim()})`);
  await p.screenshot({ path: path.join(SHOTS, 'laptop-images.png') });
  await p.click('nav a[data-tab=sessions]');
  await p.waitForSelector(`${row(SESSION)} button[data-action="offline"]:not([disabled])`, { timeout: 120000 });
  await p.waitForFunction((sel) => !/no pre-copy/.test(document.querySelector(sel).textContent), `${row(SESSION)} td.readiness`, { timeout: 120000 });
  const ready = await p.textContent(`${row(SESSION)} td.readiness`);
  ok(`laptop console: the server's session with its readiness (${ready.trim()})`);
  await p.screenshot({ path: path.join(SHOTS, 'laptop-before.png') });
  await press(p, SESSION, 'offline');
  const res = await resultText(p, /offline on this laptop|failed/, 180000);
  check(/offline on this laptop/.test(res), `Take offline: ${res.trim()}`);
  await p.waitForFunction((sel) => {
    const r = document.querySelector(sel);
    return r && r.dataset.state === 'running' && r.querySelector('td.owner').textContent === 'this laptop';
  }, row(SESSION), { timeout: 60000 });
  ok('the session runs on this laptop now');
  await p.screenshot({ path: path.join(SHOTS, 'laptop-offline.png') });
  // the server's console shows it away, held by the laptop
  const s = await newBrowser({ width: 1280, height: 800 });
  await login(s.page, URL_, env('ADMIN_TOKEN'));
  await waitState(s.page, SESSION, 'away');
  const owner = await s.page.textContent(`${row(SESSION)} td.owner`);
  check(/laptop 'lt1' \(id [0-9a-f]{12}…\)/.test(owner), `the server's console: away, held by ${owner}`);
  await press(p, SESSION, 'online');
  const back = await resultText(p, /back on the server|failed/, 180000);
  check(/back on the server/.test(back), `Take online: ${back.trim()}`);
  await waitState(s.page, SESSION, 'running', 60000);
  ok('the server\'s console shows it running there again');
  await s.page.screenshot({ path: path.join(SHOTS, 'server-after-online.png') });
  await s.close();
  await l.close();
}

(async () => {
  await serverSide();
  await laptopSide();
  console.log(`# screenshots in ${SHOTS}`);
})().catch((e) => {
  console.log(`not ok ${++step} - ${e.message}`);
  console.log(`# screenshots in ${SHOTS}`);
  process.exit(1);
});
