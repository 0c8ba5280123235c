// edge-chat browser page: the UI only. The connection (resume, retry-safe sends, backoff,
// history pages) is the client module edge-chat.js. Plain JS, no build step. Protocol:
// docs/PROTOCOL.md. Everything that comes from the network is rendered with
// textContent, never as HTML.
import { EdgeChat } from './edge-chat.js';

{
  const HISTORY_PAGE = 50;        // messages per "load older messages"
  const OLDER_AT_PX = 40;         // scrolled this close to the top: load older messages
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
    outbox: $('outbox'),
    notice: $('notice'),
  };

  // ---- limits -------------------------------------------------------------------------

  // The server's own limits, from GET /api/limits. null = not known (the request failed or
  // is still on its way): no client-side check then; the server still refuses what is too
  // long with an {"error"} that the page shows.
  const limits = { name: null, message: null, frameBytes: null, historyPage: null };

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
      limits.historyPage = positive(j && j.history_page_max);
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
  let chat = null;          // the EdgeChat of that room; events from older ones are ignored
  let connState = 'idle';
  let lastSeq = 0;          // highest seq displayed; messages at or below it are duplicates
  let oldestSeq = null;     // lowest seq displayed
  let moreOlder = null;     // older messages retained? null: not asked yet
  let loadingOlder = false;
  let noticeTimer = 0;
  const roster = new Map(); // name -> number of sessions with that name

  // ---- UI helpers ---------------------------------------------------------------------

  function setState(s, detail) {
    connState = s;
    ui.status.dataset.state = s;
    ui.chat.dataset.state = s;
    ui.status.textContent = detail ? `${STATE_TEXT[s]} — ${detail}` : STATE_TEXT[s];
    // Messages typed while (re)connecting wait in the outbox and go out once live.
    ui.sendBtn.disabled = s === 'idle' || s === 'closed';
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
      if (oldestSeq === null) oldestSeq = m.seq;
      ui.messages.append(renderMessage(m));
      added++;
    }
    if (added && (stick || list.some((m) => m.name === myName))) scrollToBottom();
    updateOlder();
    return added;
  }

  // ---- older messages (history pages) -------------------------------------------------

  // The first row of the list while older messages may exist: a button, also pressed by
  // scrolling to the top.
  const olderRow = document.createElement('li');
  olderRow.className = 'older';
  const olderBtn = document.createElement('button');
  olderBtn.type = 'button';
  olderBtn.id = 'load-older';
  olderBtn.className = 'link-btn';
  olderBtn.textContent = 'Load older messages';
  olderRow.append(olderBtn);
  olderBtn.addEventListener('click', () => loadOlder());

  function updateOlder() {
    const maybe = oldestSeq !== null && oldestSeq > 1 && moreOlder !== false;
    if (maybe && !olderRow.isConnected) ui.messages.prepend(olderRow);
    if (!maybe && olderRow.isConnected) olderRow.remove();
    olderBtn.disabled = loadingOlder || connState !== 'live';
    olderBtn.textContent = loadingOlder ? 'Loading older messages…' : 'Load older messages';
  }

  async function loadOlder() {
    const c = chat;
    if (!c || loadingOlder || connState !== 'live' || !olderRow.isConnected) return;
    const before = oldestSeq;
    loadingOlder = true;
    updateOlder();
    let loaded = false;
    try {
      const page = await c.history(before, Math.min(HISTORY_PAGE, limits.historyPage ?? HISTORY_PAGE));
      if (c !== chat || before !== oldestSeq) return; // left, or reset meanwhile
      const older = page.messages.filter((m) => m.seq < before);
      // Keep what is on screen where it is: grow the list above it.
      const m = ui.messages;
      const fromBottom = m.scrollHeight - m.scrollTop;
      olderRow.after(...older.map(renderMessage));
      if (older.length) oldestSeq = older[0].seq;
      // A page with nothing older to show gives no way further back: stop there.
      moreOlder = page.more && older.length > 0;
      m.scrollTop = m.scrollHeight - fromBottom;
      loaded = true;
    } catch (err) {
      if (c === chat) showNotice(err.message);
    } finally {
      if (c === chat) {
        loadingOlder = false;
        updateOlder();
        // Only after a page came: a refusal (rate limit) must not become a loop.
        if (loaded) fillView();
      }
    }
  }

  // A list too short to scroll cannot be scrolled to its top: load older messages until
  // it fills the view, or there are none.
  function fillView() {
    const m = ui.messages;
    if (olderRow.isConnected && m.scrollHeight <= m.clientHeight) setTimeout(loadOlder, 0);
  }

  ui.messages.addEventListener('scroll', () => {
    if (ui.messages.scrollTop < OLDER_AT_PX) loadOlder();
  }, { passive: true });

  function addDivider(text) {
    const li = document.createElement('li');
    li.className = 'divider';
    li.textContent = text;
    ui.messages.append(li);
  }

  function clearMessages() {
    ui.messages.replaceChildren();
    lastSeq = 0;
    oldestSeq = null;
    moreOlder = null;
    loadingOlder = false;
  }

  // Messages sent and not stored yet, below the list: they wait for the connection, and
  // are sent again after a reconnect, so they show until the server has them.
  function addOutboxItem(text) {
    const li = document.createElement('li');
    li.className = 'msg mine pending';
    const meta = document.createElement('div');
    meta.className = 'meta';
    meta.textContent = 'Sending…';
    const p = document.createElement('p');
    p.className = 'text';
    p.textContent = text;
    li.append(meta, p);
    ui.outbox.append(li);
    ui.outbox.hidden = false;
    scrollToBottom();
    return li;
  }

  function removeOutboxItem(li) {
    li.remove();
    ui.outbox.hidden = ui.outbox.childElementCount === 0;
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
  function rosterReplace(names) {
    roster.clear();
    for (const n of names) roster.set(n, (roster.get(n) || 0) + 1);
    renderRoster();
  }
  function rosterRemove(n) {
    const c = roster.get(n) || 0;
    if (c <= 1) roster.delete(n); else roster.set(n, c - 1);
    renderRoster();
  }

  // ---- connection ---------------------------------------------------------------------

  function connect() {
    const c = new EdgeChat({ base: location.origin, room, name: myName });
    chat = c;
    const on = (type, fn) => c.addEventListener(type, (e) => { if (chat === c) fn(e.detail); });
    on('state', onState);
    // v2: the roster arrives whole at each join; live joins and quits follow.
    on('roster', (d) => rosterReplace(d.roster.map((e) => e.name)));
    on('joined', (d) => rosterAdd(d.name));
    on('quit', (d) => rosterRemove(d.name));
    on('reset', () => {
      // The room's storage was lost and seqs restarted: start the list afresh.
      clearMessages();
      addDivider('The room’s history was reset. Earlier messages may be missing.');
    });
    on('ready', (d) => {
      if (d.gap) addDivider('Some messages may be missing here.');
    });
    on('message', (m) => addMessages([m]));
    on('deleted', (d) => markDeleted(d.seq));
    // A refused message also rejects its send (see the compose form).
    on('error', (d) => showNotice(d.message));
  }

  function onState(d) {
    const reason = d.reason || CLOSE_TEXT[d.code] || (d.code ? `Closed (${d.code})` : '');
    if (d.state === 'reconnecting' && d.delay !== undefined) {
      setState('reconnecting', `${reason}; retrying in ${Math.max(1, Math.round(d.delay / 1000))} s`);
    } else if (d.state === 'closed') {
      if (d.code === 1008 && d.joining) {
        // The hello was refused, i.e. the name: let the user fix it.
        setState('closed', reason);
        showSetup(d.error || reason, true);
      } else {
        // Policy close or kicked: retrying would be refused again.
        setState('closed', `${reason}. Reload the page to rejoin.`);
      }
    } else if (d.state !== 'reconnecting' || connState !== 'reconnecting') {
      setState(d.state);
    }
    updateOlder();
    if (d.state === 'live') fillView();
  }

  function markDeleted(seq) {
    const li = ui.messages.querySelector(`li.msg[data-seq="${Number(seq)}"]`);
    if (!li) return;
    li.classList.add('deleted');
    li.querySelector('.text').textContent = 'Message deleted';
  }

  function disconnect() {
    const c = chat;
    chat = null;
    if (c) c.close();
    for (const li of [...ui.outbox.children]) removeOutboxItem(li);
    setState('idle');
  }

  function enterRoom(r) {
    disconnect();
    room = r;
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
    } else if (r !== room || !chat || chat.state === 'closed') {
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
    // The frame as the module sends it: with a cid of its length.
    const frame = JSON.stringify({ message: text, cid: `c${'0'.repeat(32)}` });
    if (limits.frameBytes !== null && utf8Bytes(frame) > limits.frameBytes) {
      showNotice('This message is too large to send; please shorten it.');
      return;
    }
    if (!chat) return;
    // Sent now if live, else as soon as the connection is back; resent after a
    // reconnect with the same id, so it is stored once. Until then it shows as pending.
    const pending = addOutboxItem(text);
    setMessageInput('');
    chat.send(text).then(
      () => removeOutboxItem(pending), // the message itself arrives as a `message` event
      () => {
        // Refused (the reason is shown as a notice) or the chat closed: the text goes
        // back into the input rather than being lost.
        removeOutboxItem(pending);
        if (!ui.messageInput.value.trim()) setMessageInput(text);
      },
    );
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
    if (chat) chat.reconnect(); // skip the remaining backoff
  });

  ui.nameInput.value = myName;
  setState('idle');
  applyLimits(); // no limits known yet: no counters, no number in the hint
  loadLimits();  // joining does not wait for it: the server checks lengths anyway
  route();
}
