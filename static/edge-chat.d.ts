// Types of edge-chat.js, the edge-chat client module (protocol v2, docs/protocol.md).

/** A stored chat message, as the server broadcasts it. */
export interface ChatMessage {
  name: string;
  message: string;
  /** Milliseconds since the Unix epoch (the server's clock). */
  timestamp: number;
  /** 1, 2, 3… per room, without gaps. */
  seq: number;
  /** The verified user id of the sender, on servers with identity. */
  user?: string;
  /** The sender's client id, if it gave one (every send of this module does). */
  cid?: string;
  /** 'service' for a message an app's backend published over HTTP (see docs/protocol.md,
   * "Server-side publish"); absent otherwise. */
  role?: 'service';
  /** Set once the message was edited: when (ms since the Unix epoch, the server's
   * clock); `message` is then the latest text (docs/protocol.md, "Edits"). */
  edited_at?: number;
  /** Reaction counts by emoji, when it has any (docs/protocol.md, "Reactions"). */
  reactions?: Record<string, number>;
}

/** A message's new text (docs/protocol.md, "Edits"). */
export interface EditedDetail {
  seq: number;
  message: string;
  /** Milliseconds since the Unix epoch (the server's clock); null if the frame had none. */
  edited_at: number | null;
}

/** A message's reaction counts, whole: they replace what was known (`{}`: none left). */
export interface ReactionsDetail {
  seq: number;
  counts: Record<string, number>;
}

export interface RosterEntry {
  name: string;
  user?: string;
  role?: string;
}

/** A member typing (docs/protocol.md, "Typing indicators"). */
export interface Typer {
  name: string;
  /** The verified user id, on servers with identity. */
  user?: string;
  /** Tells members with the same name apart: unique among the members present. */
  typer: number;
}

export type ConnectionState = 'idle' | 'connecting' | 'live' | 'reconnecting' | 'closed';

export interface StateDetail {
  state: ConnectionState;
  /** The close code that led here ('reconnecting', 'closed'). */
  code?: number;
  /** The close reason, or the server's last error sentence if the close had none. */
  reason?: string;
  /** The server's last error sentence on that socket (e.g. why a hello was refused). */
  error?: string;
  /** True when the socket closed before its join completed. */
  joining?: boolean;
  /** 'reconnecting': milliseconds until the next attempt. */
  delay?: number;
}

export interface ReadyDetail {
  epoch: string;
  /** The room's newest seq. */
  seq: number;
  /** The join resumed exactly: every message since the last one delivered follows. */
  recovered: boolean;
  /** Messages may be missing between the last one delivered and the next. */
  gap: boolean;
  /** A `reset` event came just before: the room's history restarted. */
  reset: boolean;
  v?: number;
  user?: string;
  role?: string;
}

export interface ResetDetail {
  epoch: string;
  previousEpoch: string;
  seq: number;
  previousSeq: number;
}

export interface HistoryPage {
  /** Ascending by seq; not delivered as `message` events. */
  messages: ChatMessage[];
  /** Older messages are retained: ask again with `messages[0].seq`. */
  more: boolean;
  /** The bound the page was cut at (the request's, or the newest seq + 1). */
  before: number;
}

export interface MemberPage {
  /** The entries of this page, in join order. */
  members: RosterEntry[];
  /** The room's size, this session included. */
  count: number;
  /** More pages remain. */
  more: boolean;
}

export interface EdgeChatEventMap {
  /** A join completed (first connect and every reconnect). */
  ready: CustomEvent<ReadyDetail>;
  /** A chat message, once each, in seq order (the backlog after `ready`, then live). */
  message: CustomEvent<ChatMessage>;
  joined: CustomEvent<{ name: string }>;
  quit: CustomEvent<{ name: string }>;
  /** The other members at each join; `joined`/`quit` follow. In a big room only the
   * first page of them (`more`: pages remain, see `members()`); `count` is how many
   * other members there are. */
  roster: CustomEvent<{ roster: RosterEntry[]; count: number; more: boolean }>;
  /** A page of a paged roster arrived (asked by `members()` or `moreMembers()`). */
  memberpage: CustomEvent<MemberPage>;
  /** The `quit` just before was for a member no page had listed yet: take it back from
   * a count per name (docs/protocol.md, "Member pages"). */
  unlisted: CustomEvent<{ name: string }>;
  /** A moderator deleted message `seq` (servers with moderation). */
  deleted: CustomEvent<{ seq: number }>;
  /** An {"error": sentence, "code"} from the server. `re` is the id of the request it
   * refused (whose promise rejects with it too); null when it answers no request (a
   * kick, a refused hello). */
  error: CustomEvent<{ message: string; code: string | null; re: string | null }>;
  state: CustomEvent<StateDetail>;
  /** The room's epoch changed, or its newest seq went below the last one delivered:
   * seqs restarted. Comes before the `ready` of that join. */
  reset: CustomEvent<ResetDetail>;
  /** The set of other members typing changed: all of them, in the order they started.
   * Each leaves it on `typing_stopped`, `ttl_ms` after its last `typing` frame, or when
   * the connection closes. */
  typing: CustomEvent<{ typers: Typer[] }>;
  /** Message `seq` was edited: live, or replayed by a resume (then possibly an edit
   * already seen: it carries the whole text, apply it as it is). */
  edited: CustomEvent<EditedDetail>;
  /** Message `seq`'s reaction counts changed: live, or replayed by a resume. */
  reactions: CustomEvent<ReactionsDetail>;
}

export interface EdgeChatOptions {
  /** http(s) or ws(s) URL of the server; default: the page's origin. */
  base?: string;
  /** A room name (1–32 of [A-Za-z0-9._-]) or a private room id (64 hex digits). */
  room: string;
  /** Display name; empty or absent joins as "anonymous". */
  name?: string;
  /** A JWT sent in the hello, on servers with identity. */
  token?: string;
  /** The WebSocket constructor: the global one by default; `ws`'s in Node. */
  WebSocket?: new (url: string) => WebSocket;
  /** Where an earlier session stopped, to resume from it. */
  resume?: { epoch: string; seq: number };
  /** Backoff: the first ceiling, ms (500). */
  backoffBaseMs?: number;
  /** Backoff: the largest delay, ms (10,000). */
  backoffMaxMs?: number;
  /** A connection must stay live this long before the backoff starts over, ms (10,000). */
  stableMs?: number;
  /** No `ready` this long after connecting: reconnect, ms (15,000). */
  joinTimeoutMs?: number;
  /** Typing: while keystrokes come, `{"typing": true}` again this often at most, ms
   * (1,500; at most a third of the server's ttl_ms once known). */
  typingRefreshMs?: number;
  /** Typing: no keystroke this long sends `{"typing": false}`, ms (3,000). */
  typingIdleMs?: number;
  /** For tests: time. */
  clock?: {
    now(): number;
    setTimeout(fn: () => void, ms: number): unknown;
    clearTimeout(handle: unknown): void;
  };
  /** For tests: a source of numbers in [0, 1), for the jitter. */
  random?: () => number;
}

export declare const DEFAULTS: Readonly<{
  backoffBaseMs: number;
  backoffMaxMs: number;
  stableMs: number;
  joinTimeoutMs: number;
  typingRefreshMs: number;
  typingIdleMs: number;
}>;

/** Close codes after which the module does not reconnect (1008, 4001). */
export declare const FINAL_CLOSE_CODES: readonly number[];

/** The server refused a request; `message` is its sentence, `code` its stable code
 * (docs/protocol.md, "Error kinds and close reasons"), e.g. 'rate_limited'. */
export declare class RefusedError extends Error {
  constructor(message: string, code?: string | null);
  name: 'RefusedError';
  code: string | null;
}

/** The chat closed before the request was answered. */
export declare class ClosedError extends Error {
  name: 'ClosedError';
  code: number;
}

/** The WebSocket URL of a room. */
export declare function socketUrl(base: string, room: string): string;

export declare class EdgeChat extends EventTarget {
  constructor(options: EdgeChatOptions);
  readonly state: ConnectionState;
  readonly epoch: string | null;
  /** The highest seq delivered. */
  readonly seq: number;
  /** Sends not settled yet. */
  readonly pending: number;
  readonly name: string | undefined;
  readonly room: string;
  /** Resolves with the stored message once the server has it, exactly once however
   * the connection behaves; rejects with RefusedError (the server's sentence and code;
   * also when a moderator deleted the message before a repeat of it was answered) or
   * ClosedError. */
  send(text: string): Promise<ChatMessage>;
  /** A page of up to `limit` messages older than `beforeSeq` (newest when omitted). */
  history(beforeSeq?: number | null, limit?: number | null): Promise<HistoryPage>;
  /** The whole roster, this session included, once every page is in (fetched as needed). */
  members(): Promise<RosterEntry[]>;
  /** The next page of a paged roster (an empty one with `more: false` when complete). */
  moreMembers(): Promise<MemberPage>;
  /** The room's size, this session included; null before the first join. */
  readonly memberCount: number | null;
  /** Every member is in `memberList`. */
  readonly membersComplete: boolean;
  /** The members known so far, this session included, one entry per session. */
  readonly memberList: RosterEntry[];
  /** Moderators: deletes message `seq` for everyone (`{"delete": seq}`). Resolves once
   * the server has taken it (its `ok`); rejects with RefusedError (the server's sentence
   * and code), or with
   * ClosedError if the connection closes first (it may or may not have been taken; a
   * deletion comes back as a `deleted` event on resume). Never sent twice. */
  deleteMessage(seq: number): Promise<void>;
  /** Moderators: closes the sessions of verified user `user` (4001 "Kicked") and refuses
   * its joins for `secs` seconds (default 0). Settles like deleteMessage. */
  kick(user: string, secs?: number): Promise<void>;
  /** Moderators: refuses the messages of verified user `user` for `secs` seconds; 0
   * unmutes. Settles like deleteMessage. */
  mute(user: string, secs: number): Promise<void>;
  /** Edits message `seq` (its author's, within edit_window_secs) to `text`. Resolves
   * once the server has taken it (its `edited` event comes first); rejects with
   * RefusedError (sentence and code, e.g. 'edit_too_late', 'edit_not_yours'), or
   * ClosedError when the chat is not live (nothing is sent: edits are never queued) or
   * closes before the answer (it may or may not have been made). */
  edit(seq: number, text: string): Promise<void>;
  /** Toggles this user's reaction `emoji` (one grapheme) to message `seq`. Settles like
   * `edit`. The new counts come as a `reactions` event just before the answer; it
   * resolves with that event's detail (the same object; null if none came), from which
   * the caller tells whether the toggle added or took back. */
  react(seq: number, emoji: string): Promise<ReactionsDetail | null>;
  /** Typing indicator: `typing(true)` on each keystroke, `typing(false)` when the input
   * is emptied or left. Sent at most every `typingRefreshMs`, stopped after
   * `typingIdleMs` without a keystroke; `send()` ends it too. */
  typing(on?: boolean): void;
  /** The other members typing now, in the order they started. */
  readonly typers: Typer[];
  /** Skips the rest of the current reconnect delay. */
  reconnect(): void;
  /** Leaves for good: closes with 1000 and rejects what is unsettled. */
  close(): void;
  /** The jittered delay before reconnect attempt `attempt` (0-based). */
  backoffDelay(attempt: number): number;

  addEventListener<K extends keyof EdgeChatEventMap>(
    type: K,
    listener: (event: EdgeChatEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof EdgeChatEventMap>(
    type: K,
    listener: (event: EdgeChatEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}
