// edge-chat client module: one room over the edge-chat protocol v2 (docs/protocol.md),
// with exact resume, retry-safe sends and history paging. An ES module with no
// dependencies and no build step; types in edge-chat.d.ts.
//
//   import { EdgeChat } from './edge-chat.js';
//   const chat = new EdgeChat({ base: 'https://chat.example.com', room: 'lobby', name: 'ana' });
//   chat.addEventListener('message', (e) => show(e.detail));
//   const stored = await chat.send('hello'); // { seq, timestamp, … } once stored, exactly once
//
// The guarantees, and how:
// - Every chat message is delivered once, in seq order: the client resumes from the last
//   (epoch, seq) it delivered, and drops any frame at or below that seq.
// - Every request carries an `id`, and the server answers each id exactly once with
//   `"re": id` (its page, its error, or `{"ok": true}`; docs/protocol.md, "Typed errors
//   and request ids"): each promise settles by its own answer, whatever else is in
//   flight. A refusal rejects with a RefusedError carrying the server's sentence and
//   its `code`.
// - `send(text)` gives the message a random `cid`. The promise resolves with the stored
//   chat frame when the server echoes it (live, in a resumed backlog, or as the server's
//   answer to a repeat), and rejects if it is refused. A send that may have been lost
//   with a connection is sent again, with the same cid, after the next join; the server
//   stores a cid only once, so it is stored exactly once.
// - Reconnects use full-jitter exponential backoff (at most 10 s), which only returns to
//   its shortest once a connection has stayed up a while, and stop for good on a close
//   that retrying cannot fix (1008 policy, 4001 kicked).
// - Moderators' `deleteMessage`, `kick` and `mute` settle by their answer too: `ok` or
//   the refusal. One that was sent on a connection that closed before its answer is
//   never sent again (it may have been taken).
// - The roster: in a big room the server sends only its first page at join; `members()`
//   pages through the rest (`{"members": {"after"}}`). The module keeps a count per name
//   (+1 per listed entry, `joined` and `unlisted`, -1 per `quit`), which is the exact
//   roster once the pages are in (docs/protocol.md, "Member pages").
// - Typing indicators: `typing(true)` on each keystroke sends `{"typing": true}` at most
//   every `typingRefreshMs` (and never two typing frames within TYPING_GAP_MS, which
//   keeps within the server's default typing bucket), `{"typing": false}` after
//   `typingIdleMs` without a keystroke or on `typing(false)`; a send ends typing on the
//   server by itself. The `typing` event carries the other members typing, by `typer`,
//   each dropped on `typing_stopped` or `ttl_ms` after its last `typing` frame
//   (docs/protocol.md, "Typing indicators").
// - Edits and reactions: `edit(seq, text)` and `react(seq, emoji)` settle by their
//   answer like a moderator's request. They are only sent on a live connection: made
//   while disconnected, they reject at once with a ClosedError (an edit queued for later
//   could land after the edit window, or after the user has changed their mind; the
//   caller knows better whether to try again). The `edited` and `reactions` events carry
//   the server's frames, live and replayed by a resume; messages (backlog, history)
//   carry `edited_at` with the latest text, and `reactions` counts, as the server sends
//   them (docs/protocol.md, "Edits" and "Reactions").

/** Defaults of the tunable options (see the constructor). */
export const DEFAULTS = Object.freeze({
  backoffBaseMs: 500,
  backoffMaxMs: 10_000,
  // A connection must stay live this long before the backoff starts again from its
  // shortest delay: a server that accepts and then drops us is not hammered.
  stableMs: 10_000,
  // Hello sent but no `ready` by then: give up on the socket and reconnect.
  joinTimeoutMs: 15_000,
  // Typing: while keystrokes come, `{"typing": true}` again this often at most (and at
  // most a third of the server's ttl_ms once a typing frame told it), so the server
  // re-announces the typer before clients expire it.
  typingRefreshMs: 1_500,
  // Typing: no keystroke for this long sends `{"typing": false}`.
  typingIdleMs: 3_000,
});

// Never two typing frames closer than this: with the server's default typing bucket (5,
// then 1 per second) a typing frame is then never refused.
const TYPING_GAP_MS = 1_000;

/** Close codes after which reconnecting cannot help: policy (bad hello, flooding, bad
 * token) and kicked. */
export const FINAL_CLOSE_CODES = Object.freeze([1008, 4001]);

/** The server refused a request: `message` is its sentence, `code` the error's stable
 * code (docs/protocol.md, "Error kinds and close reasons"), e.g. 'rate_limited'. */
export class RefusedError extends Error {
  constructor(message, code = null) {
    super(message);
    this.name = 'RefusedError';
    this.code = code;
  }
}

/** The chat was closed (by `close()`, or by a close that is not retried) before the
 * request was answered. `code` and `reason` are the close's. */
export class ClosedError extends Error {
  constructor(message, code) {
    super(message);
    this.name = 'ClosedError';
    this.code = code;
  }
}

const OPEN = 1; // WebSocket.OPEN, the same for browsers and the `ws` package
const JOIN_TIMEOUT_CODE = 4000; // our own, never sent by a server
// The rejection of a send whose message a moderator deleted before its repeat was
// answered: the server's sentence and code for the same case in v1.
const MESSAGE_DELETED = 'That message was deleted by a moderator.';
const MESSAGE_DELETED_CODE = 'message_deleted';
const UNANSWERED = 'The connection closed before the server answered; the action may or may not have been taken.';

function isChatFrame(f) {
  return f !== null && typeof f === 'object' && typeof f.message === 'string'
    && typeof f.name === 'string' && Number.isSafeInteger(f.seq) && f.seq > 0;
}

/** A new client id: 128 random bits as 32 hex digits (a valid cid: 1–64 of [A-Za-z0-9_-]). */
function newCid() {
  const bytes = new Uint8Array(16);
  if (globalThis.crypto && typeof globalThis.crypto.getRandomValues === 'function') {
    globalThis.crypto.getRandomValues(bytes);
  } else {
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  }
  return `c${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

/** `ws(s)://host/api/room/{room}/websocket` for an http(s) or ws(s) base URL. */
export function socketUrl(base, room) {
  const url = new URL(base);
  const scheme = { 'http:': 'ws:', 'https:': 'wss:', 'ws:': 'ws:', 'wss:': 'wss:' }[url.protocol];
  if (!scheme) throw new TypeError(`EdgeChat: base must be an http(s) or ws(s) URL, got ${base}`);
  const path = url.pathname.replace(/\/+$/, '');
  return `${scheme}//${url.host}${path}/api/room/${encodeURIComponent(room)}/websocket`;
}

export class EdgeChat extends EventTarget {
  #opts;
  #url;
  #WS;
  #clock;
  #random;
  #ws = null;
  #state = 'idle';
  #joining = false;
  #everLive = false;
  #closed = false;
  #held = []; // chat frames of the join burst, delivered after `ready`
  #lastError = '';
  #epoch = null;
  #lastSeq = 0;
  #attempt = 0;
  #liveSince = null;
  #retryTimer = null;
  #joinTimer = null;
  // Unsettled sends by cid, in the order they were made. `socket` is the socket the send
  // went out on, or null while it waits for the next join.
  #outbox = new Map();
  // Unsettled history requests, in order; `socket` as above.
  #histories = [];
  // Requests sent on the current socket and not answered yet, by the `id` they went
  // out with: { send }, { history }, { members: true } or { action } (a moderator's
  // request, an edit or a reaction: settled by its `ok` or its error). The server
  // answers each id exactly once, with `"re": id`.
  #requests = new Map();
  #lastId = 0;
  // Moderator requests not sent yet, in order (each request has an `order`, in the
  // order made, so that requests go out in the order they were made).
  #moderations = [];
  #order = 0;
  // The roster of the current join, as a count per name (see the module comment), with
  // the latest entry seen for each name (its user and role).
  #rosterCounts = new Map();
  #rosterEntries = new Map();
  // The cursor of the next member page; null once the roster is complete.
  #rosterNext = null;
  // The room's size (this session included), as the server last said plus live joins
  // and quits since; null before the first roster.
  #memberCount = null;
  // Callers of members() and moreMembers() waiting for pages, and whether a member page
  // request is unanswered on the current socket.
  #memberWaiters = [];
  #memberAsked = false;
  // Typing: whether the user types (as `typing()` says), what the current socket was
  // last told, when, and the timers of the idle stop and of a frame held for the gap.
  #typingOn = false;
  #typingSent = false;
  #typingLastSent = -Infinity;
  #typingIdleTimer = null;
  #typingGapTimer = null;
  // The other members typing, by `typer`: { name, user?, typer, timer }. And the
  // server's ttl_ms, once a typing frame told it.
  #typers = new Map();
  #typingTtl = null;
  // The code of the last close, for the ClosedError of an edit or reaction made while
  // disconnected (1006 before any close).
  #lastCloseCode = 1006;
  // The detail of the latest `reactions` event on this socket: the server sends a
  // toggle's counts right before its answer, so at the answer this is what it did.
  #lastReactions = null;

  /**
   * @param {object} options
   * @param {string} [options.base] server URL (http, https, ws or wss); default: the page's origin
   * @param {string} options.room room name or private room id
   * @param {string} [options.name] display name
   * @param {string} [options.token] a JWT, sent in the hello (servers with identity)
   * @param {Function} [options.WebSocket] WebSocket constructor; default: the global one
   * @param {{epoch: string, seq: number}} [options.resume] where a previous session stopped
   */
  constructor(options = {}) {
    super();
    const opts = { ...DEFAULTS, ...options };
    const WS = opts.WebSocket || globalThis.WebSocket;
    if (typeof WS !== 'function') throw new TypeError('EdgeChat: no WebSocket constructor (pass options.WebSocket)');
    if (typeof opts.room !== 'string' || !opts.room) throw new TypeError('EdgeChat: options.room is required');
    const base = opts.base || (globalThis.location && globalThis.location.origin);
    if (!base) throw new TypeError('EdgeChat: options.base is required outside a browser page');
    this.#opts = opts;
    this.#url = socketUrl(base, opts.room);
    this.#WS = WS;
    // For tests: injectable time and randomness.
    this.#clock = opts.clock || {
      now: () => Date.now(),
      setTimeout: (fn, ms) => setTimeout(fn, ms),
      clearTimeout: (t) => clearTimeout(t),
    };
    this.#random = opts.random || Math.random;
    if (opts.resume && typeof opts.resume.epoch === 'string' && Number.isSafeInteger(opts.resume.seq)) {
      this.#epoch = opts.resume.epoch;
      this.#lastSeq = Math.max(0, opts.resume.seq);
    }
    // Connect once the caller has had a chance to add listeners.
    queueMicrotask(() => { if (!this.#closed) this.#connect(); });
  }

  /** 'idle' | 'connecting' | 'live' | 'reconnecting' | 'closed' */
  get state() { return this.#state; }
  /** The room's epoch as of the last join (null before the first). */
  get epoch() { return this.#epoch; }
  /** The highest seq delivered as a `message` event (0 before any). */
  get seq() { return this.#lastSeq; }
  /** Sends not settled yet. */
  get pending() { return this.#outbox.size; }
  get name() { return this.#opts.name; }
  /** The number of members in the room, this session included (null before the first
   * join). Exact at every moment, also while the roster is still paged. */
  get memberCount() { return this.#memberCount; }
  /** True once every member is listed (`memberList` is the whole room). */
  get membersComplete() { return this.#rosterNext === null && this.#memberCount !== null; }
  /** The members known so far, this session included, as [{name, user?, role?}], one
   * entry per session (sorted by name). The whole room once `membersComplete`; while
   * the roster is paged, the pages fetched so far plus live joins. */
  get memberList() { return this.#listMembers(); }
  get room() { return this.#opts.room; }
  /** The other members typing now, as [{name, user?, typer}] in the order they started. */
  get typers() { return this.#listTypers(); }

  /**
   * Typing indicator: call `typing(true)` on each keystroke (or input event) and
   * `typing(false)` when the input is emptied or left. The module tells the server
   * (`{"typing": true}` at most every `typingRefreshMs`, `{"typing": false}` after
   * `typingIdleMs` without a keystroke), never faster than its typing bucket allows. A
   * `send()` ends typing by itself.
   */
  typing(on = true) {
    if (this.#closed) return;
    this.#clock.clearTimeout(this.#typingIdleTimer);
    this.#typingIdleTimer = null;
    this.#typingOn = Boolean(on);
    if (this.#typingOn) {
      this.#typingIdleTimer = this.#clock.setTimeout(() => {
        this.#typingIdleTimer = null;
        this.typing(false);
      }, this.#opts.typingIdleMs);
    }
    this.#flushTyping();
  }

  /**
   * Sends a chat message. Resolves with the stored chat frame ({name, message, timestamp,
   * seq, cid, …}) once the server has it; rejects with a RefusedError carrying the
   * server's sentence if it is refused, or a ClosedError if the chat closes first. While
   * disconnected the message waits, and is sent (again, with the same cid) after the
   * next join: it is stored exactly once.
   */
  send(text) {
    if (this.#closed) return Promise.reject(new ClosedError('The chat is closed.', 1000));
    // The server ends our typing when it stores the message: nothing to send for it.
    this.#stopTypingLocally();
    return new Promise((resolve, reject) => {
      const entry = {
        cid: newCid(), text: String(text), resolve, reject, socket: null, order: ++this.#order,
      };
      this.#outbox.set(entry.cid, entry);
      if (this.#state === 'live') this.#transmitSend(entry);
    });
  }

  /**
   * A page of older messages: the newest `limit` (at most the server's
   * history_page_max, its maximum when left out) with a seq below `beforeSeq` (the
   * newest when left out). Resolves with {messages (ascending), more, before}: ask
   * again with the first message's seq while `more` is true. The messages are not
   * `message` events. Waits for a live connection; rejects on a refusal, a reset of the
   * room or a close.
   */
  history(beforeSeq, limit) {
    if (this.#closed) return Promise.reject(new ClosedError('The chat is closed.', 1000));
    const request = {};
    if (beforeSeq !== undefined && beforeSeq !== null) request.before = beforeSeq;
    if (limit !== undefined && limit !== null) request.limit = limit;
    return new Promise((resolve, reject) => {
      const entry = { request, resolve, reject, socket: null, order: ++this.#order };
      this.#histories.push(entry);
      if (this.#state === 'live') this.#transmitHistory(entry);
    });
  }

  /**
   * The whole roster: resolves with `memberList` once every page of it is in (at once
   * when the room's roster came whole). Pages are fetched as needed, one request at a
   * time, each costing one rate-limit token. Waits for a live connection (after a
   * reconnect, it pages the new join's roster); rejects on a refusal or a close.
   */
  members() {
    return this.#askMembers(false);
  }

  /**
   * One more page of a paged roster: resolves with {members, count, more} (`members`:
   * that page's entries; `count`: the room's size, this session included; `more`:
   * whether pages remain), or at once with an empty page when the roster is complete.
   * For a list that loads as it is scrolled.
   */
  moreMembers() {
    return this.#askMembers(true);
  }

  #askMembers(onePage) {
    if (this.#closed) return Promise.reject(new ClosedError('The chat is closed.', 1000));
    return new Promise((resolve, reject) => {
      this.#memberWaiters.push({ onePage, resolve, reject });
      this.#pageMembers();
    });
  }

  /**
   * Moderators (a token with `role: moderator`): deletes message `seq` for everyone.
   * Resolves once the server has taken it (every v2 session, this one included, gets a
   * `deleted` event); rejects with a RefusedError carrying the server's sentence if it
   * is refused, or a ClosedError if the connection closes before the answer (the
   * deletion may or may not have been made then: a resume brings its `deleted`).
   * Waits for a live connection, and goes out after the sends made before it.
   */
  deleteMessage(seq) {
    return this.#moderate({ delete: seq });
  }

  /** Moderators: closes every session of verified user `user` in the room (4001) and
   * refuses its joins for `secs` seconds (0: none). Settles like deleteMessage. */
  kick(user, secs = 0) {
    return this.#moderate({ kick: { user, secs } });
  }

  /** Moderators: refuses the messages of verified user `user` for `secs` seconds; 0
   * unmutes. Settles like deleteMessage. */
  mute(user, secs) {
    return this.#moderate({ mute: { user, secs } });
  }

  /**
   * Edits message `seq` (one this user sent: see docs/protocol.md, "Edits") to `text`.
   * Resolves once the server has taken it (its `edited` event, to every v2 member this
   * session included, comes first); rejects with a RefusedError carrying the server's
   * sentence and code (e.g. 'edit_too_late', 'edit_not_yours'), or with a ClosedError if
   * the chat is not live now (nothing is sent: edits are not queued) or the connection
   * closes before the answer (it may or may not have been made; a resume replays it).
   */
  edit(seq, text) {
    return this.#act({ edit: { seq, message: String(text) } });
  }

  /**
   * Toggles this user's reaction `emoji` (one grapheme) to message `seq`: adds it, or
   * takes it back if it was there. Settles like `edit`; the new counts come as a
   * `reactions` event to every v2 member, this session included, right before the
   * answer, and the promise resolves with that event's detail ({seq, counts}: the very
   * object the event carried), so the caller can tell whether the toggle added or took
   * back. Null if no such event came (a server that sent none).
   */
  react(seq, emoji) {
    return this.#act({ react: { seq, emoji: String(emoji) } }, seq);
  }

  /** An edit or reaction: now, on a live connection, or not at all. A reaction's
   * `reactSeq` says which counts it resolves with. */
  #act(frame, reactSeq) {
    if (this.#closed) return Promise.reject(new ClosedError('The chat is closed.', 1000));
    const ws = this.#ws;
    if (!ws || this.#joining || ws.readyState !== OPEN) {
      return Promise.reject(new ClosedError('Not connected: nothing was sent. Try again once the chat is live.', this.#lastCloseCode));
    }
    return new Promise((resolve, reject) => {
      if (!this.#request(frame, { action: { resolve, reject, reactSeq } })) {
        reject(new ClosedError('Not connected: nothing was sent. Try again once the chat is live.', this.#lastCloseCode));
      }
    });
  }

  #moderate(frame) {
    if (this.#closed) return Promise.reject(new ClosedError('The chat is closed.', 1000));
    return new Promise((resolve, reject) => {
      this.#moderations.push({ frame, resolve, reject, order: ++this.#order });
      if (this.#state === 'live') this.#pump();
    });
  }

  /** Skips the rest of a reconnect delay (e.g. on the browser's `online` event). */
  reconnect() {
    if (!this.#closed && this.#state === 'reconnecting' && !this.#ws) this.#connect();
  }

  /** Leaves the room for good: closes the socket with 1000 and rejects what is unsettled. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#clearTimers();
    this.#stopTypingLocally();
    this.#clearTypers();
    const ws = this.#ws;
    this.#ws = null;
    this.#joining = false;
    if (ws) {
      try { ws.close(1000); } catch { /* already closing */ }
    }
    this.#failAll(new ClosedError('The chat is closed.', 1000));
    this.#setState('closed', { code: 1000, reason: 'Closed by the client' });
  }

  // ---- connection ----------------------------------------------------------------

  #connect() {
    this.#clearTimers();
    let ws;
    try {
      ws = new this.#WS(this.#url);
    } catch (err) {
      // An invalid URL or a blocked port: retrying cannot help.
      this.#closed = true;
      this.#failAll(new ClosedError(String(err && err.message), 1006));
      this.#setState('closed', { code: 1006, reason: String(err && err.message) });
      return;
    }
    this.#ws = ws;
    this.#joining = true;
    this.#held = [];
    this.#requests = new Map();
    this.#lastReactions = null;
    this.#memberAsked = false;
    this.#lastError = '';
    // A new socket: the server knows nothing of our typing, and tells us its typers
    // again after the join.
    this.#typingSent = false;
    this.#clearTypers();
    this.#setState(this.#everLive || this.#attempt > 0 ? 'reconnecting' : 'connecting');
    ws.onopen = () => {
      if (this.#ws !== ws) return;
      const hello = { name: this.#opts.name ?? '', v: 2, batch: true };
      if (this.#opts.token) hello.token = this.#opts.token;
      if (this.#epoch !== null) hello.resume = { epoch: this.#epoch, seq: this.#lastSeq };
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (ev) => {
      if (this.#ws !== ws || typeof ev.data !== 'string') return;
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      if (frame === null || typeof frame !== 'object') return;
      // Batch mode: several frames in one WebSocket message, in order.
      const frames = Array.isArray(frame.batch) ? frame.batch : [frame];
      for (const f of frames) {
        if (this.#ws !== ws) return; // closed by an earlier frame of the batch
        if (f !== null && typeof f === 'object') this.#handle(f);
      }
    };
    ws.onerror = () => { /* a close event follows */ };
    ws.onclose = (ev) => {
      if (this.#ws === ws) this.#onClose(ev.code, ev.reason || '');
    };
    this.#joinTimer = this.#clock.setTimeout(() => {
      if (this.#ws !== ws || !this.#joining) return;
      try { ws.close(JOIN_TIMEOUT_CODE, 'Join timed out'); } catch { /* closing */ }
      this.#onClose(JOIN_TIMEOUT_CODE, 'Join timed out');
    }, this.#opts.joinTimeoutMs);
  }

  #handle(f) {
    if ('error' in f) this.#onError(String(f.error), f);
    else if (f.ok === true) this.#onOk(f);
    else if (isChatFrame(f)) this.#onChat(f);
    else if (f.edited !== null && typeof f.edited === 'object') this.#onEdited(f.edited);
    else if (f.reactions !== null && typeof f.reactions === 'object') this.#onReactions(f.reactions);
    else if (Array.isArray(f.history)) this.#onHistory(f);
    else if (Array.isArray(f.roster)) this.#onRoster(f);
    else if (f.members !== null && typeof f.members === 'object') this.#onMembers(f.members, f.re);
    else if (typeof f.joined === 'string') {
      this.#countMember({ name: f.joined }, 1);
      if (this.#memberCount !== null) this.#memberCount += 1;
      this.#emit('joined', { name: f.joined });
    } else if (typeof f.quit === 'string') {
      this.#countMember({ name: f.quit }, -1);
      if (this.#memberCount !== null) this.#memberCount -= 1;
      this.#emit('quit', { name: f.quit });
    }
    else if (Number.isSafeInteger(f.deleted)) this.#onDeleted(f);
    else if (f.ready === true) this.#onReady(f);
    else if (f.typing !== null && typeof f.typing === 'object') this.#onTyping(f.typing);
    else if (f.typing_stopped !== null && typeof f.typing_stopped === 'object') {
      this.#dropTyper(f.typing_stopped.typer);
    }
    // Anything else is a frame kind this module does not know yet: ignored.
  }

  /** The roster at join: whole, or its first page with the count and a cursor. */
  #onRoster(f) {
    const roster = f.roster.filter((e) => e && typeof e.name === 'string');
    this.#rosterCounts = new Map();
    this.#rosterEntries = new Map();
    for (const e of roster) this.#countMember(e, 1);
    this.#rosterNext = typeof f.next === 'string' ? f.next : null;
    // The others; our own `joined` follows and counts us.
    this.#memberCount = Number.isSafeInteger(f.count) ? f.count : roster.length;
    this.#emit('roster', { roster, count: this.#memberCount, more: this.#rosterNext !== null });
  }

  /** `{"members": {"page", "count", "next"}}` or `{"members": {"unlisted": name}}`. */
  #onMembers(m, re) {
    if (typeof m.unlisted === 'string') {
      // The `quit` just before was for a member our pages had not listed: undo its -1.
      this.#countMember({ name: m.unlisted }, 1);
      this.#emit('unlisted', { name: m.unlisted });
      return;
    }
    if (!Array.isArray(m.page) || !this.#takeRequest(re)?.members) return;
    this.#memberAsked = false;
    const page = m.page.filter((e) => e && typeof e.name === 'string');
    for (const e of page) this.#countMember(e, 1);
    this.#rosterNext = typeof m.next === 'string' ? m.next : null;
    if (Number.isSafeInteger(m.count)) this.#memberCount = m.count + 1;
    const more = this.#rosterNext !== null;
    this.#emit('memberpage', { members: page, count: this.#memberCount, more });
    const waiters = this.#memberWaiters;
    this.#memberWaiters = [];
    for (const w of waiters) {
      if (w.onePage) w.resolve({ members: page, count: this.#memberCount, more });
      else this.#memberWaiters.push(w);
    }
    this.#pageMembers();
    this.#pump();
  }

  #countMember(e, n) {
    const count = (this.#rosterCounts.get(e.name) || 0) + n;
    if (count === 0) this.#rosterCounts.delete(e.name); else this.#rosterCounts.set(e.name, count);
    // A roster entry says more (user, role) than a `joined`: keep the fullest.
    if (n > 0 && (e.user !== undefined || !this.#rosterEntries.has(e.name))) {
      this.#rosterEntries.set(e.name, { ...e });
    }
  }

  #listMembers() {
    const list = [];
    for (const [name, count] of this.#rosterCounts) {
      const entry = this.#rosterEntries.get(name) || { name };
      for (let k = 0; k < count; k++) list.push({ ...entry });
    }
    return list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Serves the callers of members() and moreMembers(): at once when the roster is
   * complete, else with one member page request at a time, once live. */
  #pageMembers() {
    if (this.#memberWaiters.length === 0) return;
    const ws = this.#ws;
    if (!ws || this.#joining || ws.readyState !== OPEN || this.#memberCount === null) return;
    if (this.#rosterNext === null) {
      const waiters = this.#memberWaiters;
      this.#memberWaiters = [];
      for (const w of waiters) {
        if (w.onePage) w.resolve({ members: [], count: this.#memberCount, more: false });
        else w.resolve(this.#listMembers());
      }
      return;
    }
    if (this.#memberAsked) return;
    if (!this.#request({ members: { after: this.#rosterNext } }, { members: true })) {
      return; // closing: the next join pages again
    }
    this.#memberAsked = true;
  }

  #onChat(f) {
    if (this.#joining) {
      this.#held.push(f);
    } else {
      this.#accept(f);
    }
  }

  /** A chat frame: settles our send if it carries its cid, and is delivered unless
   * already seen. */
  #accept(f) {
    if (typeof f.cid === 'string') {
      const entry = this.#outbox.get(f.cid);
      if (entry) {
        // Its `ok` follows; it has nothing more to settle.
        this.#outbox.delete(f.cid);
        entry.resolve(f);
      }
    }
    if (f.seq > this.#lastSeq) {
      this.#lastSeq = f.seq;
      this.#emit('message', f);
    }
  }

  /** A tombstone. With our cid, it answers the repeat of a send whose message a
   * moderator deleted meanwhile: that send rejects (its message is gone), as if refused. */
  #onDeleted(f) {
    this.#emit('deleted', { seq: f.deleted });
    if (typeof f.cid !== 'string') return;
    const entry = this.#outbox.get(f.cid);
    if (!entry) return;
    this.#outbox.delete(f.cid);
    entry.reject(new RefusedError(MESSAGE_DELETED, MESSAGE_DELETED_CODE));
  }

  /** `{"edited": {seq, message, edited_at}}`: live, or replayed by a resume (before the
   * gap, for messages already delivered). It carries the whole text: applying it twice
   * is harmless. */
  #onEdited(e) {
    if (!Number.isSafeInteger(e.seq) || typeof e.message !== 'string') return;
    const editedAt = Number.isSafeInteger(e.edited_at) ? e.edited_at : null;
    this.#emit('edited', { seq: e.seq, message: e.message, edited_at: editedAt });
  }

  /** `{"reactions": {seq, counts}}`: the whole new counts of message `seq`. */
  #onReactions(r) {
    if (!Number.isSafeInteger(r.seq) || r.counts === null || typeof r.counts !== 'object') return;
    const counts = {};
    for (const [emoji, n] of Object.entries(r.counts)) {
      if (Number.isSafeInteger(n) && n > 0) counts[emoji] = n;
    }
    this.#lastReactions = { seq: r.seq, counts };
    this.#emit('reactions', this.#lastReactions);
  }

  #onHistory(f) {
    const req = this.#takeRequest(f.re);
    if (!req?.history) return;
    const entry = req.history;
    this.#dropHistory(entry);
    entry.resolve({
      messages: f.history.filter(isChatFrame),
      more: f.more === true,
      before: f.before,
    });
  }

  /** `{"ok": true, "re"}`: a moderator request, edit or reaction was taken. A send's
   * `ok` (with its seq) follows its chat frame, which settled it already. */
  #onOk(f) {
    const req = this.#takeRequest(f.re);
    if (!req?.action) return;
    const { reactSeq } = req.action;
    if (reactSeq === undefined) req.action.resolve();
    else req.action.resolve(this.#lastReactions?.seq === reactSeq ? this.#lastReactions : null);
  }

  /** An error frame. With `re`, the refusal of that request; without, it answers none
   * of ours (a kick, a refused hello): an `error` event only, as every error is. */
  #onError(sentence, f) {
    const code = typeof f.code === 'string' ? f.code : null;
    const re = typeof f.re === 'string' ? f.re : null;
    this.#lastError = sentence;
    this.#emit('error', { message: sentence, code, re });
    const req = this.#takeRequest(re);
    if (!req) return;
    const err = new RefusedError(sentence, code);
    if (req.members) {
      this.#memberAsked = false;
      for (const w of this.#memberWaiters.splice(0)) w.reject(err);
    } else if (req.history) {
      this.#dropHistory(req.history);
      req.history.reject(err);
    } else if (req.action) {
      req.action.reject(err);
    } else if (this.#outbox.get(req.send.cid) === req.send) {
      this.#outbox.delete(req.send.cid);
      req.send.reject(err);
    }
  }

  /** The request that went out with `id` on this socket, forgotten: it is answered. */
  #takeRequest(id) {
    if (typeof id !== 'string') return null;
    const req = this.#requests.get(id);
    if (req) this.#requests.delete(id);
    return req || null;
  }

  #onReady(f) {
    if (!this.#joining) return;
    this.#joining = false;
    this.#clock.clearTimeout(this.#joinTimer);
    const epoch = typeof f.epoch === 'string' ? f.epoch : null;
    const seq = Number.isSafeInteger(f.seq) ? f.seq : 0;
    const previousEpoch = this.#epoch;
    const previousSeq = this.#lastSeq;
    const reset = previousEpoch !== null && (epoch !== previousEpoch || seq < previousSeq);
    const held = this.#held;
    this.#held = [];
    this.#epoch = epoch;
    if (reset) {
      // The room's history restarted (storage lost): seqs mean other messages now.
      this.#lastSeq = 0;
      const err = new RefusedError('The room was reset; ask again.');
      for (const entry of this.#histories.splice(0)) entry.reject(err);
      this.#emit('reset', { epoch, previousEpoch, seq, previousSeq });
    }
    const recovered = f.recovered === true;
    // Not resumed, yet the room moved on: unless the backlog starts right after the
    // last message delivered, some in between are missing.
    const gap = !reset && previousEpoch !== null && !recovered && seq > previousSeq
      && !held.some((m) => m.seq === previousSeq + 1);
    this.#liveSince = this.#clock.now();
    this.#everLive = true;
    // Still not 'live' while the listeners below run: a send they make queues behind
    // the older ones, and goes out in order with them.
    this.#emit('ready', {
      epoch, seq, recovered, gap, reset, v: f.v, user: f.user, role: f.role,
    });
    for (const m of held) this.#accept(m);
    // Whatever the backlog did not settle goes out again, in order, with its cid.
    this.#pump();
    this.#setState('live');
  }

  #onClose(code, reason) {
    const ws = this.#ws;
    this.#ws = null;
    // Nobody will tell us when these stop; the next join tells who types then.
    this.#typingSent = false;
    this.#clearTypers();
    const wasJoining = this.#joining;
    this.#joining = false;
    this.#held = [];
    this.#clock.clearTimeout(this.#joinTimer);
    const lost = [...this.#requests.values()];
    this.#requests = new Map();
    this.#lastCloseCode = code;
    if (code === 1009) {
      // A frame over the server's size cap closes the socket unanswered; the largest
      // unanswered send is the culprit, and sending it again would do the same.
      let worst = null;
      for (const r of lost) {
        const e = r.send && this.#outbox.get(r.send.cid);
        if (e && (!worst || e.text.length > worst.text.length)) worst = e;
      }
      if (worst) {
        this.#outbox.delete(worst.cid);
        worst.reject(new RefusedError('Message too big', 'too_big'));
      }
    }
    for (const entry of this.#outbox.values()) if (entry.socket === ws) entry.socket = null;
    for (const entry of this.#histories) if (entry.socket === ws) entry.socket = null;
    // A moderator frame, edit or reaction is not sent again on the next connection: the
    // module cannot know whether the server took it (what it did comes back in the
    // resume), and a reaction sent twice would take itself back.
    for (const r of lost) if (r.action) r.action.reject(new ClosedError(UNANSWERED, code));
    const stable = this.#liveSince !== null && this.#clock.now() - this.#liveSince >= this.#opts.stableMs;
    this.#liveSince = null;
    if (this.#closed) return;
    const detail = { code, reason: reason || this.#lastError, error: this.#lastError, joining: wasJoining };
    if (FINAL_CLOSE_CODES.includes(code)) {
      this.#closed = true;
      this.#failAll(new ClosedError(detail.reason || `Closed (${code})`, code));
      this.#setState('closed', detail);
      return;
    }
    if (stable) this.#attempt = 0;
    const delay = this.backoffDelay(this.#attempt);
    this.#attempt++;
    this.#setState('reconnecting', { ...detail, delay });
    this.#retryTimer = this.#clock.setTimeout(() => {
      this.#retryTimer = null;
      if (!this.#closed && !this.#ws) this.#connect();
    }, delay);
  }

  /** Full jitter: a uniformly random delay up to min(backoffMaxMs, base · 2^attempt). */
  backoffDelay(attempt) {
    const { backoffBaseMs: base, backoffMaxMs: max } = this.#opts;
    const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 30));
    return Math.floor(this.#random() * ceiling);
  }

  // ---- helpers -------------------------------------------------------------------

  /** Sends what waits, in the order it was asked for: the sends, history and moderator
   * requests not sent on this socket. Each settles by its own answer, so none waits
   * for another. */
  #pump() {
    const ws = this.#ws;
    if (!ws || this.#joining || ws.readyState !== OPEN) return;
    const due = [...this.#moderations];
    for (const entry of this.#outbox.values()) if (entry.socket !== ws) due.push(entry);
    for (const entry of this.#histories) if (entry.socket !== ws) due.push(entry);
    due.sort((a, b) => a.order - b.order);
    for (const entry of due) {
      if (entry.frame) this.#transmitModeration(entry);
      else if (entry.request) this.#transmitHistory(entry);
      else this.#transmitSend(entry);
    }
    this.#pageMembers();
    this.#flushTyping();
  }

  // ---- typing --------------------------------------------------------------------

  /** Tells the server what `typing()` said, if it differs from what it was told (or a
   * refresh is due), once live, and never two
   * typing frames within TYPING_GAP_MS (a frame due sooner waits for the gap). */
  #flushTyping() {
    const ws = this.#ws;
    if (!ws || this.#joining || ws.readyState !== OPEN) return;
    const now = this.#clock.now();
    let refresh = this.#opts.typingRefreshMs;
    if (this.#typingTtl !== null) refresh = Math.min(refresh, Math.floor(this.#typingTtl / 3));
    const due = this.#typingOn !== this.#typingSent
      || (this.#typingOn && now - this.#typingLastSent >= refresh);
    if (!due) return;
    const wait = this.#typingLastSent + TYPING_GAP_MS - now;
    if (wait > 0) {
      if (this.#typingGapTimer === null) {
        this.#typingGapTimer = this.#clock.setTimeout(() => {
          this.#typingGapTimer = null;
          this.#flushTyping();
        }, wait);
      }
      return;
    }
    try {
      ws.send(JSON.stringify({ typing: this.#typingOn }));
    } catch {
      return; // closing: the next join starts afresh
    }
    this.#typingSent = this.#typingOn;
    this.#typingLastSent = now;
  }

  /** Typing ended without a frame of ours (a send ends it on the server). */
  #stopTypingLocally() {
    this.#clock.clearTimeout(this.#typingIdleTimer);
    this.#clock.clearTimeout(this.#typingGapTimer);
    this.#typingIdleTimer = null;
    this.#typingGapTimer = null;
    this.#typingOn = false;
    this.#typingSent = false;
  }

  /** `{"typing": {name, user?, typer, ttl_ms}}`: a member started typing (or is still
   * typing: the server re-announces). Expires `ttl_ms` after, unless announced again. */
  #onTyping(t) {
    if (typeof t.name !== 'string' || !Number.isSafeInteger(t.typer)) return;
    const ttl = Number.isSafeInteger(t.ttl_ms) && t.ttl_ms > 0 ? t.ttl_ms : 5_000;
    this.#typingTtl = ttl;
    const user = typeof t.user === 'string' ? t.user : undefined;
    let entry = this.#typers.get(t.typer);
    // Another name under a known typer is another member (the old one left).
    const changed = !entry || entry.name !== t.name || entry.user !== user;
    if (entry) this.#clock.clearTimeout(entry.timer);
    if (changed) {
      this.#typers.delete(t.typer);
      entry = { name: t.name, typer: t.typer, timer: null };
      if (user !== undefined) entry.user = user;
      this.#typers.set(t.typer, entry);
    }
    const mine = entry;
    entry.timer = this.#clock.setTimeout(() => {
      if (this.#typers.get(t.typer) === mine) this.#dropTyper(t.typer);
    }, ttl);
    if (changed) this.#emitTypers();
  }

  #dropTyper(typer) {
    const known = this.#typers.get(typer);
    if (!known) return;
    this.#clock.clearTimeout(known.timer);
    this.#typers.delete(typer);
    this.#emitTypers();
  }

  #clearTypers() {
    if (this.#typers.size === 0) return;
    for (const t of this.#typers.values()) this.#clock.clearTimeout(t.timer);
    this.#typers.clear();
    this.#emitTypers();
  }

  #listTypers() {
    return [...this.#typers.values()].map(({ timer, ...t }) => t);
  }

  #emitTypers() {
    this.#emit('typing', { typers: this.#listTypers() });
  }

  /** Sends `frame` with a new request id, remembering `req` under it until its answer
   * (see #takeRequest). False if the socket cannot send. */
  #request(frame, req) {
    const ws = this.#ws;
    if (!ws || ws.readyState !== OPEN) return false;
    const id = `q${++this.#lastId}`;
    try {
      ws.send(JSON.stringify({ ...frame, id }));
    } catch {
      return false; // closing: the close event requeues what waits
    }
    this.#requests.set(id, req);
    return true;
  }

  /** A moderator frame; it is never sent twice (see #onClose). */
  #transmitModeration(entry) {
    if (!this.#request(entry.frame, { action: entry })) return;
    const i = this.#moderations.indexOf(entry);
    if (i >= 0) this.#moderations.splice(i, 1);
  }

  #transmitSend(entry) {
    if (!this.#request({ message: entry.text, cid: entry.cid }, { send: entry })) return;
    entry.socket = this.#ws;
  }

  #transmitHistory(entry) {
    if (!this.#request({ history: entry.request }, { history: entry })) return;
    entry.socket = this.#ws;
  }

  #dropHistory(entry) {
    const i = this.#histories.indexOf(entry);
    if (i >= 0) this.#histories.splice(i, 1);
  }

  #failAll(err) {
    const sends = [...this.#outbox.values()];
    this.#outbox.clear();
    const histories = this.#histories.splice(0);
    const moderations = this.#moderations.splice(0);
    for (const r of this.#requests.values()) if (r.action) moderations.push(r.action);
    this.#requests = new Map();
    for (const e of sends) e.reject(err);
    for (const e of histories) e.reject(err);
    for (const e of moderations) e.reject(err);
    for (const w of this.#memberWaiters.splice(0)) w.reject(err);
  }

  #clearTimers() {
    this.#clock.clearTimeout(this.#typingGapTimer);
    this.#typingGapTimer = null;
    if (this.#retryTimer !== null) this.#clock.clearTimeout(this.#retryTimer);
    if (this.#joinTimer !== null) this.#clock.clearTimeout(this.#joinTimer);
    this.#retryTimer = null;
    this.#joinTimer = null;
  }

  #setState(state, detail = {}) {
    this.#state = state;
    this.#emit('state', { state, ...detail });
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
