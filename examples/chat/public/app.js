// The uvws chat page.
//
// Connecting: log in (POST /login sets the session cookie), get a
// single-use ticket (POST /ticket) and open ws://HOST/chat?room=R&ticket=T.
// When the WebSocket cannot be opened, a plain GET on the same URL asks the
// server why: 401/403/400 means the server refused us (shown, no retry);
// anything else means the upgrade itself was lost (no WebSocket in this
// browser, or a proxy that refuses upgrades), and the page falls back to
// Server-Sent Events: GET /events?room=R for what arrives, POST /send for
// what we say.  Both transports carry the same JSON messages.
'use strict';

const $ = (id) => document.getElementById(id);

const state = {
  nick: null,
  room: null,
  transport: null,   // 'websocket' | 'sse'
  ws: null,
  es: null,
  sid: null,         // our event stream, for POST /send
  retries: 0,
  timer: null,
  members: [],
};

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

async function post(path, body) {
  let r;
  try {
    r = await fetch(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body || {}),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (e) {
    return { ok: false, status: 0, data: { message: 'the server is unreachable' } };
  }
  let data = {};
  try { data = await r.json(); } catch (e) { /* not JSON */ }
  return { ok: r.ok, status: r.status, data };
}

function setStatus(kind, text) {
  const s = $('status');
  s.className = 'status ' + kind;
  s.textContent = text;
  s.dataset.transport = kind;
}

function notice(text, kind) {
  const n = $('notice');
  if (!text) { n.hidden = true; n.textContent = ''; return; }
  n.hidden = false;
  n.className = 'notice ' + (kind || 'error');
  n.textContent = text;
}

// A stable colour per nickname (FNV-1a over the name, spread on the wheel).
function hue(name) {
  let h = 2166136261;
  for (const ch of name) h = Math.imul(h ^ ch.codePointAt(0), 16777619) >>> 0;
  return (h % 12) * 30;
}

function time(ts) {
  const d = ts ? new Date(ts * 1000) : new Date();
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

function scrollDown() {
  const list = $('messages');
  list.scrollTop = list.scrollHeight;
}

function addMessage(m) {
  const li = document.createElement('li');
  li.className = 'msg' + (m.nick === state.nick ? ' mine' : '');
  const who = document.createElement('span');
  who.className = 'nick';
  who.textContent = m.nick;
  who.style.color = `hsl(${hue(m.nick)} 55% 38%)`;
  const at = document.createElement('time');
  at.textContent = time(m.ts);
  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = m.text;
  li.append(who, at, text);
  $('messages').append(li);
  scrollDown();
}

function addEvent(text) {
  const li = document.createElement('li');
  li.className = 'event';
  li.textContent = text;
  $('messages').append(li);
  scrollDown();
}

function renderMembers(members) {
  state.members = members;
  const ul = $('members');
  ul.replaceChildren(...members.map((nick) => {
    const li = document.createElement('li');
    li.textContent = nick;
    li.style.setProperty('--dot', `hsl(${hue(nick)} 60% 45%)`);
    if (nick === state.nick) li.className = 'self';
    return li;
  }));
  $('member-count').textContent = String(members.length);
}

// ---------------------------------------------------------------------------
// Messages from the server (the same on both transports)
// ---------------------------------------------------------------------------

function handle(msg) {
  switch (msg.type) {
    case 'welcome':
      state.nick = msg.nick;
      state.room = msg.room;
      state.sid = msg.sid || null;
      state.retries = 0;
      $('room-name').textContent = msg.room;
      $('me').textContent = msg.nick;
      document.title = `#${msg.room} · uvws chat`;
      renderMembers(msg.members);
      break;
    case 'history':
      $('messages').replaceChildren();
      for (const m of msg.messages) addMessage(m);
      addEvent(msg.messages.length
        ? `— ${msg.messages.length} earlier message${msg.messages.length > 1 ? 's' : ''} —`
        : `— you joined #${msg.room} —`);
      break;
    case 'message':
      addMessage(msg);
      break;
    case 'presence':
      renderMembers(msg.members);
      if (msg.nick !== state.nick) addEvent(`${msg.nick} ${msg.event === 'join' ? 'joined' : 'left'}`);
      break;
    case 'error':
      notice(msg.message);
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------------------
// Transports
// ---------------------------------------------------------------------------

function closeTransport() {
  clearTimeout(state.timer);
  if (state.ws) { const ws = state.ws; state.ws = null; ws.close(1000); }
  if (state.es) { state.es.close(); state.es = null; }
  state.sid = null;
}

function scheduleReconnect() {
  const delay = Math.min(10000, 500 * 2 ** state.retries);
  state.retries += 1;
  setStatus('off', 'reconnecting…');
  clearTimeout(state.timer);
  state.timer = setTimeout(connect, delay);
}

function backToLogin(text) {
  closeTransport();
  setStatus('off', 'offline');
  $('chat').hidden = true;
  $('login').hidden = false;
  $('logout').hidden = true;
  $('login-error').textContent = text || '';
}

function chatURL(ticket) {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/chat?room=${encodeURIComponent(state.room)}` +
         `&ticket=${encodeURIComponent(ticket)}`;
}

async function connect() {
  closeTransport();
  notice('');
  if (typeof window.WebSocket !== 'function') {
    connectSSE('this browser has no WebSocket');
    return;
  }
  setStatus('connecting', 'connecting…');
  const t = await post('/ticket');
  if (t.status === 401) { backToLogin('Your session has ended: log in again.'); return; }
  if (!t.ok) { scheduleReconnect(); return; }
  const url = chatURL(t.data.ticket);
  const ws = new WebSocket(url);
  let opened = false;
  state.ws = ws;
  state.transport = 'websocket';
  ws.onopen = () => { opened = true; setStatus('ws', 'WebSocket'); };
  ws.onmessage = (e) => handle(JSON.parse(e.data));
  ws.onclose = (e) => {
    if (state.ws !== ws) return;   // we closed it ourselves
    state.ws = null;
    if (!opened) { diagnose(url); return; }
    if (e.code === 1008 || e.code === 1009) notice(`Disconnected: ${e.reason || 'policy violation'}`);
    scheduleReconnect();
  };
}

// The WebSocket did not open.  A browser does not tell why, so ask with a
// plain GET on the same URL: the server runs the same policy without using
// the ticket up and answers 401/403/400 (refused) or 426 (fine, but the
// upgrade was lost on the way).
async function diagnose(url) {
  let r;
  try {
    r = await fetch(url.replace(/^ws/, 'http'), { cache: 'no-store', credentials: 'same-origin' });
  } catch (e) {
    scheduleReconnect();
    return;
  }
  if (r.status === 400 || r.status === 401 || r.status === 403) {
    const why = (await r.text()).trim();
    setStatus('rejected', 'rejected');
    notice(`Connection rejected (${r.status} ${r.statusText || ''}): ${why}`.replace(' )', ')'));
    return;
  }
  connectSSE(`the WebSocket upgrade failed (HTTP ${r.status})`);
}

function connectSSE(why) {
  closeTransport();
  state.transport = 'sse';
  setStatus('connecting', 'connecting…');
  // Same origin: the session cookie authenticates the stream, and
  // EventSource reconnects by itself after a network error.
  const es = new EventSource(`/events?room=${encodeURIComponent(state.room)}`);
  state.es = es;
  es.onopen = () => {
    setStatus('sse', 'SSE fallback');
    $('status').title = `Server-Sent Events: ${why}`;
  };
  es.onmessage = (e) => handle(JSON.parse(e.data));
  es.onerror = async () => {
    if (state.es !== es) return;
    if (es.readyState === EventSource.CLOSED) {   // refused: logged out, or the server restarted
      state.es = null;
      const me = await fetch('/me', { cache: 'no-store' }).catch(() => null);
      if (me && me.status === 401) backToLogin('Your session has ended: log in again.');
      else scheduleReconnect();
    } else {
      setStatus('connecting', 'reconnecting…');
    }
  };
}

async function send(text) {
  if (state.transport === 'websocket' && state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify({ type: 'message', text }));
    return true;
  }
  if (state.transport === 'sse' && state.sid) {
    const r = await post('/send', { sid: state.sid, text });
    if (!r.ok) { notice(r.data.message || `could not send (HTTP ${r.status})`); return false; }
    return true;
  }
  notice('Not connected yet; try again in a moment.');
  return false;
}

// ---------------------------------------------------------------------------
// Page wiring
// ---------------------------------------------------------------------------

async function join(nick, room) {
  $('login-error').textContent = '';
  const r = await post('/login', { nick });
  if (!r.ok) { $('login-error').textContent = r.data.message || `login failed (HTTP ${r.status})`; return; }
  state.nick = r.data.nick;
  state.room = room;
  $('me').textContent = state.nick;
  $('login').hidden = true;
  $('chat').hidden = false;
  $('logout').hidden = false;
  $('room-name').textContent = room;
  history.replaceState(null, '', `#${room}`);
  connect();
  $('text').focus();
}

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  join($('nick').value.trim(), $('room').value.trim() || 'lobby');
});

$('composer').addEventListener('submit', async (e) => {
  e.preventDefault();
  const input = $('text');
  const text = input.value;
  if (!text.trim()) return;
  notice('');
  if (await send(text)) input.value = '';
});

$('switch').addEventListener('submit', (e) => {
  e.preventDefault();
  const room = $('new-room').value.trim();
  if (!room || room === state.room) return;
  $('new-room').value = '';
  state.room = room;
  history.replaceState(null, '', `#${room}`);
  $('messages').replaceChildren();
  if (state.transport === 'websocket' && state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify({ type: 'join', room }));
  } else {
    connect();
  }
});

$('logout').addEventListener('click', async () => {
  await post('/logout');
  backToLogin('');
  $('me').textContent = '';
});

(async function init() {
  const room = decodeURIComponent(location.hash.slice(1));
  if (room) $('room').value = room;
  try {
    const r = await fetch('/me', { cache: 'no-store' });
    if (r.ok) $('nick').value = (await r.json()).nick;
  } catch (e) { /* offline */ }
})();
