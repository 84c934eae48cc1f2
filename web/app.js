// roam console: plain JS (an ES module), no framework, no build step.
// Data: the daemon's HTTP API with "Authorization: Bearer" (fetch); live
// updates: GET /v1/events (server-sent events); desktop: noVNC through the
// daemon's WebSocket route. The two routes a browser opens without headers
// take the token as ?access_token= (web/README.md).

const TOKEN_KEY = 'roam.token';
const $ = (sel) => document.querySelector(sel);

const st = {
  token: sessionStorage.getItem(TOKEN_KEY),
  info: null,          // GET /v1/info
  sessions: [],        // from /v1/events (or GET /v1/sessions)
  readiness: {},       // name -> readiness (GET /v1/sessions, or the laptop's /v1/handoff)
  handoff: null,       // laptop: GET /v1/handoff
  images: [],
  hoards: null,
  tab: 'sessions',
  events: null,
  timers: [],
  busy: new Set(),     // "name/action" in flight
  desks: [],           // GET /v1/desks
  desktop: null,       // { name, rfb }
  thumbs: {},          // name -> { url (object URL of the PNG), at (ms) }
  fleet: null,         // a fleet member: GET /v1/fleet/hosts ({self, hosts, alive}), else null
  fleetSessions: [],   // a fleet member: GET /v1/sessions, every session of the fleet with its "host"
};

// ---- API ----------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const opts = { method, headers: { Authorization: `Bearer ${st.token}` } };
  if (body instanceof Blob) {
    opts.headers['Content-Type'] = 'application/octet-stream';
    opts.body = body;
  } else if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  if (resp.status === 401) {
    logout('The token was not accepted (expired or revoked?). Log in again.');
    throw new ApiError(401, 'not logged in');
  }
  const text = await resp.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!resp.ok) throw new ApiError(resp.status, (json && json.error) || `${resp.status} ${resp.statusText}`);
  return json;
}

const isLaptop = () => st.info && st.info.role === 'laptop';
const isAdmin = () => st.info && (st.info.token_role === 'admin' || st.info.token_role === 'host');

// ---- formatting ------------------------------------------------------------

function fmtBytes(n) {
  if (n === null || n === undefined) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(n < 10 ? 1 : 0) : n} ${u[i]}`;
}
function fmtAgo(unix) {
  if (!unix) return 'never';
  const s = Math.max(0, Math.round(Date.now() / 1000 - unix));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(unix * 1000).toLocaleString();
}
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
// a laptop is its key: its name is a label that two laptops may share, so the id goes with it
function laptopLabel(l) {
  return `laptop '${l.name}' (id ${l.id.slice(0, 12)}…)${l.revoked ? ', revoked' : ''}`;
}
function where(owner, laptop, s) {
  if (st.fleet && s && !s.here) {
    if (laptop) return laptopLabel(laptop);
    return s.host ? `member ${s.host}` : 'no member now (restarting elsewhere)';
  }
  if (st.fleet && owner === 'local') return `member ${st.fleet.self} (this one)`;
  if (owner === 'local') return isLaptop() ? 'this laptop' : 'this server';
  if (isLaptop() && st.handoff && owner === st.handoff.server) return 'the server';
  if (isLaptop() && st.handoff && st.handoff.laptop && owner === `laptop:${st.handoff.laptop.id}`) return 'this laptop';
  if (laptop) return laptopLabel(laptop);
  return owner;
}

// ---- result line -------------------------------------------------------------

// ---- sync files ----------------------------------------------------------------

// a laptop's take-online sync file ('roam online NAME --to-file'), uploaded to the server
async function applySyncFile(ev) {
  ev.preventDefault();
  const file = $('#sync-file').files[0];
  if (!file) return;
  const button = $('#sync-apply');
  button.disabled = true;
  showResult(`Applying ${file.name}…`, 'busy');
  try {
    const res = await api('POST', '/v1/sync-files', file);
    showResult(`Session "${res.session}" is back on this server (epoch ${res.epoch}, ${res.state}) from ${file.name}.`);
    $('#sync-form').reset();
    await refresh();
  } catch (e) {
    showResult(`Sync file ${file.name} refused: ${e.message}`, 'error');
  } finally {
    button.disabled = false;
  }
}

function showResult(text, kind = 'ok') {
  const r = $('#result');
  r.textContent = text;
  r.className = kind === 'ok' ? '' : kind;
  r.hidden = false;
}

// ---- confirmation ------------------------------------------------------------

function confirmDialog(text, { move = false, okLabel = 'OK', danger = false } = {}) {
  return new Promise((resolve) => {
    const d = $('#confirm');
    $('#confirm-text').textContent = text;
    $('#move-fields').hidden = !move;
    $('#move-url').required = move;
    const ok = $('#confirm-ok');
    ok.textContent = okLabel;
    ok.className = danger ? 'danger' : '';
    d.onclose = () => resolve(d.returnValue === 'ok'
      ? (move ? { url: $('#move-url').value.trim(), token: $('#move-token').value } : true)
      : null);
    d.returnValue = '';
    d.showModal();
  });
}

// ---- actions -------------------------------------------------------------------

const ACTIONS = {
  start: { label: 'Start' },
  pause: { label: 'Pause' },
  resume: { label: 'Resume' },
  checkpoint: { label: 'Checkpoint' },
  stop: { label: 'Stop', confirm: (n) => `Stop session "${n}"? The guest is powered off (unsaved work in it is lost).`, danger: true },
  move: { label: 'Move…', confirm: (n) => `Move session "${n}" to another server. It pauses briefly and then runs there.`, move: true, danger: true },
  reclaim: { label: 'Reclaim', confirm: (n) => `Reclaim session "${n}" from its holder? It restarts here from the latest checkpoint ${st.fleet ? 'the fleet' : 'this host'} has; work done since on the holder is not here.`, danger: true },
  offline: { label: 'Take offline', handoff: true },
  online: { label: 'Take online', handoff: true },
};

function describe(action, name, res) {
  switch (action) {
  case 'checkpoint':
    return `Checkpoint ${res.seq} of "${name}" taken (${res.powered_off ? 'powered off' : `paused ${res.pause_ms} ms`}, ${fmtBytes(res.new_bytes)} new).`;
  case 'stop': return `Session "${name}" stopped${res.forced ? ' (forced: the guest did not power off in time)' : ''}.`;
  case 'move': return `Session "${name}" moved to ${res.owner} (epoch ${res.epoch}, downtime ${res.downtime_ms} ms).`;
  case 'reclaim':
    if (res.host) return `Session "${name}" reclaimed from laptop ${res.lost_owner || '?'}: it runs on member ${res.host} (epoch ${res.epoch}).`;
    return `Session "${name}" reclaimed from ${res.lost_owner || 'its holder'} (epoch ${res.epoch}, checkpoint ${res.checkpoint_age_s} s old).`;
  case 'offline': return `Session "${name}" is offline on this laptop now (downtime ${res.downtime_ms} ms, ${fmtBytes(res.bytes_after_click)} after the click).`;
  case 'online': return `Session "${name}" is back on the server (downtime ${res.downtime_ms} ms).`;
  default: return `Session "${name}": ${action} done (${res.state}).`;
  }
}

async function runAction(name, action) {
  const a = ACTIONS[action];
  let body;
  if (a.confirm) {
    const ok = await confirmDialog(a.confirm(name), { move: a.move, okLabel: a.label.replace('…', ''), danger: a.danger });
    if (!ok) return;
    if (a.move) body = ok;
  }
  const key = `${name}/${action}`;
  st.busy.add(key);
  renderSessions();
  showResult(`${a.label.replace('…', '')} "${name}"…`, 'busy');
  try {
    const remote = sessionRows().find((r) => r.name === name && r.remote);
    const res = a.handoff
      ? await api('POST', `/v1/handoff/${action}`, { session: name })
      : await api('POST', `/v1/${remote ? 'fleet' : 'console'}/sessions/${encodeURIComponent(name)}/${action}`, body || {});
    showResult(describe(action, name, res || {}), 'ok');
  } catch (e) {
    if (e.status !== 401) showResult(`${a.label.replace('…', '')} "${name}" failed: ${e.message}`, 'error');
  } finally {
    st.busy.delete(key);
    refresh();
  }
}

// ---- sessions ----------------------------------------------------------------------

// The rows to show: this host's sessions; on a laptop also the server's ones
// that are not here (from /v1/handoff), which can be taken offline.
function sessionRows() {
  if (st.fleet) return fleetRows();
  const rows = st.sessions.map((s) => ({ ...s, here: true }));
  if (isLaptop() && st.handoff) {
    for (const t of st.handoff.sessions || []) {
      const local = rows.find((r) => r.name === t.name);
      if (local) { local.server = t; continue; }
      rows.push({
        name: t.name, user: t.user, image: '', state: t.server_state,
        owner: t.server_owner === 'local' ? st.handoff.server : t.server_owner,
        epoch: t.epoch, last_checkpoint: null, here: false, server: t,
      });
    }
  }
  return rows.sort((a, b) => a.name.localeCompare(b.name));
}

// A fleet member shows the whole fleet: every session with the member that
// runs it (GET /v1/sessions answers for the fleet there); the ones this
// member runs from its own event stream (live), the others as the members
// last said (every 3 s).
function fleetRows() {
  const rows = st.fleetSessions.map((f) => {
    const local = st.sessions.find((s) => s.name === f.name);
    if (f.host === st.fleet.self && local) return { ...local, here: true, host: f.host };
    const live = f.host && !f.laptop && (f.state === 'running' || f.state === 'paused');
    // remote: acted on through POST /v1/fleet/sessions/NAME/ACTION (a laptop's: reclaim)
    return { ...f, here: false, remote: !!f.host || !!f.laptop, held: !!f.laptop, desktop: live };
  });
  // this member's sessions the fleet has no record of yet
  for (const s of st.sessions) {
    if (!rows.some((r) => r.name === s.name) && s.owner === 'local') rows.push({ ...s, here: true });
  }
  return rows.sort((a, b) => a.name.localeCompare(b.name));
}

function actionsFor(s) {
  const acts = [];
  if (s.held) return isAdmin() ? ['reclaim'] : [];
  if (s.remote) {
    // on the member that runs it, through this one (POST /v1/fleet/sessions/NAME/ACTION)
    if (isAdmin() && (s.state === 'stopped' || s.state === 'created' || s.state === 'crashed')) acts.push('start');
    if (isAdmin() && (s.state === 'running' || s.state === 'paused')) acts.push('checkpoint', 'stop');
    return acts;
  }
  const local = s.here && s.owner === 'local';
  if (local) {
    if (s.state === 'created' || s.state === 'stopped' || s.state === 'crashed') acts.push('start');
    if (s.state === 'running') acts.push('pause');
    if (s.state === 'paused') acts.push('resume');
    if (s.state === 'running' || s.state === 'paused' || s.state === 'stopped' || s.state === 'created') acts.push('checkpoint');
    if (s.state === 'running' || s.state === 'paused' || s.state === 'crashed') acts.push('stop');
    if (!isLaptop() && isAdmin() && (s.state === 'running' || s.state === 'paused')) acts.push('move');
    if (isLaptop() && isAdmin() && st.handoff) acts.push('online');
  }
  if (isLaptop() && isAdmin() && s.server && s.server.server_owner === 'local' && !local) acts.push('offline');
  if (!isLaptop() && isAdmin() && s.here && s.state === 'away') acts.push('reclaim');
  return acts;
}

function readinessCell(s) {
  if (isLaptop() && s.here && s.owner === 'local') return el('span', { class: 'sub' }, 'offline: runs on this laptop');
  if (s.here && s.owner !== 'local' && !isLaptop()) {
    const since = s.laptop && s.laptop.since ? ` since ${new Date(s.laptop.since * 1000).toLocaleString()}` : '';
    return el('span', { class: 'sub', title: s.laptop ? s.laptop.id : s.owner }, `held by ${where(s.owner, s.laptop)}${since}`);
  }
  const r = (s.server && isLaptop()) ? s.server : st.readiness[s.name];
  if (!r || (!r.precopy_at && !r.remainder_bytes)) return el('span', { class: 'sub' }, 'no pre-copy yet');
  return el('span', {},
    el('span', { class: 'remainder' }, `${fmtBytes(r.remainder_bytes)} left`),
    el('br'),
    el('span', { class: 'sub predicted' }, `offline in ≈ ${Number(r.predicted_offline_s).toFixed(1)} s`),
    r.precopy_at ? el('span', { class: 'sub' }, ` · pre-copy ${fmtAgo(r.precopy_at)}`) : null);
}

// A picture of each running session's screen (GET /v1/console/thumbnails/NAME,
// with the token header like every fetch; the daemon keeps one per session for
// 10 s), fetched as a blob and shown through an object URL.
const THUMB_EVERY_MS = 10000;

async function refreshThumbs() {
  const live = new Set(st.sessions.filter((s) => s.desktop && s.owner === 'local').map((s) => s.name));
  for (const name of Object.keys(st.thumbs)) {
    if (!live.has(name)) { URL.revokeObjectURL(st.thumbs[name].url); delete st.thumbs[name]; }
  }
  await Promise.allSettled([...live].map(async (name) => {
    const t = st.thumbs[name];
    if (t && Date.now() - t.at < THUMB_EVERY_MS) return;
    const resp = await fetch(`/v1/console/thumbnails/${encodeURIComponent(name)}`, { headers: { Authorization: `Bearer ${st.token}` } });
    if (!resp.ok) return;
    const url = URL.createObjectURL(await resp.blob());
    if (st.thumbs[name]) URL.revokeObjectURL(st.thumbs[name].url);
    st.thumbs[name] = { url, at: Date.now() };
  }));
  for (const img of document.querySelectorAll('img.thumb[data-thumb]')) {
    const t = st.thumbs[img.dataset.thumb];
    if (t && img.src !== t.url) img.src = t.url;
  }
}

function thumbFor(s) {
  if (s.remote || !s.desktop || s.owner !== 'local') return null;
  const t = st.thumbs[s.name];
  return el('img', { class: 'thumb', 'data-thumb': s.name, alt: `screen of ${s.name}`, title: 'open the desktop',
    src: t ? t.url : '', onclick: () => openDesktop(s.name) });
}

function agentBadge(s) {
  if (!s.agent) return null;
  const a = s.agent;
  const text = a.state === 'answering' ? `agent ${a.ping_ms} ms` : `agent ${a.state}`;
  return el('span', { class: `sub agent agent-${a.state}`, title: a.error || '' }, text);
}

function renderSessions() {
  const tbody = $('#sessions tbody');
  const rows = sessionRows();
  tbody.replaceChildren(...rows.map((s) => {
    const acts = actionsFor(s).map((a) => el('button', {
      type: 'button', 'data-action': a,
      class: ACTIONS[a].danger ? 'danger' : (a === 'start' || a === 'resume' || ACTIONS[a].handoff ? '' : 'secondary'),
      disabled: st.busy.has(`${s.name}/${a}`) || [...st.busy].some((k) => k.startsWith(`${s.name}/`)),
      onclick: () => runAction(s.name, a),
    }, ACTIONS[a].label));
    if (s.desktop) {
      acts.unshift(el('button', { type: 'button', 'data-action': 'desktop', onclick: () => openDesktop(s.name, !!s.remote) }, 'Desktop'));
    }
    return el('tr', { 'data-session': s.name, 'data-state': s.state, 'data-host': s.host || null },
      el('td', { 'data-label': 'Session', class: 'name' }, el('strong', {}, s.name), thumbFor(s)),
      el('td', { 'data-label': 'User' }, s.user),
      el('td', { 'data-label': 'Image' }, s.image || '–'),
      el('td', { 'data-label': 'Runs on', class: 'owner', title: s.laptop ? `laptop id ${s.laptop.id}` : '' }, where(s.owner, s.laptop, s)),
      el('td', { 'data-label': 'State', class: `state state-${s.state}` }, s.state, s.agent ? el('br') : null, agentBadge(s)),
      el('td', { 'data-label': 'Epoch', class: 'epoch' }, s.epoch),
      el('td', { 'data-label': 'Last checkpoint', class: 'checkpoint' },
        s.last_checkpoint ? el('span', { class: 'mono', title: s.last_checkpoint }, s.last_checkpoint.slice(0, 12)) : '–',
        s.checkpoints ? el('span', { class: 'sub' }, ` (#${s.checkpoints})`) : null),
      el('td', { 'data-label': 'Offline readiness', class: 'readiness' }, readinessCell(s)),
      el('td', { 'data-label': 'Actions', class: 'actions' }, el('span', { class: 'buttons' }, acts)));
  }));
  $('#no-sessions').hidden = rows.length > 0;
}

// ---- desks (docs/desk.md): per terminal server, a user token sees its own ------------

function renderDesks() {
  const desks = (st.desks || []).slice().sort((a, b) => a.ts.localeCompare(b.ts) || a.user.localeCompare(b.user));
  $('#desks-box').hidden = desks.length === 0;
  $('#desks tbody').replaceChildren(...desks.map((d, i) => el('tr', { 'data-desk': d.user, 'data-state': d.state },
    // the terminal server's name once per group
    el('td', { 'data-label': 'Terminal server', class: 'ts' }, i > 0 && desks[i - 1].ts === d.ts ? '' : el('strong', {}, d.ts)),
    el('td', { 'data-label': 'User' }, d.user),
    el('td', { 'data-label': 'State', class: `state state-${d.state}` }, d.state,
      d.at ? el('span', { class: 'sub' }, ` at ${d.at}`) : null),
    el('td', { 'data-label': 'Display' }, d.state === 'running' ? `:${d.display}` : '–'),
    el('td', { 'data-label': 'Checkpoint' }, d.bytes ? fmtBytes(d.bytes) : '–'),
    el('td', { 'data-label': 'Actions', class: 'actions' }, d.state === 'running'
      ? el('button', { type: 'button', 'data-action': 'desk-desktop', onclick: () => openDesktop(d.user, false, 'desks') }, 'Desktop')
      : null))));
}

// ---- images ---------------------------------------------------------------------

function renderImages() {
  $('#images tbody').replaceChildren(...st.images.map((i) => el('tr', { 'data-image': i.name },
    el('td', { 'data-label': 'Image' }, el('strong', {}, i.name)),
    el('td', { 'data-label': 'Size' }, fmtBytes(i.size)),
    el('td', { 'data-label': 'Chunks' }, i.chunks ?? '–'),
    el('td', { 'data-label': 'Id', class: 'mono' }, i.id.slice(0, 16)))));
  $('#no-images').hidden = st.images.length > 0;
  const h = st.hoards || [];
  $('#hoards-box').hidden = !isLaptop() || !st.hoards;
  $('#hoards tbody').replaceChildren(...h.map((j) => {
    const pct = j.chunks_total ? Math.floor((100 * j.chunks_done) / j.chunks_total) : (j.state === 'done' ? 100 : 0);
    return el('tr', { 'data-hoard': j.ref },
      el('td', { 'data-label': 'Ref' }, j.ref),
      el('td', { 'data-label': 'From' }, j.url),
      el('td', { 'data-label': 'State' }, j.state),
      el('td', { 'data-label': 'Progress' }, el('progress', { max: 100, value: pct }), ` ${pct} %`,
        el('span', { class: 'sub' }, ` ${j.chunks_done}/${j.chunks_total} chunks, ${fmtBytes(j.wire_bytes)}`)),
      el('td', { 'data-label': 'Last error' }, j.last_error || ''));
  }));
}

// ---- hosts -----------------------------------------------------------------------

function renderHosts() {
  const i = st.info || {};
  const dl = (pairs) => pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]);
  $('#host-info').replaceChildren(...dl([
    ['This daemon', el('span', { id: 'host-role' }, i.role || '?')],
    ['Address', location.origin],
    ['Version', i.version || '?'],
    ['Logged in as', i.user ? `${i.user} (${i.token_role})` : i.token_role || '?'],
    // what clients pin (docs/sync-protocol.md, "TLS and pinning"): compare it
    // with the browser's view of the certificate
    ['TLS certificate', el('code', { id: 'host-fingerprint' }, i.tls_fingerprint || 'none (plain HTTP)')],
  ]));
  const f = st.fleet;
  $('#fleet-box').hidden = !f;
  if (f) {
    $('#fleet-hosts tbody').replaceChildren(...f.hosts.map((m) => {
      // load: the RAM given to its sessions of all it has, and its sessions per core
      const pct = m.ram_mib ? Math.round((100 * m.session_ram_mib) / m.ram_mib) : 0;
      return el('tr', { 'data-host': m.name },
        el('td', { 'data-label': 'Member' }, el('strong', {}, m.name), m.name === f.self ? el('span', { class: 'sub' }, ' (this one)') : null),
        el('td', { 'data-label': 'Address', class: 'mono' }, m.url),
        el('td', { 'data-label': 'Cores', class: 'cores' }, m.cores),
        el('td', { 'data-label': 'RAM', class: 'ram' }, fmtBytes(m.ram_mib * 1048576)),
        el('td', { 'data-label': 'Free RAM', class: 'free' }, fmtBytes(m.ram_free_mib * 1048576)),
        el('td', { 'data-label': 'Sessions', class: 'sessions' }, m.sessions),
        el('td', { 'data-label': 'Load', class: 'load' }, el('progress', { max: 100, value: pct }),
          el('span', { class: 'sub' }, ` ${fmtBytes(m.session_ram_mib * 1048576)} to sessions, ${(m.sessions / Math.max(m.cores, 1)).toFixed(1)} per core`)));
    }));
  }
  const h = st.handoff;
  $('#server-box').hidden = !isLaptop();
  if (isLaptop()) {
    $('#server-info').replaceChildren(...dl(h ? [
      ['Server', h.server],
      ['Connected', el('span', { id: 'server-connected', class: h.connected ? 'yes' : 'no' }, h.connected ? 'yes' : 'no')],
      ['Last contact', fmtAgo(h.last_contact)],
      ['This laptop', h.holder],
      ['Server certificate', el('code', { id: 'server-fingerprint' }, h.server_fingerprint || 'none (plain HTTP)')],
    ] : [['Server', isAdmin() ? 'not paired (serve with --server URL)' : 'visible to the laptop\'s admin token only']]));
  }
}

function render() {
  renderSessions();
  renderDesks();
  renderImages();
  renderHosts();
}

// ---- data ---------------------------------------------------------------------

async function refresh() {
  const jobs = [
    api('GET', '/v1/sessions').then((j) => {
      st.readiness = Object.fromEntries(j.sessions.map((s) => [s.name, s.readiness]));
      st.fleetSessions = st.fleet ? j.sessions : [];
      if (!st.events || st.events.readyState !== EventSource.OPEN) {
        st.sessions = j.sessions.map((s) => ({ ...s, desktop: s.desktop ?? (s.owner === 'local' && (s.state === 'running' || s.state === 'paused')) }));
      }
    }),
    api('GET', '/v1/console/images').then((j) => { st.images = j.images; }),
    api('GET', '/v1/desks').then((j) => { st.desks = j.desks; }, () => { st.desks = []; }),
  ];
  if (st.fleet) jobs.push(api('GET', '/v1/fleet/hosts').then((j) => { st.fleet = j; }, () => {}));
  if (isLaptop() && isAdmin()) {
    jobs.push(api('GET', '/v1/handoff').then((j) => { st.handoff = j; }, () => { st.handoff = null; }));
    jobs.push(api('GET', '/v1/hoards').then((j) => { st.hoards = j.hoards; }, () => { st.hoards = null; }));
  }
  await Promise.allSettled(jobs);
  render();
  refreshThumbs();
}

function connectEvents() {
  if (st.events) st.events.close();
  const es = new EventSource(`/v1/events?access_token=${encodeURIComponent(st.token)}`);
  st.events = es;
  es.addEventListener('sessions', (ev) => {
    st.sessions = JSON.parse(ev.data).sessions;
    $('#live').classList.remove('off');
    renderSessions();
  });
  es.onopen = () => { $('#live').classList.remove('off'); };
  es.onerror = () => { $('#live').classList.add('off'); };
}

// ---- desktop (noVNC) ------------------------------------------------------------

// noVNC's RFB class, its ES modules from this host (/novnc/). A browser keeps
// a module graph that failed to load (one of its ~30 files) as failed for
// its URLs, so a second and a third try load it under other URLs
// (/novnc/r2/..., /novnc/r3/...: the same files). Throws an Error that says
// why: not installed (404), or what the last try failed with.
let noVncClass = null;
async function loadNoVnc() {
  if (noVncClass) return noVncClass;
  let last = null;
  for (const prefix of ['/novnc/', '/novnc/r2/', '/novnc/r3/']) {
    try {
      noVncClass = (await import(`${prefix}core/rfb.js`)).default;
      return noVncClass;
    } catch (e) {
      if (!last) { // once: is it there at all?
        const probe = await fetch('/novnc/core/rfb.js', { cache: 'no-store' }).catch(() => null);
        if (probe && probe.status === 404) {
          throw new Error('noVNC is not installed on this host (run scripts/web-deps.sh)');
        }
      }
      last = e;
    }
  }
  throw new Error(`cannot load noVNC from this host: ${last && last.message}`);
}

// remote: the session runs on another fleet member: its desktop comes through
// this one (the broker, GET /v1/fleet/sessions/NAME/vnc); kind 'desks': a
// user's desk on a terminal server (GET /v1/console/desks/USER/vnc)
async function openDesktop(name, remote = false, kind = 'sessions') {
  closeDesktop();
  $('#desktop').hidden = false;
  $('#desktop-title').textContent = kind === 'desks' ? `Desk of ${name}` : `Desktop of ${name}`;
  const status = $('#desktop-status');
  status.textContent = 'connecting…';
  let RFB;
  try {
    RFB = await loadNoVnc();
  } catch (e) {
    status.textContent = e.message;
    return;
  }
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const route = remote ? 'fleet' : 'console';
  const url = `${proto}//${location.host}/v1/${route}/${kind}/${encodeURIComponent(name)}/vnc?access_token=${encodeURIComponent(st.token)}`;
  const rfb = new RFB($('#screen'), url, { wsProtocols: ['binary'] });
  rfb.scaleViewport = true;
  rfb.background = '#222';
  st.desktop = { name, rfb, connected: false, remote, kind };
  window.roamDesktop = st.desktop; // for the browser tests
  rfb.addEventListener('connect', () => { st.desktop.connected = true; status.textContent = 'connected'; });
  rfb.addEventListener('disconnect', (e) => {
    if (st.desktop && st.desktop.rfb === rfb) st.desktop.connected = false;
    status.textContent = e.detail.clean ? 'disconnected' : 'connection lost (is the session still running here?)';
  });
  $('#desktop').scrollIntoView({ behavior: 'smooth', block: 'nearest' });
}

function closeDesktop() {
  if (st.desktop) {
    try { st.desktop.rfb.disconnect(); } catch { /* already closed */ }
    st.desktop = null;
    window.roamDesktop = null;
  }
  $('#desktop').hidden = true;
  $('#screen').replaceChildren();
}

// ---- navigation, log-in ------------------------------------------------------

function showTab(tab) {
  st.tab = ['sessions', 'images', 'hosts'].includes(tab) ? tab : 'sessions';
  for (const s of document.querySelectorAll('.tab')) s.hidden = s.id !== `tab-${st.tab}`;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.tab === st.tab);
}

async function start() {
  let info;
  try {
    info = await api('GET', '/v1/info');
  } catch (e) {
    if (e.status !== 401) showLogin(`Cannot reach the daemon: ${e.message}`);
    return;
  }
  st.info = info;
  $('#login').hidden = true;
  $('#app').hidden = false;
  $('#logout').hidden = false;
  $('#live').hidden = false;
  $('#live').classList.add('off');
  const badge = $('#host-badge');
  badge.textContent = info.role;
  badge.hidden = false;
  const who = $('#whoami');
  who.textContent = info.user ? `${info.user}` : info.token_role;
  who.hidden = false;
  // a fleet member (roam serve --etcd) answers for the whole fleet
  if (info.role !== 'laptop') st.fleet = await api('GET', '/v1/fleet/hosts').catch(() => null);
  $('#sync-form').hidden = info.role === 'laptop' || !!st.fleet; /* sync files are not for fleets */
  showTab(location.hash.slice(1));
  connectEvents();
  await refresh();
  st.timers.push(setInterval(refresh, 3000));
}

function showLogin(message = '') {
  $('#login').hidden = false;
  $('#app').hidden = true;
  $('#logout').hidden = true;
  $('#live').hidden = true;
  $('#host-badge').hidden = true;
  $('#whoami').hidden = true;
  $('#login-error').textContent = message;
  $('#token').focus();
}

function logout(message = '') {
  sessionStorage.removeItem(TOKEN_KEY);
  st.token = null;
  st.timers.forEach(clearInterval);
  st.timers = [];
  if (st.events) st.events.close();
  st.events = null;
  closeDesktop();
  st.sessions = [];
  st.info = null;
  st.fleet = null;
  st.fleetSessions = [];
  $('#result').hidden = true;
  showLogin(message);
}

$('#login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  st.token = $('#token').value.trim();
  $('#token').value = '';
  sessionStorage.setItem(TOKEN_KEY, st.token);
  $('#login-error').textContent = '';
  start();
});
$('#logout').addEventListener('click', () => logout());
$('#sync-form').addEventListener('submit', applySyncFile);
$('#desktop-close').addEventListener('click', closeDesktop);
window.addEventListener('hashchange', () => showTab(location.hash.slice(1)));

if (st.token) start(); else showLogin();
