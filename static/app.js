// edge-chat browser client. Plain JS, no build step. Protocol: docs/PROTOCOL.md.
// Everything that comes from the network is rendered with textContent, never as HTML.
'use strict';

(() => {
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const JOIN_TIMEOUT_MS = 15000;  // hello sent but no `ready` by then: drop and retry
  const NOTICE_MS = 5000;
  const NAME_KEY = 'edge-chat.name';
  const LIMITS_TIMEOUT_MS = 5000; // GET /api/limits; after that, no client-side length checks
  const COUNTER_FROM = 0.8;       // show a length counter from this fraction of a limit

  // Room names are a fixed grammar of the protocol (docs/PROTOCOL.md, not configurable and
  // not in /api/limits): 1–32 of [A-Za-z0-9._-] but not "." or "..", or a private room id
  // of 64 lower-case hex digits. Checked here because a refused upgrade gives the page no
  // reason, only a failed socket.

  const ROOM_RE = /^[A-Za-z0-9._-]{1,32}$/;
  const PRIVATE_ROOM_RE = /^[0-9a-f]{64}$/;
  // Control characters and text-direction overrides/isolates: refused by the server.
  const BAD_NAME_CHARS_RE = /[\p{Cc}\u202A-\u202E\u2066-\u2069]/u;

  const CLOSE_TEXT = {
    1001: 'Server going away',
    1006: 'Connection lost',
    1008: 'Refused by the server',
    1009: 'Message too big',
    1011: 'Server error',
    1013: 'Try again later',
  };
  const STATE_TEXT = {
    idle: 'Not connected',
    connecting: 'Connecting…',
    live: 'Live',
    reconnecting: 'Reconnecting…',
    closed: 'Disconnected',
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'),
    setup: $('setup'),
    joinForm: $('join-form'),
    nameInput: $('name-input'),
    nameHint: $('name-hint'),
    nameCount: $('name-count'),
    roomInput: $('room-input'),
    formError: $('form-error'),
    createBtn: $('create-btn'),
    chat: $('chat'),
    roomInfo: $('room-info'),
    roomName: $('room-name'),
    copyLink: $('copy-link'),
    leave: $('leave'),
    roster: $('roster'),
    rosterCount: $('roster-count'),
    messages: $('messages'),
    composeForm: $('compose-form'),
    messageInput: $('message-input'),
    messageCount: $('message-count'),
    sendBtn: $('send-btn'),
    notice: $('notice'),
  };

  // ---- limits -------------------------------------------------------------------------

  // The server's own limits, from GET /api/limits. null = not known (the request failed or
  // is still on its way): no client-side check then; the server still refuses what is too
  // long with an {"error"} that the page shows.
  const limits = { name: null, message: null, frameBytes: null };

  async function loadLimits() {
    try {
      const res = await fetch('/api/limits', {
        cache: 'no-store',
        signal: typeof AbortSignal.timeout === 'function' ? AbortSignal.timeout(LIMITS_TIMEOUT_MS) : undefined,
      });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const j = await res.json();
      const positive = (v) => (Number.isSafeInteger(v) && v > 0 ? v : null);
      limits.name = positive(j && j.max_name_chars);
      limits.message = positive(j && j.max_message_chars);
      limits.frameBytes = positive(j && j.max_frame_bytes);
    } catch (err) {
      console.warn(`edge-chat: no limits from /api/limits (${err.message}); the server checks lengths`);
    }
    applyLimits();
  }

  // ---- validation -------------------------------------------------------------------

  const charCount = (s) => Array.from(s).length; // code points, like Rust `char`s
  const utf8Bytes = (s) => new TextEncoder().encode(s).length;

  function isValidRoom(r) {
    return (ROOM_RE.test(r) && r !== '.' && r !== '..') || PRIVATE_ROOM_RE.test(r);
  }

  function nameProblem(raw) {
    const n = raw.trim();
    if (!n) return 'Please enter a name.';
    if (limits.name !== null && charCount(n) > limits.name) {
      return `Names can be at most ${limits.name} characters.`;
    }
    if (BAD_NAME_CHARS_RE.test(n)) return 'Names cannot contain control or text-direction characters.';
    return null;
  }

  function loadName() {
    try { return localStorage.getItem(NAME_KEY) || ''; } catch { return ''; }
  }
  function saveName(n) {
    try { localStorage.setItem(NAME_KEY, n); } catch { /* storage disabled: fine */ }
  }

  function roomFromHash() {
    const h = location.hash.slice(1);
    try { return decodeURIComponent(h).trim(); } catch { return h.trim(); }
  }

  // ---- state --------------------------------------------------------------------------

  let myName = loadName().trim();
  let room = null;          // the room we are in (or trying to be in)
  let ws = null;            // the current socket; events from older sockets are ignored
  let connState = 'idle';
  let joining = false;      // hello sent, `ready` not yet received
  let pending = [];         // messages of the join burst, held until `ready`
  let lastError = '';       // last {"error"} of this socket, used as close reason
  // Texts sent on this socket and not yet answered. The server answers each of our
  // frames in order, with our own message or an error, so the oldest is the one an
  // error refers to: it goes back into the input instead of being lost.
  let unanswered = [];
  let epoch = null;         // room epoch of our last successful join
  let lastSeq = 0;          // highest seq displayed; messages at or below it are duplicates
  let attempt = 0;          // reconnect attempts since the last successful join
  let retryTimer = 0;
  let joinTimer = 0;
  let noticeTimer = 0;
  const roster = new Map(); // name -> number of sessions with that name

  // ---- UI helpers ---------------------------------------------------------------------

  function setState(s, detail) {
    connState = s;
    ui.status.dataset.state = s;
    ui.chat.dataset.state = s;
    ui.status.textContent = detail ? `${STATE_TEXT[s]} — ${detail}` : STATE_TEXT[s];
    ui.sendBtn.disabled = s !== 'live';
  }

  function showNotice(text) {
    ui.notice.textContent = text;
    ui.notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { ui.notice.hidden = true; }, NOTICE_MS);
  }

  function showSetup(error, focusName) {
    ui.chat.hidden = true;
    ui.roomInfo.hidden = true;
    ui.setup.hidden = false;
    ui.nameInput.value = myName;
    updateNameCounter();
    ui.formError.textContent = error || '';
    ui.formError.hidden = !error;
    document.title = 'edge-chat';
    (focusName || !myName ? ui.nameInput : ui.roomInput).focus();
  }

  function showChat() {
    ui.setup.hidden = true;
    ui.chat.hidden = false;
    ui.roomInfo.hidden = false;
    const label = PRIVATE_ROOM_RE.test(room) ? `private ${room.slice(0, 8)}…` : room;
    ui.roomName.textContent = label;
    ui.roomName.title = room;
    document.title = `${label} · edge-chat`;
  }

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

  function formatTime(date) {
    const now = new Date();
    return date.toDateString() === now.toDateString() ? timeFmt.format(date) : dateTimeFmt.format(date);
  }

  function nearBottom() {
    const m = ui.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
  }
  function scrollToBottom() { ui.messages.scrollTop = ui.messages.scrollHeight; }

  function renderMessage(m) {
    const li = document.createElement('li');
    li.className = 'msg';
    if (m.name === myName) li.classList.add('mine');
    li.dataset.seq = String(m.seq);

    const meta = document.createElement('div');
    meta.className = 'meta';
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = m.name;
    meta.append(who);
    const date = new Date(m.timestamp);
    if (Number.isFinite(date.getTime())) {
      const time = document.createElement('time');
      time.dateTime = date.toISOString();
      time.title = date.toLocaleString();
      time.textContent = formatTime(date);
      meta.append(' ', time);
    }

    const text = document.createElement('p');
    text.className = 'text';
    text.textContent = m.message;

    li.append(meta, text);
    return li;
  }

  // Appends messages not yet shown, in order. Returns how many were added.
  function addMessages(list) {
    const stick = nearBottom();
    let added = 0;
    for (const m of list) {
      if (m.seq <= lastSeq) continue; // already shown
      lastSeq = m.seq;
      ui.messages.append(renderMessage(m));
      added++;
    }
    if (added && (stick || list.some((m) => m.name === myName))) scrollToBottom();
    return added;
  }

  function addDivider(text) {
    const li = document.createElement('li');
    li.className = 'divider';
    li.textContent = text;
    ui.messages.append(li);
  }

  function clearMessages() {
    ui.messages.replaceChildren();
    lastSeq = 0;
  }

  function renderRoster() {
    const items = [];
    let total = 0;
    const names = [...roster.keys()].sort((a, b) => a.localeCompare(b));
    for (const n of names) {
      const count = roster.get(n);
      total += count;
      const li = document.createElement('li');
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = n;
      li.append(who);
      if (n === myName) {
        li.classList.add('me');
        const you = document.createElement('span');
        you.className = 'you';
        you.textContent = ' (you)';
        li.append(you);
      }
      if (count > 1) {
        const c = document.createElement('span');
        c.className = 'count';
        c.textContent = `×${count}`;
        c.title = `${count} sessions`;
        li.append(' ', c);
      }
      items.push(li);
    }
    ui.roster.replaceChildren(...items);
    ui.rosterCount.textContent = String(total);
  }

  function rosterAdd(n) {
    roster.set(n, (roster.get(n) || 0) + 1);
    renderRoster();
  }
  function rosterRemove(n) {
    const c = roster.get(n) || 0;
    if (c <= 1) roster.delete(n); else roster.set(n, c - 1);
    renderRoster();
  }

  // ---- connection ---------------------------------------------------------------------

  function socketUrl(r) {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    return `${scheme}://${location.host}/api/room/${r}/websocket`;
  }

  function connect() {
    clearTimeout(retryTimer);
    const sock = new WebSocket(socketUrl(room));
    ws = sock;
    joining = true;
    pending = [];
    lastError = '';
    unanswered = [];
    setState(attempt ? 'reconnecting' : 'connecting');

    sock.onopen = () => {
      if (ws !== sock) return;
      roster.clear(); // the server sends the whole roster again on every join
      renderRoster();
      const hello = { name: myName };
      if (epoch !== null) hello.resume = { epoch, seq: lastSeq };
      sock.send(JSON.stringify(hello));
    };
    sock.onmessage = (ev) => {
      if (ws !== sock || typeof ev.data !== 'string') return;
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      if (frame && typeof frame === 'object') handleFrame(frame);
    };
    sock.onclose = (ev) => {
      if (ws === sock) onClosed(ev);
    };
    clearTimeout(joinTimer);
    joinTimer = setTimeout(() => {
      if (ws === sock && joining) sock.close(4000, 'Join timed out');
    }, JOIN_TIMEOUT_MS);
  }

  function handleFrame(f) {
    if (typeof f.message === 'string' && Number.isSafeInteger(f.seq)) {
      if (!joining && unanswered.length && f.name === (myName || 'anonymous')
          && f.message === unanswered[0]) {
        unanswered.shift();
      }
      if (joining) pending.push(f); else addMessages([f]);
    } else if (typeof f.joined === 'string') {
      rosterAdd(f.joined);
    } else if (typeof f.quit === 'string') {
      rosterRemove(f.quit);
    } else if (f.ready === true) {
      onReady(f);
    } else if ('error' in f) {
      lastError = String(f.error);
      showNotice(lastError);
      const refused = unanswered.shift();
      if (refused !== undefined && !ui.messageInput.value.trim()) setMessageInput(refused);
    }
  }

  function onReady(f) {
    joining = false;
    clearTimeout(joinTimer);
    const newEpoch = typeof f.epoch === 'string' ? f.epoch : null;
    if (!f.recovered && epoch !== null) {
      if (newEpoch !== epoch) {
        // The room's storage was lost and seqs restarted: start the list afresh.
        clearMessages();
        addDivider('The room’s history was reset. Earlier messages may be missing.');
      } else if (pending.length && pending[0].seq > lastSeq + 1) {
        addDivider('Some messages may be missing here.');
      }
    }
    epoch = newEpoch;
    addMessages(pending);
    pending = [];
    attempt = 0;
    setState('live');
  }

  function onClosed(ev) {
    clearTimeout(joinTimer);
    const wasJoining = joining;
    ws = null;
    joining = false;
    pending = [];
    const reason = ev.reason || lastError || CLOSE_TEXT[ev.code] || `Closed (${ev.code})`;

    if (ev.code === 1009 && unanswered.length && !ui.messageInput.value.trim()) {
      // A frame over the server's size cap (only possible while its limits are unknown)
      // closes the socket without an answer: give the text back rather than lose it. The
      // longest unanswered text is the one that was too big.
      setMessageInput(unanswered.reduce((a, b) => (utf8Bytes(b) > utf8Bytes(a) ? b : a)));
    }

    if (ev.code === 1008) {
      // Policy close: retrying would be refused again.
      if (wasJoining) {
        // The hello was refused, i.e. the name: let the user fix it.
        setState('closed', reason);
        showSetup(lastError || reason, true);
      } else {
        setState('closed', `${reason}. Reload the page to rejoin.`);
      }
      return;
    }
    scheduleReconnect(reason);
  }

  function scheduleReconnect(reason) {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 10));
    const delay = Math.round(base / 2 + Math.random() * (base / 2)); // "equal jitter"
    attempt++;
    setState('reconnecting', `${reason}; retrying in ${Math.max(1, Math.round(delay / 1000))} s`);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, delay);
  }

  function disconnect() {
    clearTimeout(retryTimer);
    clearTimeout(joinTimer);
    const sock = ws;
    ws = null;
    joining = false;
    pending = [];
    if (sock) sock.close(1000);
    setState('idle');
  }

  function enterRoom(r) {
    disconnect();
    room = r;
    epoch = null;
    attempt = 0;
    clearMessages();
    roster.clear();
    renderRoster();
    showChat();
    connect();
    ui.messageInput.focus();
  }

  // ---- routing ------------------------------------------------------------------------

  function route() {
    const r = roomFromHash();
    if (r) ui.roomInput.value = r;
    if (!r) {
      disconnect();
      room = null;
      showSetup();
    } else if (!isValidRoom(r)) {
      disconnect();
      room = null;
      showSetup(`“${r}” is not a valid room name.`);
    } else if (nameProblem(myName)) {
      disconnect();
      room = null;
      showSetup(null, true);
    } else if (r !== room || (!ws && connState !== 'reconnecting')) {
      enterRoom(r);
    }
  }

  function takeName() {
    const problem = nameProblem(ui.nameInput.value);
    if (problem) {
      ui.formError.textContent = problem;
      ui.formError.hidden = false;
      ui.nameInput.focus();
      return false;
    }
    myName = ui.nameInput.value.trim();
    saveName(myName);
    return true;
  }

  function goToRoom(r) {
    if (roomFromHash() === r) {
      room = null; // same hash: no hashchange event, so enter directly
      route();
    } else {
      location.hash = r; // hashchange -> route()
    }
  }

  ui.joinForm.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!takeName()) return;
    const r = ui.roomInput.value.trim();
    if (!isValidRoom(r)) {
      ui.formError.textContent = 'Room names are 1–32 letters, digits, “.”, “_” or “-” (not “.” or “..”).';
      ui.formError.hidden = false;
      ui.roomInput.focus();
      return;
    }
    goToRoom(r);
  });

  ui.createBtn.addEventListener('click', async () => {
    if (!takeName()) return;
    ui.createBtn.disabled = true;
    try {
      const res = await fetch('/api/room', { method: 'POST' });
      const id = (await res.text()).trim();
      if (!res.ok || !PRIVATE_ROOM_RE.test(id)) throw new Error(`HTTP ${res.status}`);
      goToRoom(id);
    } catch (err) {
      ui.formError.textContent = `Could not create a room (${err.message}).`;
      ui.formError.hidden = false;
    } finally {
      ui.createBtn.disabled = false;
    }
  });

  ui.leave.addEventListener('click', () => {
    history.pushState(null, '', location.pathname + location.search);
    route();
  });

  ui.copyLink.addEventListener('click', () => {
    const done = () => showNotice('Link copied. Anyone with it can join this room.');
    const fail = () => showNotice('Copy the address from the address bar to share this room.');
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(location.href).then(done, fail);
    } else {
      fail();
    }
  });

  // ---- composing ----------------------------------------------------------------------

  function autosize() {
    const t = ui.messageInput;
    t.style.height = 'auto';
    t.style.height = `${Math.min(t.scrollHeight, 160)}px`;
  }

  // Shows "n / max" under a field once its trimmed length nears the server's limit, and
  // says by how much it is over. Hidden while the limit is unknown.
  function updateCounter(input, counter, max) {
    const n = charCount(input.value.trim());
    const over = max !== null && n > max;
    counter.hidden = max === null || n < max * COUNTER_FROM;
    counter.dataset.over = String(over);
    if (over) input.setAttribute('aria-invalid', 'true'); else input.removeAttribute('aria-invalid');
    if (counter.hidden) return;
    counter.textContent = over
      ? `${n} / ${max} characters: ${n - max} too many`
      : `${n} / ${max} characters`;
  }
  const updateNameCounter = () => updateCounter(ui.nameInput, ui.nameCount, limits.name);
  const updateMessageCounter = () => updateCounter(ui.messageInput, ui.messageCount, limits.message);

  function applyLimits() {
    ui.nameHint.textContent = limits.name !== null
      ? `Up to ${limits.name} characters. Shown to everyone in the room.`
      : 'Shown to everyone in the room.';
    updateNameCounter();
    updateMessageCounter();
  }

  function setMessageInput(text) {
    ui.messageInput.value = text;
    autosize();
    updateMessageCounter();
  }

  ui.composeForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = ui.messageInput.value.trim();
    if (!text) return;
    if (limits.message !== null && charCount(text) > limits.message) {
      const extra = charCount(text) - limits.message;
      showNotice(`Messages can be at most ${limits.message} characters; this one has ${extra} too many.`);
      return;
    }
    const frame = JSON.stringify({ message: text });
    if (limits.frameBytes !== null && utf8Bytes(frame) > limits.frameBytes) {
      showNotice('This message is too large to send; please shorten it.');
      return;
    }
    if (!ws || connState !== 'live') {
      showNotice('Not connected yet; your message is kept. Send it once live.');
      return;
    }
    ws.send(frame);
    unanswered.push(text);
    setMessageInput('');
  });

  ui.messageInput.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      ui.composeForm.requestSubmit();
    }
  });
  ui.messageInput.addEventListener('input', () => { autosize(); updateMessageCounter(); });
  ui.nameInput.addEventListener('input', updateNameCounter);

  window.addEventListener('hashchange', route);
  window.addEventListener('online', () => {
    if (connState === 'reconnecting' && !ws && room) connect(); // skip the remaining backoff
  });

  ui.nameInput.value = myName;
  setState('idle');
  applyLimits(); // no limits known yet: no counters, no number in the hint
  loadLimits();  // joining does not wait for it: the server checks lengths anyway
  route();
})();
