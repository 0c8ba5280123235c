// edge-chat browser page: the UI only. The connection (resume, retry-safe sends, backoff,
// history pages) is the client module edge-chat.js. Plain JS, no build step. Protocol:
// docs/protocol.md. Everything that comes from the network is rendered with
// textContent, never as HTML.
//
// The URL fragment names the room: `#lobby`, or `#room=lobby&token=<jwt>` for an app that
// opens the page for a signed-in user (docs/protocol.md, "Signed identity"). The token is
// taken out of the address at once (it is kept for this tab only, in sessionStorage, so a
// reload still signs in), so it does not end up in the history, a bookmark or a copied
// link.
import { EdgeChat } from './edge-chat.js';

{
  const HISTORY_PAGE = 50;        // messages per "load older messages"
  const OLDER_AT_PX = 40;         // scrolled this close to the top: load older messages
  const NOTICE_MS = 5000;
  const NAME_KEY = 'edge-chat.name';
  const TOKEN_KEY = 'edge-chat.token'; // sessionStorage: this tab only
  const CONFIRM_MS = 4000;        // a moderator's "Delete" waits this long for the confirming click
  // Kick and mute durations offered to a moderator, in seconds; those above the server's
  // max_moderation_secs are left out, and that maximum is offered itself.
  const MODERATION_SECS = [60, 300, 3600, 86400, 604800];
  const LIMITS_TIMEOUT_MS = 5000; // GET /api/limits; after that, no client-side length checks
  const COUNTER_FROM = 0.8;       // show a length counter from this fraction of a limit
  // The reactions the picker offers; a chip of any other (from another client) works
  // the same way.
  const PICKER_EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '😢'];
  const EDIT_SWEEP_MS = 15_000;   // how often "Edit" is taken off messages past the window

  // Room names are a fixed grammar of the protocol (docs/protocol.md, not configurable and
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
    4001: 'Kicked',
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
    identity: $('identity'),
    modForm: $('mod-form'),
    modLabel: $('mod-label'),
    modSecs: $('mod-secs'),
    modApply: $('mod-apply'),
    modCancel: $('mod-cancel'),
    rosterCount: $('roster-count'),
    messages: $('messages'),
    composeForm: $('compose-form'),
    messageInput: $('message-input'),
    messageCount: $('message-count'),
    sendBtn: $('send-btn'),
    outbox: $('outbox'),
    typing: $('typing'),
    notice: $('notice'),
  };

  // ---- limits -------------------------------------------------------------------------

  // The server's own limits, from GET /api/limits. null = not known (the request failed or
  // is still on its way): no client-side check then; the server still refuses what is too
  // long with an {"error"} that the page shows.
  const limits = {
    name: null, message: null, frameBytes: null, historyPage: null, moderationSecs: null,
    editWindowSecs: null, // 0: edits are off
  };

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
      limits.moderationSecs = positive(j && j.max_moderation_secs);
      const w = j && j.edit_window_secs;
      limits.editWindowSecs = Number.isSafeInteger(w) && w >= 0 ? w : null;
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

  // The fragment as parameters (`room=lobby&token=…`), or null for the plain `#lobby`
  // form. Room names never hold "=" or "&", so the two cannot be confused.
  function hashParams() {
    const h = location.hash.slice(1);
    if (!h.includes('=')) return null;
    const p = new URLSearchParams(h);
    return p.has('room') || p.has('token') ? p : null;
  }

  function roomFromHash() {
    const p = hashParams();
    if (p) return (p.get('room') || '').trim();
    const h = location.hash.slice(1);
    try { return decodeURIComponent(h).trim(); } catch { return h.trim(); }
  }

  function loadToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || null; } catch { return null; }
  }
  function saveToken(t) {
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
    } catch { /* storage disabled: the token lasts until a reload */ }
  }

  // A `token` in the fragment replaces the tab's token (an empty one removes it), and is
  // taken out of the address (replaceState: no new history entry, no hashchange).
  function takeTokenFromHash() {
    const p = hashParams();
    if (!p || !p.has('token')) return;
    token = (p.get('token') || '').trim() || null;
    saveToken(token);
    p.delete('token');
    const rest = p.toString();
    history.replaceState(history.state, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
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
  let token = loadToken();  // the join token of this tab, or null
  // Who this session is, from its join: the display name the server gave it (its own
  // `joined`, which comes just before `ready`), and, for a verified session, its user id
  // and role (from `ready`).
  let me = { name: null, user: null, role: null };
  let lastJoined = null;    // the name of the latest `joined` of this join
  // Members by identity: key -> { name, user, role, count }. `roster` frames carry user
  // and role; live `joined` frames only a name, so a member who joined later shows as
  // anonymous until the next join.
  const roster = new Map();
  // In a big room the roster comes in pages (docs/protocol.md, "Member pages"): the
  // list then holds the pages loaded so far, and more load as it is scrolled.
  let rosterMore = false;   // pages of the roster remain
  let loadingMembers = false;
  // What the latest `quit` took from the list, so that an `unlisted` right after it (the
  // member had not been listed to us) can put it back.
  let lastQuit = null;
  let modTarget = null;     // { action: 'kick' | 'mute', user, name } while the form is open
  // Edits and reactions. An anonymous session may edit only what it sent on its current
  // connection: the seqs its sends were stored as since the last join. A verified one
  // edits by its user id (any session). Reaction counts by seq, as the server last said;
  // which of them are ours is known only from our own toggles in this tab (the server
  // sends counts, not who).
  const sentSeqs = new Set();
  const reactionCounts = new Map(); // seq -> { emoji: count }
  const myReactions = new Map();    // seq -> Set of emoji
  // How each `reactions` event changed the counts, by its detail object. A toggle
  // resolves with the detail of the event it caused, so this tells which way it went,
  // even for a reaction this tab did not know was ours (another tab of the same user).
  const changeOf = new WeakMap();   // detail -> { emoji: +n | -n }

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
    updateNameHint();
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

  const isModerator = () => me.role === 'moderator';
  const verifiedUser = (x) => (typeof x.user === 'string' && x.user ? x.user : null);

  // A message is ours if it carries our verified user id; an anonymous session can only
  // go by its name (names are not unique), and never claims a verified message.
  function isMine(m) {
    if (me.user) return verifiedUser(m) === me.user;
    return !verifiedUser(m) && m.name === (me.name ?? myName);
  }

  // The mark of a verified user id, for messages and roster entries that carry one: a
  // badge drawn by the style sheet, outside the name and with no character in it, so
  // that no name (whatever it holds, ✓ or look-alikes) can draw the same thing. Its
  // meaning is in its label, for screen readers and on hover.
  function verifiedMark(user) {
    const mark = document.createElement('span');
    mark.className = 'verified';
    mark.title = `verified user ${user}`;
    mark.setAttribute('role', 'img');
    mark.setAttribute('aria-label', `verified user ${user}`);
    return mark;
  }

  function setDeleteLabel(b, armed) {
    b.dataset.armed = String(armed);
    b.textContent = armed ? 'Confirm delete' : 'Delete';
    b.setAttribute('aria-label', armed
      ? `Confirm: delete the message from ${b.dataset.name} for everyone`
      : `Delete message from ${b.dataset.name}`);
  }

  function deleteButton(m) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'link-btn delete-btn';
    b.dataset.name = m.name;
    setDeleteLabel(b, false);
    return b;
  }

  function renderMessage(m) {
    const li = document.createElement('li');
    li.className = 'msg';
    if (isMine(m)) li.classList.add('mine');
    li.dataset.seq = String(m.seq);

    const meta = document.createElement('div');
    meta.className = 'meta';
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = m.name;
    meta.append(who);
    const user = verifiedUser(m);
    if (user) meta.append(' ', verifiedMark(user));
    const date = new Date(m.timestamp);
    if (Number.isFinite(date.getTime())) {
      const time = document.createElement('time');
      time.dateTime = date.toISOString();
      time.title = date.toLocaleString();
      time.textContent = formatTime(date);
      meta.append(' ', time);
    }
    if (Number.isSafeInteger(m.edited_at)) meta.append(' ', editedMark(m.edited_at));
    if (isModerator()) meta.append(' ', deleteButton(m));

    const text = document.createElement('p');
    text.className = 'text';
    text.textContent = m.message;

    li.dataset.timestamp = String(m.timestamp);
    if (user) li.dataset.user = user;
    if (m.role === 'service') li.dataset.role = 'service';
    li.append(meta, text);
    if (m.reactions && typeof m.reactions === 'object') reactionCounts.set(m.seq, m.reactions);
    renderReactions(li);
    applyEditable(li);
    return li;
  }

  // ---- edits --------------------------------------------------------------------------

  // "(edited)", with the time of the (last) edit on hover.
  function editedMark(editedAt) {
    const mark = document.createElement('span');
    mark.className = 'edited';
    mark.textContent = '(edited)';
    const date = new Date(editedAt);
    if (Number.isFinite(date.getTime())) mark.title = `edited ${date.toLocaleString()}`;
    return mark;
  }

  // Whether this session may still edit the message in `li`: its own (see sentSeqs),
  // within edit_window_secs by the message's time (the server's clock; the server has
  // the last word, refusing with edit_too_late). With the window unknown, it offers the
  // edit and lets the server decide.
  function canEdit(li) {
    const seq = Number(li.dataset.seq);
    // A message an app's backend published is nobody's to edit.
    if (li.dataset.role === 'service') return false;
    const mine = me.user ? li.dataset.user === me.user : !li.dataset.user && sentSeqs.has(seq);
    if (!mine || limits.editWindowSecs === 0) return false;
    if (limits.editWindowSecs === null) return true;
    return Date.now() < Number(li.dataset.timestamp) + limits.editWindowSecs * 1000;
  }

  // Adds or takes away the message's "Edit" button.
  function applyEditable(li) {
    const b = li.querySelector('.edit-btn');
    const can = canEdit(li);
    if (can && !b) {
      const btn = document.createElement('button');
      btn.type = 'button';
      btn.className = 'link-btn edit-btn';
      btn.textContent = 'Edit';
      btn.setAttribute('aria-label', 'Edit your message');
      const del = li.querySelector('.meta .delete-btn');
      if (del) del.before(btn, ' '); else li.querySelector('.meta').append(' ', btn);
    } else if (!can && b) {
      b.remove();
    }
  }

  function applyEditableAll() {
    for (const li of ui.messages.querySelectorAll('li.msg')) applyEditable(li);
  }

  // An inline editor in place of the text: Enter saves, Shift+Enter a new line, Escape
  // (or Cancel) leaves it unchanged.
  function openEditor(li) {
    if (li.querySelector('.editor')) {
      li.querySelector('.editor textarea').focus();
      return;
    }
    const text = li.querySelector('.text');
    const form = document.createElement('form');
    form.className = 'editor';
    const input = document.createElement('textarea');
    input.rows = 2;
    input.value = text.textContent;
    input.setAttribute('aria-label', 'Edit your message');
    const save = document.createElement('button');
    save.type = 'submit';
    save.textContent = 'Save';
    const cancel = document.createElement('button');
    cancel.type = 'button';
    cancel.className = 'secondary';
    cancel.textContent = 'Cancel';
    const actions = document.createElement('div');
    actions.className = 'actions';
    actions.append(save, cancel);
    form.append(input, actions);
    text.hidden = true;
    text.after(form);
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);

    const close = () => {
      form.remove();
      text.hidden = false;
      const b = li.querySelector('.edit-btn');
      if (b) b.focus(); else li.querySelector('.react-add')?.focus();
    };
    cancel.addEventListener('click', close);
    form.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') {
        ev.preventDefault();
        close();
      } else if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && ev.target === input) {
        ev.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const c = chat;
      const seq = Number(li.dataset.seq);
      const next = input.value.trim();
      if (!c || save.disabled) return;
      if (next === text.textContent) {
        close();
        return;
      }
      if (limits.message !== null && charCount(next) > limits.message) {
        showNotice(`Messages can be at most ${limits.message} characters; this one has ${charCount(next) - limits.message} too many.`);
        return;
      }
      save.disabled = true;
      // The new text comes with the `edited` event (to every tab), before this resolves.
      c.edit(seq, next).then(() => {
        if (c === chat && form.isConnected) close();
      }, (err) => {
        save.disabled = false;
        // A refusal is shown by the `error` event; a closed chat sends no error.
        if (c === chat && err.name === 'ClosedError') showNotice(err.message);
      });
    });
  }

  ui.messages.addEventListener('click', (ev) => {
    const b = ev.target instanceof Element ? ev.target.closest('button.edit-btn') : null;
    const li = b && b.closest('li.msg');
    if (li) openEditor(li);
  });

  function applyEdit(d) {
    const li = ui.messages.querySelector(`li.msg[data-seq="${Number(d.seq)}"]`);
    if (!li) return;
    li.querySelector('.text').textContent = d.message;
    const meta = li.querySelector('.meta');
    const old = meta.querySelector('.edited');
    const mark = editedMark(d.edited_at);
    if (old) old.replaceWith(mark);
    else {
      const time = meta.querySelector('time');
      if (time) time.after(' ', mark); else meta.append(' ', mark);
    }
  }

  // ---- reactions ----------------------------------------------------------------------

  const plural1 = (n, one, many) => `${n} ${n === 1 ? one : many}`;

  // The row under a message: a chip per emoji (press: toggle ours), and a button that
  // opens a small picker.
  function renderReactions(li) {
    const seq = Number(li.dataset.seq);
    const counts = reactionCounts.get(seq) || {};
    const mine = myReactions.get(seq) || new Set();
    let row = li.querySelector(':scope > .reactions');
    if (!row) {
      row = document.createElement('div');
      row.className = 'reactions';
      li.append(row);
    }
    const picker = row.querySelector('.picker');
    const hadFocus = row.contains(document.activeElement) ? document.activeElement : null;
    const focusEmoji = hadFocus && hadFocus.dataset.emoji;
    const items = [];
    for (const [emoji, n] of Object.entries(counts)) {
      if (!Number.isSafeInteger(n) || n <= 0) continue;
      const chip = document.createElement('button');
      chip.type = 'button';
      chip.className = 'chip';
      chip.dataset.emoji = emoji;
      const own = mine.has(emoji);
      chip.setAttribute('aria-pressed', String(own));
      chip.setAttribute('aria-label', `${emoji}: ${plural1(n, 'reaction', 'reactions')}${own ? ', yours among them' : ''}. ${own ? 'Take yours back' : 'React with it'}`);
      const e = document.createElement('span');
      e.className = 'emoji';
      e.textContent = emoji;
      const count = document.createElement('span');
      count.className = 'count';
      count.textContent = String(n);
      chip.append(e, count);
      items.push(chip);
    }
    const add = document.createElement('button');
    add.type = 'button';
    add.className = 'react-add';
    add.textContent = '+☺';
    add.setAttribute('aria-label', 'Add a reaction');
    add.setAttribute('aria-haspopup', 'true');
    add.setAttribute('aria-expanded', String(Boolean(picker)));
    items.push(add);
    if (picker) items.push(picker);
    row.replaceChildren(...items);
    // Keep the keyboard where it was across a re-render.
    if (hadFocus && !row.contains(document.activeElement)) {
      const again = focusEmoji
        ? [...row.querySelectorAll('.chip')].find((c) => c.dataset.emoji === focusEmoji)
        : null;
      (again || (hadFocus.isConnected ? hadFocus : add)).focus();
    }
  }

  function closePicker(row, focusAdd) {
    const picker = row.querySelector('.picker');
    if (!picker) return;
    picker.remove();
    const add = row.querySelector('.react-add');
    add.setAttribute('aria-expanded', 'false');
    if (focusAdd) add.focus();
  }

  function openPicker(row) {
    for (const other of ui.messages.querySelectorAll('.reactions .picker')) {
      if (!row.contains(other)) closePicker(other.parentElement, false);
    }
    const add = row.querySelector('.react-add');
    const picker = document.createElement('div');
    picker.className = 'picker';
    picker.setAttribute('role', 'group');
    picker.setAttribute('aria-label', 'Pick a reaction');
    for (const emoji of PICKER_EMOJI) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'pick';
      b.dataset.pick = emoji;
      b.textContent = emoji;
      b.setAttribute('aria-label', `React with ${emoji}`);
      picker.append(b);
    }
    row.append(picker);
    add.setAttribute('aria-expanded', 'true');
    picker.querySelector('button').focus();
  }

  function toggleReaction(li, emoji) {
    const c = chat;
    const seq = Number(li.dataset.seq);
    if (!c || !Number.isSafeInteger(seq)) return;
    c.react(seq, emoji).then((caused) => {
      if (c !== chat) return;
      // Taken: the counts its `reactions` event brought say whether it added ours or took
      // it back; without them, the toggle flipped what we knew.
      const mine = myReactions.get(seq) || new Set();
      const delta = (caused && changeOf.get(caused) || {})[emoji] || 0;
      const added = delta !== 0 ? delta > 0 : !mine.has(emoji);
      if (added) mine.add(emoji); else mine.delete(emoji);
      myReactions.set(seq, mine);
      if (li.isConnected) renderReactions(li);
    }, (err) => {
      if (c === chat && err.name === 'ClosedError') showNotice(err.message);
    });
  }

  ui.messages.addEventListener('click', (ev) => {
    const target = ev.target instanceof Element ? ev.target : null;
    const li = target && target.closest('li.msg');
    if (!li) return;
    const row = li.querySelector(':scope > .reactions');
    const chip = target.closest('button.chip');
    const add = target.closest('button.react-add');
    const pick = target.closest('button.pick');
    if (chip) {
      toggleReaction(li, chip.dataset.emoji);
    } else if (add) {
      if (row.querySelector('.picker')) closePicker(row, true); else openPicker(row);
    } else if (pick) {
      const emoji = pick.dataset.pick;
      closePicker(row, true);
      // Picking one that is already ours leaves it: taking back is the chip's job.
      if (!(myReactions.get(Number(li.dataset.seq)) || new Set()).has(emoji)) toggleReaction(li, emoji);
    }
  });
  ui.messages.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Escape' || !(ev.target instanceof Element)) return;
    const row = ev.target.closest('.reactions');
    if (row && row.querySelector('.picker')) {
      ev.preventDefault();
      closePicker(row, true);
    }
  });

  function applyReactions(d) {
    const before = reactionCounts.get(d.seq) || {};
    const change = {};
    for (const e of new Set([...Object.keys(before), ...Object.keys(d.counts)])) {
      const n = (d.counts[e] || 0) - (before[e] || 0);
      if (n !== 0) change[e] = n;
    }
    changeOf.set(d, change);
    reactionCounts.set(d.seq, d.counts);
    // A reaction of ours that is gone from the counts (taken back in another tab of the
    // same user) is not ours any more.
    const mine = myReactions.get(d.seq);
    if (mine) for (const e of [...mine]) if (!d.counts[e]) mine.delete(e);
    const li = ui.messages.querySelector(`li.msg[data-seq="${Number(d.seq)}"]`);
    if (li) renderReactions(li);
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
    if (added && (stick || list.some(isMine))) scrollToBottom();
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

  ui.roster.parentElement.addEventListener('scroll', nearRosterEnd, { passive: true });
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
    sentSeqs.clear();
    reactionCounts.clear();
    myReactions.clear();
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

  function isMe(e) {
    if (me.user) return e.user === me.user;
    return !e.user && e.name === (me.name ?? myName);
  }

  function modButton(action, e) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'link-btn mod-btn';
    b.dataset.action = action;
    b.textContent = action === 'kick' ? 'Kick' : 'Mute';
    b.setAttribute('aria-label', `${b.textContent} ${e.name} (user ${e.user})…`);
    b.addEventListener('click', () => openModForm(action, e));
    return b;
  }

  function renderRoster() {
    const items = [];
    let total = 0;
    const entries = [...roster.values()].sort((a, b) => a.name.localeCompare(b.name)
      || String(a.user ?? '').localeCompare(String(b.user ?? '')));
    for (const e of entries) {
      total += e.count;
      const li = document.createElement('li');
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = e.name;
      li.append(who);
      if (e.user) li.append(' ', verifiedMark(e.user));
      if (e.role === 'moderator') {
        const role = document.createElement('span');
        role.className = 'role';
        role.textContent = 'moderator';
        li.append(' ', role);
      }
      const mine = isMe(e);
      if (mine) {
        li.classList.add('me');
        const you = document.createElement('span');
        you.className = 'you';
        you.textContent = ' (you)';
        li.append(you);
      }
      if (e.count > 1) {
        const c = document.createElement('span');
        c.className = 'count';
        c.textContent = `×${e.count}`;
        c.title = `${e.count} sessions`;
        li.append(' ', c);
      }
      // Kick and mute target verified users (anonymous sessions are covered by the rate
      // limits), and never oneself.
      if (isModerator() && e.user && !mine) {
        const actions = document.createElement('span');
        actions.className = 'mod-actions';
        actions.append(modButton('mute', e), modButton('kick', e));
        li.append(actions);
      }
      items.push(li);
    }
    if (rosterMore) {
      // The rest of a big room's roster: loaded on a click, or by scrolling to here.
      const li = document.createElement('li');
      li.className = 'more-members';
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'link-btn';
      b.textContent = loadingMembers ? 'Loading…' : 'Show more';
      b.disabled = loadingMembers;
      b.addEventListener('click', loadMoreMembers);
      li.append(b);
      items.push(li);
    }
    ui.roster.replaceChildren(...items);
    // The room's size from the server: exact even while the list is partial.
    const count = chat && chat.memberCount !== null ? chat.memberCount : total;
    ui.rosterCount.textContent = String(count);
  }

  function loadMoreMembers() {
    const c = chat;
    if (!c || !rosterMore || loadingMembers) return;
    loadingMembers = true;
    renderRoster();
    c.moreMembers().then(
      () => { if (chat === c) rosterMore = !c.membersComplete; },
      () => { /* refused or closed: the button stays to try again */ },
    ).finally(() => {
      if (chat !== c) return;
      loadingMembers = false;
      renderRoster();
      // Still at the bottom (a short page, a tall window): keep loading.
      nearRosterEnd();
    });
  }

  // Loads the next page once the list is scrolled near its end.
  function nearRosterEnd() {
    const box = ui.roster.parentElement;
    if (box && box.scrollTop + box.clientHeight >= box.scrollHeight - 48) loadMoreMembers();
  }

  const rosterKey = (e) => JSON.stringify([e.name, e.user ?? null, e.role ?? null]);
  function rosterPut(e, n = 1) {
    const entry = { name: e.name, user: verifiedUser(e), role: verifiedUser(e) ? e.role ?? null : null };
    const key = rosterKey(entry);
    const old = roster.get(key);
    roster.set(key, { ...entry, count: (old ? old.count : 0) + n });
  }
  function rosterAdd(name) {
    rosterPut({ name });
    renderRoster();
  }
  function rosterReplace(entries) {
    roster.clear();
    for (const e of entries) rosterPut(e);
    renderRoster();
  }
  // `quit` carries only the name. Of several entries with that name, the anonymous one
  // goes first: a verified entry keeps its controls (a kick of a user who left still
  // bars them) until the next join brings the roster afresh.
  function rosterRemove(name) {
    const same = [...roster.entries()].filter(([, e]) => e.name === name);
    const hit = same.find(([, e]) => !e.user) || same[0];
    lastQuit = null;
    if (!hit) {
      renderRoster(); // the count changed
      return;
    }
    const [key, e] = hit;
    if (e.count <= 1) roster.delete(key); else e.count -= 1;
    lastQuit = { name, entry: { name: e.name, user: e.user, role: e.role } };
    renderRoster();
  }
  // Our own `joined` gave only our name: once `ready` says who we are, that entry is us.
  function rosterClaimOwn() {
    if (!me.user || me.name === null) return;
    const key = rosterKey({ name: me.name });
    const e = roster.get(key);
    if (!e) return;
    if (e.count <= 1) roster.delete(key); else e.count -= 1;
    rosterPut(me);
  }

  // ---- moderation ---------------------------------------------------------------------

  const plural = (n, unit) => `${n} ${unit}${n === 1 ? '' : 's'}`;
  function formatSecs(secs) {
    for (const [size, unit] of [[86400, 'day'], [3600, 'hour'], [60, 'minute']]) {
      if (secs >= size && secs % size === 0) return plural(secs / size, unit);
    }
    return plural(secs, 'second');
  }

  function openModForm(action, e) {
    modTarget = { action, user: e.user, name: e.name };
    const options = [];
    const max = limits.moderationSecs;
    const secs = MODERATION_SECS.filter((s) => max === null || s <= max);
    if (max !== null && !secs.includes(max)) secs.push(max);
    for (const s of secs) options.push([s, `for ${formatSecs(s)}`]);
    // 0: a kick that only disconnects; a mute that ends the user's mute.
    options.push([0, action === 'kick' ? 'and let them rejoin at once' : 'no more: unmute']);
    ui.modSecs.replaceChildren(...options.map(([value, label]) => {
      const o = document.createElement('option');
      o.value = String(value);
      o.textContent = label;
      return o;
    }));
    ui.modLabel.textContent = `${action === 'kick' ? 'Kick' : 'Mute'} ${e.name} (user ${e.user})`;
    ui.modApply.textContent = action === 'kick' ? 'Kick' : 'Mute';
    ui.modForm.dataset.action = action;
    ui.modForm.hidden = false;
    ui.modSecs.focus();
  }

  function closeModForm() {
    modTarget = null;
    ui.modForm.hidden = true;
  }

  ui.modForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const c = chat;
    const t = modTarget;
    if (!c || !t) return;
    const secs = Number(ui.modSecs.value);
    closeModForm();
    const done = t.action === 'kick'
      ? (secs ? `${t.name} was removed for ${formatSecs(secs)}.` : `${t.name} was removed.`)
      : (secs ? `${t.name} is muted for ${formatSecs(secs)}.` : `${t.name} is no longer muted.`);
    const p = t.action === 'kick' ? c.kick(t.user, secs) : c.mute(t.user, secs);
    p.then(() => { if (c === chat) showNotice(done); }, (err) => { if (c === chat) showNotice(err.message); });
  });
  ui.modCancel.addEventListener('click', closeModForm);
  ui.modForm.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') closeModForm(); });

  // Delete asks once more: the first click arms the button, a second one within
  // CONFIRM_MS deletes. A deletion cannot be undone.
  ui.messages.addEventListener('click', (ev) => {
    const b = ev.target instanceof Element ? ev.target.closest('button.delete-btn') : null;
    if (!b || b.disabled) return;
    const li = b.closest('li.msg');
    const seq = Number(li && li.dataset.seq);
    const c = chat;
    if (!c || !Number.isSafeInteger(seq)) return;
    if (b.dataset.armed !== 'true') {
      setDeleteLabel(b, true);
      setTimeout(() => {
        if (b.dataset.armed === 'true' && !b.disabled) setDeleteLabel(b, false);
      }, CONFIRM_MS);
      return;
    }
    b.disabled = true;
    b.textContent = 'Deleting…';
    b.setAttribute('aria-label', `Deleting the message from ${b.dataset.name}`);
    // The message goes when `deleted` comes, in every tab alike.
    c.deleteMessage(seq).catch((err) => {
      if (c !== chat) return;
      showNotice(err.message);
      b.disabled = false;
      setDeleteLabel(b, false);
    });
  });

  // After a join: moderators get the controls, everyone else none.
  function applyRole() {
    ui.chat.dataset.moderator = String(isModerator());
    for (const li of ui.messages.querySelectorAll('li.msg')) {
      const b = li.querySelector('.delete-btn');
      if (isModerator() && !b) {
        li.querySelector('.meta').append(' ', deleteButton({ name: li.querySelector('.who').textContent }));
      } else if (!isModerator() && b) {
        b.remove();
      }
    }
    if (!isModerator()) closeModForm();
    renderRoster();
  }

  function showIdentity() {
    ui.identity.hidden = !me.user;
    ui.identity.replaceChildren();
    if (!me.user) return;
    ui.identity.append('Signed in as ', verifiedMark(me.user), ` ${me.user}`);
    if (isModerator()) ui.identity.append(' · moderator');
  }

  // ---- connection ---------------------------------------------------------------------

  // "ana is typing…" under the messages: names as text, never markup.
  function showTyping(typers) {
    const names = typers.map((t) => t.name);
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = 'several people are typing…';
    if (ui.typing.textContent !== text) ui.typing.textContent = text;
  }

  function connect() {
    showTyping([]);
    // With a token the server takes the name from it; the hello's name is still checked,
    // so one the server would refuse is left out.
    const name = token && nameProblem(myName) ? '' : myName;
    const c = new EdgeChat({ base: location.origin, room, name, token: token || undefined });
    chat = c;
    const on = (type, fn) => c.addEventListener(type, (e) => { if (chat === c) fn(e.detail); });
    on('state', onState);
    // v2: the roster arrives whole at each join; live joins and quits follow.
    on('roster', (d) => {
      lastJoined = null;
      rosterMore = d.more === true;
      rosterReplace(d.roster);
      nearRosterEnd();
    });
    on('memberpage', (d) => {
      for (const e of d.members) rosterPut(e);
      rosterMore = d.more === true;
      renderRoster();
    });
    // The quit just before was for a member we had not been listed: undo what it took
    // (if it took anything, it was another member of that name).
    on('unlisted', (d) => {
      if (lastQuit && lastQuit.name === d.name) rosterPut(lastQuit.entry);
      lastQuit = null;
      renderRoster();
    });
    on('joined', (d) => {
      lastJoined = d.name;
      rosterAdd(d.name);
    });
    on('quit', (d) => rosterRemove(d.name));
    on('reset', () => {
      // The room's storage was lost and seqs restarted: start the list afresh.
      clearMessages();
      addDivider('The room’s history was reset. Earlier messages may be missing.');
    });
    on('ready', (d) => {
      // The join sequence ends with our own `joined`, then `ready`.
      me = {
        name: lastJoined,
        user: verifiedUser(d),
        role: verifiedUser(d) && d.role === 'moderator' ? 'moderator' : null,
      };
      rosterClaimOwn();
      // A new connection: an anonymous session can no longer edit what it sent before.
      if (!me.user) sentSeqs.clear();
      applyRole();
      applyEditableAll();
      showIdentity();
      if (d.gap) addDivider('Some messages may be missing here.');
    });
    on('message', (m) => addMessages([m]));
    on('typing', (d) => showTyping(d.typers));
    on('deleted', (d) => removeDeleted(d.seq));
    on('edited', applyEdit);
    on('reactions', applyReactions);
    // A refused message also rejects its send (see the compose form).
    on('error', (d) => showNotice(d.message));
  }

  function onState(d) {
    const reason = d.reason || CLOSE_TEXT[d.code] || (d.code ? `Closed (${d.code})` : '');
    // The close reason, and the server's sentence when it says more.
    const why = d.error && d.error !== reason ? `${reason}: ${d.error}` : reason;
    if (d.state === 'reconnecting' && d.delay !== undefined) {
      setState('reconnecting', `${reason}; retrying in ${Math.max(1, Math.round(d.delay / 1000))} s`);
    } else if (d.state === 'closed') {
      if (d.code === 1008 && d.joining && d.reason === 'Invalid token') {
        // The token was refused (expired, for another room, required but missing…).
        // It will not do better on a retry: forget it. Joining again from the form is
        // then anonymous, which the user chooses knowingly.
        const had = token !== null;
        token = null;
        saveToken(null);
        setState('closed', why);
        showSetup(had
          ? `Your sign-in was refused: ${d.error || reason} Open the chat from your app again to sign in.`
          : d.error || reason);
      } else if (d.code === 1008 && d.joining) {
        // The hello was refused, i.e. the name: let the user fix it.
        setState('closed', reason);
        showSetup(d.error || reason, true);
      } else if (d.code === 4001) {
        // Kicked, now or at the hello: the sentence says whether to try again later.
        setState('closed', why);
        addDivider(d.error || 'A moderator removed you from this room.');
      } else {
        // Policy close: retrying would be refused again.
        setState('closed', `${why}. Reload the page to rejoin.`);
      }
    } else if (d.state !== 'reconnecting' || connState !== 'reconnecting') {
      setState(d.state);
    }
    updateOlder();
    if (d.state === 'live') fillView();
  }

  // A moderator deleted it: it goes from every tab (its text is gone from the server).
  function removeDeleted(seq) {
    const li = ui.messages.querySelector(`li.msg[data-seq="${Number(seq)}"]`);
    if (li) li.remove();
    reactionCounts.delete(seq);
    myReactions.delete(seq);
  }

  function disconnect() {
    const c = chat;
    chat = null;
    if (c) c.close();
    for (const li of [...ui.outbox.children]) removeOutboxItem(li);
    showTyping([]);
    me = { name: null, user: null, role: null };
    lastJoined = null;
    closeModForm();
    showIdentity();
    ui.chat.dataset.moderator = 'false';
    setState('idle');
  }

  function enterRoom(r) {
    disconnect();
    room = r;
    clearMessages();
    roster.clear();
    rosterMore = false;
    loadingMembers = false;
    renderRoster();
    showChat();
    connect();
    ui.messageInput.focus();
  }

  // ---- routing ------------------------------------------------------------------------

  function route() {
    takeTokenFromHash();
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
    } else if (nameProblem(myName) && !token) {
      disconnect();
      room = null;
      showSetup(null, true);
    } else if (r !== room || !chat || chat.state === 'closed') {
      enterRoom(r);
    }
  }

  function takeName() {
    // Signed in by a token, the name comes from it: none is needed.
    if (token && !ui.nameInput.value.trim()) return true;
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
    // The room alone: never a token, whatever the address holds.
    const link = `${location.origin}${location.pathname}#${encodeURIComponent(room || '')}`;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(link).then(done, fail);
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

  function updateNameHint() {
    ui.nameHint.textContent = limits.name !== null
      ? `Up to ${limits.name} characters. Shown to everyone in the room.`
      : 'Shown to everyone in the room.';
    if (token) ui.nameHint.textContent += ' You are signed in by your app, which gives your name: this one is optional.';
  }

  function applyLimits() {
    if (ui.messages) applyEditableAll(); // edit_window_secs may have come
    updateNameHint();
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
    const c = chat;
    c.send(text).then(
      (stored) => {
        removeOutboxItem(pending); // the message itself arrived as a `message` event
        if (c !== chat) return;
        // Ours to edit (see canEdit).
        sentSeqs.add(stored.seq);
        const li = ui.messages.querySelector(`li.msg[data-seq="${Number(stored.seq)}"]`);
        if (li) applyEditable(li);
      },
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
  ui.messageInput.addEventListener('input', () => {
    autosize();
    updateMessageCounter();
    // Typing while there is text; an emptied input stops it (the module throttles).
    if (chat) chat.typing(ui.messageInput.value.trim() !== '');
  });
  ui.nameInput.addEventListener('input', updateNameCounter);

  // "Edit" goes once the edit window is over.
  setInterval(applyEditableAll, EDIT_SWEEP_MS);

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
