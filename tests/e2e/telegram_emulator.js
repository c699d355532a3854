#!/usr/bin/env node
/*
 * Test-only launcher of the `telegram-test-api` 4.2.1 emulator of the Telegram Bot API.
 *
 *   node telegram_emulator.js [--modules DIR] [--host 127.0.0.1] [--port 0] [--exit-on-stdin-close]
 *
 * --modules (or env TELEGRAM_TEST_API_MODULES) is the node_modules folder that holds the package,
 * by default <repo>/.test-cache/tg/node_modules. Port 0 picks a free port. Once listening it prints
 * one JSON line on stdout: {"port": 12345}. Everything else goes to stderr.
 *
 * The emulator keeps its storage, message/update counters, webhooks and client routes
 * (/sendMessage, /sendCommand, /sendCallback, /getUpdates, /getUpdatesHistory). This launcher puts an
 * express app in front of it that answers the Bot API itself (/bot<TOKEN>/<method>, case-insensitive,
 * GET or POST with JSON, urlencoded or multipart bodies) where 4.2.1 falls short of the real API:
 *   - getMe returns a full User (is_bot); sent messages are full Message objects (date in seconds,
 *     `from`, media objects) and are logged per chat with edits and deletions;
 *   - getUpdates confirms updates by `offset` and long-polls for `timeout` seconds like Telegram;
 *     callback queries carry `chat_instance` and the bot message the button belonged to;
 *   - groups (negative chat ids): client messages and presses there need `from`; the chat's type
 *     and title, as the client gave them, show on the bot's messages to it;
 *   - replies: a client message's `reply_to_message` ({message_id} is enough) or `reply_to_message_id`
 *     becomes the full message of that chat (the bot's, with `from` = the bot); the bot's own
 *     reply_to_message_id / reply_parameters put the quoted message in what it gets back;
 *   - sendDocument/sendPhoto/... (multipart uploads with attach://, URLs or file_ids), edit*,
 *     deleteMessage, answerCallbackQuery, sendChatAction, set/get/deleteMyCommands, webhooks, getFile;
 *   - Telegram's checks that catch real bugs: HTML parse_mode entities, text and caption length,
 *     an uploaded photo that is not a picture (IMAGE_PROCESS_FAILED) or has dimensions Telegram refuses
 *     (a PNG's own width and height are what the message's photo then says),
 *     inline keyboard shape and callback_data size, "message is not modified", double answers,
 *     a callback answer over 200 characters, a reply to a deleted message;
 *   - an unknown method answers 404 {ok:false, error_code:404, description:"Not Found: method not found"};
 *   - Telegram's flood control, on by default (see "flood control" below): about 1 message a second
 *     per private chat with short bursts, 20 a minute per group, 30 a second per bot; past a limit
 *     429 "Too Many Requests: retry after N" with parameters.retry_after. A send inside a
 *     retry_after the bot was given is refused again and recorded as a violation;
 *   - a basic group upgraded to a supergroup (/test/upgradeGroup): a new -100... id, every call
 *     naming the old id answers 400 "group chat was upgraded to a supergroup chat" with
 *     parameters.migrate_to_chat_id, and the bot gets the two service messages Telegram sends.
 * Test-only routes: POST /test/failNext, /test/injectUpdate, /test/botMessages, /test/calls,
 * /test/limits, /test/violations, /test/upgradeGroup, GET /test/files/<file_id> (an uploaded
 * file's bytes), GET /test/health.
 */
'use strict';

const path = require('path');
const crypto = require('crypto');
const { createRequire } = require('module');

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) continue;
    const eq = arg.indexOf('=');
    if (eq > 0) {
      out[arg.slice(2, eq)] = arg.slice(eq + 1);
    } else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) {
      out[arg.slice(2)] = argv[++i];
    } else {
      out[arg.slice(2)] = true;
    }
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
const modulesDir = path.resolve(
  args.modules
    || process.env.TELEGRAM_TEST_API_MODULES
    || path.join(__dirname, '..', '..', '.test-cache', 'tg', 'node_modules'),
);
const host = args.host || '127.0.0.1';
const port = Number(args.port || 0);
const verbose = Boolean(args.verbose) || process.env.TELEGRAM_EMULATOR_LOG === '1';

const pkgDir = path.join(modulesDir, 'telegram-test-api');
const TelegramServer = require(pkgDir);
// express is the emulator's own dependency: resolve it from the package, wherever npm put it.
const express = createRequire(path.join(pkgDir, 'package.json'))('express');

const log = (...parts) => process.stderr.write(`[telegram-emulator] ${parts.join(' ')}\n`);

// ---------------------------------------------------------------- errors and small helpers

class ApiError extends Error {
  constructor(code, description, parameters) {
    super(description);
    this.code = code;
    this.description = description;
    this.parameters = parameters;
  }
}

const badRequest = (what) => new ApiError(400, `Bad Request: ${what}`);
const nowSec = () => Math.floor(Date.now() / 1000);
const clone = (value) => (value === undefined ? undefined : JSON.parse(JSON.stringify(value)));
const key = (...parts) => parts.map(String).join('|');
const randomId = (n = 12) => crypto.randomBytes(n).toString('base64url');

function sendOk(res, result) {
  res.status(200).json({ ok: true, result });
}

function sendError(res, code, description, parameters) {
  const body = { ok: false, error_code: code, description };
  if (parameters) body.parameters = parameters;
  res.status(code).json(body);
}

// ---------------------------------------------------------------- state kept beside the emulator

const state = {
  seq: 1,
  calls: [], // every Bot API call: {seq, time, token, method, params, files, ok, error_code?, description?}
  chats: new Map(), // token|chat -> [entry] everything the bot sent to that chat, in order
  userMessages: new Map(), // token|chat|message_id -> {deleted, message} (message: as the bot got it)
  users: new Map(), // token|chat -> the user who last wrote in that private chat
  groups: new Map(), // token|chat -> {type, title, username?} of a group the client wrote in
  failures: [], // {token|null, method (lower case), error}
  waiters: new Map(), // token -> a pending long-polling getUpdates
  allowedUpdates: new Map(), // token -> [update types]
  callbacks: new Map(), // token|query id -> {answered}
  commands: new Map(), // token|scope|language -> [BotCommand]
  files: new Map(), // file_id -> {file_id, file_unique_id, file_name, mime_type, file_size, file_path, data}
  filesByPath: new Map(),
  fileSeq: 1,
  limits: new Map(), // token -> flood limits of that bot (LIMIT_DEFAULTS unless a test changed them)
  flood: new Map(), // token -> {overall: [ms], chats: Map(chat -> [ms] or bucket), holds: Map(scope -> ms)}
  violations: [], // {token, seq, method, chat_id, scope, early_ms}: sends inside a retry_after
  migrations: new Map(), // token|old group -> the supergroup it was upgraded to
};

const BOT_FIRST_NAME = process.env.TELEGRAM_EMULATOR_BOT_NAME || 'Leadbot Test';
const BOT_USERNAME = process.env.TELEGRAM_EMULATOR_BOT_USERNAME || 'leadbot_test_bot';

function botUser(token) {
  return {
    id: Number(token.split(':')[0]),
    is_bot: true,
    first_name: BOT_FIRST_NAME,
    username: BOT_USERNAME,
  };
}

function chatObject(token, chatId) {
  if (chatId > 0) {
    const user = state.users.get(key(token, chatId)) || {};
    const chat = { id: chatId, type: 'private', first_name: user.first_name || 'Test' };
    if (user.last_name) chat.last_name = user.last_name;
    if (user.username) chat.username = user.username;
    return chat;
  }
  const group = state.groups.get(key(token, chatId));
  if (group) return { id: chatId, ...group };
  return { id: chatId, ...defaultGroup(chatId) };
}

function defaultGroup(chatId) {
  return { type: String(chatId).startsWith('-100') ? 'supergroup' : 'group', title: 'Test group' };
}

const chatInstance = (token, chatId) => String(
  BigInt.asUintN(63, BigInt(`0x${crypto.createHash('sha1').update(key(token, chatId)).digest('hex').slice(0, 16)}`)),
);

function chatLog(token, chatId) {
  const k = key(token, chatId);
  if (!state.chats.has(k)) state.chats.set(k, []);
  return state.chats.get(k);
}

function findEntry(token, chatId, messageId) {
  return chatLog(token, chatId).find((e) => e.message_id === messageId);
}

// ---------------------------------------------------------------- parameters

const JSON_KEYS = new Set([
  'reply_markup', 'commands', 'scope', 'entities', 'caption_entities', 'link_preview_options',
  'reply_parameters', 'allowed_updates', 'media', 'menu_button', 'rights', 'message_ids',
]);
const INT_KEYS = new Set([
  'chat_id', 'message_id', 'reply_to_message_id', 'message_thread_id', 'offset', 'limit', 'timeout',
  'cache_time', 'user_id', 'from_chat_id', 'duration', 'width', 'height', 'max_connections',
]);
const BOOL_KEYS = new Set([
  'disable_notification', 'protect_content', 'show_alert', 'drop_pending_updates',
  'disable_web_page_preview', 'allow_sending_without_reply', 'has_spoiler',
  'disable_content_type_detection', 'for_channels', 'show_caption_above_media',
]);

function normalizeParams(raw) {
  const params = {};
  for (const [name, value] of Object.entries(raw || {})) {
    let v = value;
    if (typeof v === 'string') {
      if (JSON_KEYS.has(name)) {
        try { v = JSON.parse(v); } catch (_e) { /* left as a string: the method's check answers */ }
      } else if (INT_KEYS.has(name) && /^-?\d+$/.test(v)) {
        v = Number(v);
      } else if (BOOL_KEYS.has(name) && (v === 'true' || v === 'false')) {
        v = v === 'true';
      }
    }
    params[name] = v;
  }
  return params;
}

function chatIdOf(params, name = 'chat_id') {
  const v = params[name];
  if (v === undefined || v === null || v === '') throw badRequest(`${name} is empty`);
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (/^-?\d+$/.test(String(v))) return Number(v);
  throw badRequest('chat not found');
}

function messageIdOf(params) {
  const v = Number(params.message_id);
  if (!Number.isInteger(v)) throw badRequest('message identifier is not specified');
  return v;
}

// ---------------------------------------------------------------- multipart/form-data

function parseDispositionParams(header) {
  const out = {};
  const re = /;\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)/g;
  let m;
  while ((m = re.exec(header)) !== null) {
    let v = m[2].trim();
    if (v.startsWith('"')) v = v.slice(1, -1).replace(/\\(.)/g, '$1');
    out[m[1].toLowerCase()] = v;
  }
  if (out['filename*']) {
    const star = /^[^']*'[^']*'(.*)$/.exec(out['filename*']);
    try { out.filename = decodeURIComponent(star ? star[1] : out['filename*']); } catch (_e) { /* keep */ }
  }
  return out;
}

function parseMultipart(buf, contentType) {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType || '');
  if (!m) throw badRequest('multipart boundary is missing');
  const boundary = Buffer.from(`--${(m[1] || m[2]).trim()}`);
  const delimiter = Buffer.concat([Buffer.from('\r\n'), boundary]);
  const fields = {};
  const files = {};
  let pos = buf.indexOf(boundary);
  if (pos < 0) throw badRequest('malformed multipart body');
  for (;;) {
    pos += boundary.length;
    if (buf[pos] === 0x2d && buf[pos + 1] === 0x2d) break; // the closing "--"
    if (buf[pos] === 0x0d && buf[pos + 1] === 0x0a) pos += 2;
    const headEnd = buf.indexOf('\r\n\r\n', pos);
    if (headEnd < 0) throw badRequest('malformed multipart body');
    const headers = {};
    for (const line of buf.slice(pos, headEnd).toString('utf8').split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const end = buf.indexOf(delimiter, headEnd + 4);
    if (end < 0) throw badRequest('malformed multipart body');
    const data = buf.slice(headEnd + 4, end);
    const disposition = parseDispositionParams(headers['content-disposition'] || '');
    if (disposition.name !== undefined) {
      if (disposition.filename !== undefined) {
        files[disposition.name] = {
          filename: disposition.filename,
          contentType: headers['content-type'] || null,
          data: Buffer.from(data),
        };
      } else {
        fields[disposition.name] = data.toString('utf8');
      }
    }
    pos = end + 2;
  }
  return { fields, files };
}

function multipartMiddleware(req, _res, next) {
  if (Buffer.isBuffer(req.body) && /^multipart\/form-data/i.test(req.headers['content-type'] || '')) {
    try {
      const { fields, files } = parseMultipart(req.body, req.headers['content-type']);
      req.body = fields;
      req.files = files;
    } catch (error) {
      next(error);
      return;
    }
  }
  next();
}

// ---------------------------------------------------------------- texts and keyboards

const HTML_TAGS = new Set([
  'b', 'strong', 'i', 'em', 'u', 'ins', 's', 'strike', 'del', 'span', 'tg-spoiler', 'a', 'code', 'pre',
  'blockquote', 'tg-emoji',
]);
const NAMED_ENTITIES = { lt: '<', gt: '>', amp: '&', quot: '"' };

/** Telegram's HTML parse mode: returns the plain text the user sees, or throws its 400. */
function parseHtml(text) {
  const fail = (what) => badRequest(`can't parse entities: ${what}`);
  const offset = (i) => Buffer.byteLength(text.slice(0, i));
  const stack = [];
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '<') {
      const close = text.indexOf('>', i);
      if (close < 0) throw fail(`Unclosed start tag at byte offset ${offset(i)}`);
      const inner = text.slice(i + 1, close);
      if (inner.startsWith('/')) {
        const name = inner.slice(1).trim().toLowerCase();
        const open = stack.pop();
        if (open === undefined) throw fail(`Unexpected end tag at byte offset ${offset(i)}`);
        if (name !== '' && name !== open) {
          throw fail(`Unmatched end tag at byte offset ${offset(i)}, expected "</${open}>", found "</${name}>"`);
        }
      } else {
        const m = /^([a-zA-Z][a-zA-Z0-9-]*)/.exec(inner);
        const name = m ? m[1].toLowerCase() : '';
        if (!HTML_TAGS.has(name)) throw fail(`Unsupported start tag "${name}" at byte offset ${offset(i)}`);
        if (name === 'span' && !/class\s*=\s*["']?tg-spoiler/i.test(inner)) {
          throw fail(`Tag "span" must have class "tg-spoiler" at byte offset ${offset(i)}`);
        }
        stack.push(name);
      }
      i = close + 1;
    } else if (c === '&') {
      const m = /^&(#[xX][0-9a-fA-F]{1,6}|#[0-9]{1,7}|[a-zA-Z]{1,10});/.exec(text.slice(i, i + 12));
      if (m && m[1].startsWith('#')) {
        const code = m[1][1].toLowerCase() === 'x' ? parseInt(m[1].slice(2), 16) : parseInt(m[1].slice(1), 10);
        out += code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : m[0];
        i += m[0].length;
      } else if (m && NAMED_ENTITIES[m[1]] !== undefined) {
        out += NAMED_ENTITIES[m[1]];
        i += m[0].length;
      } else {
        out += c;
        i += 1;
      }
    } else {
      out += c;
      i += 1;
    }
  }
  if (stack.length) throw fail(`Can't find end tag corresponding to start tag "${stack[stack.length - 1]}"`);
  return out;
}

/** The text as the user sees it (`kind` is "text" or "caption"); throws Telegram's 400s. */
function renderText(raw, parseMode, kind) {
  if (raw === undefined || raw === null) {
    if (kind === 'text') throw badRequest('message text is empty');
    return undefined;
  }
  const source = String(raw);
  const plain = String(parseMode || '').toLowerCase() === 'html' ? parseHtml(source) : source;
  if (kind === 'text' && plain.trim() === '') throw badRequest('message text is empty');
  if (kind === 'text' && plain.length > 4096) throw badRequest('message is too long');
  if (kind === 'caption' && plain.length > 1024) throw badRequest('message caption is too long');
  return plain;
}

const INLINE_ACTIONS = [
  'callback_data', 'url', 'web_app', 'login_url', 'switch_inline_query',
  'switch_inline_query_current_chat', 'switch_inline_query_chosen_chat', 'copy_text', 'callback_game', 'pay',
];

function checkMarkup(raw) {
  if (raw === undefined || raw === null || raw === '') return undefined;
  const notParsed = badRequest("can't parse reply keyboard markup JSON object");
  if (typeof raw !== 'object' || Array.isArray(raw)) throw notParsed;
  const rowsOf = (field) => {
    const rows = raw[field];
    if (!Array.isArray(rows) || !rows.every(Array.isArray)) {
      throw badRequest(`field "${field}" must be an Array of Arrays`);
    }
    return rows;
  };
  if ('inline_keyboard' in raw) {
    for (const button of rowsOf('inline_keyboard').flat()) {
      if (!button || typeof button.text !== 'string' || button.text === '') throw badRequest('BUTTON_TEXT_EMPTY');
      const actions = INLINE_ACTIONS.filter((a) => button[a] !== undefined);
      if (actions.length !== 1) throw badRequest('text buttons are unallowed in the inline keyboard');
      if (actions[0] === 'callback_data') {
        const size = Buffer.byteLength(String(button.callback_data));
        if (size < 1 || size > 64) throw badRequest('BUTTON_DATA_INVALID');
      }
    }
  } else if ('keyboard' in raw) {
    for (const button of rowsOf('keyboard').flat()) {
      const text = typeof button === 'string' ? button : button && button.text;
      if (typeof text !== 'string' || text === '') throw badRequest('keyboard button text is empty');
    }
  } else if (!('remove_keyboard' in raw) && !('force_reply' in raw)) {
    throw notParsed;
  }
  return raw;
}

const inlineOnly = (markup) => (markup && 'inline_keyboard' in markup ? markup : undefined);

// ---------------------------------------------------------------- files

const MIME_BY_EXT = {
  '.pdf': 'application/pdf', '.txt': 'text/plain', '.csv': 'text/csv', '.html': 'text/html',
  '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.gif': 'image/gif',
  '.zip': 'application/zip', '.json': 'application/json', '.mp4': 'video/mp4', '.mp3': 'audio/mpeg',
  '.docx': 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  '.xlsx': 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
};

const FILE_FOLDERS = {
  document: 'documents', photo: 'photos', video: 'videos', audio: 'music', voice: 'voice', animation: 'animations',
};

function storeUpload(kind, upload) {
  const n = state.fileSeq++;
  const ext = path.extname(upload.filename || '').toLowerCase();
  const declared = upload.contentType && upload.contentType !== 'application/octet-stream' ? upload.contentType : null;
  const file = {
    file_id: `${kind.slice(0, 2).toUpperCase()}${n}_${randomId(9)}`,
    file_unique_id: `U${n}${randomId(4)}`,
    file_name: upload.filename || null,
    mime_type: declared || MIME_BY_EXT[ext] || null,
    file_size: upload.data.length,
    file_path: `${FILE_FOLDERS[kind] || 'documents'}/file_${n}${ext}`,
    data: upload.data,
  };
  state.files.set(file.file_id, file);
  state.filesByPath.set(file.file_path, file);
  return file;
}

/** A media field's value (an upload, attach://name, an http(s) URL or a file_id) -> a file record. */
function resolveInputFile(kind, value, files) {
  let upload = null;
  if (value === undefined && files[kind]) {
    upload = files[kind];
  } else if (typeof value === 'string' && value.startsWith('attach://')) {
    upload = files[value.slice('attach://'.length)];
    if (!upload) throw badRequest(`file attach://${value.slice('attach://'.length)} was not found in the request`);
  }
  if (upload) {
    if (upload.data.length === 0) throw badRequest('file must be non-empty');
    if (upload.data.length > 50 * 1024 * 1024) throw new ApiError(413, 'Request Entity Too Large');
    const dimensions = kind === 'photo' ? checkPhoto(upload.data) : null;
    return { source: 'upload', given: null, url: null, ...storeUpload(kind, upload), dimensions };
  }
  if (typeof value !== 'string' || value === '') throw badRequest(`there is no ${kind} in the request`);
  if (/^https?:\/\//i.test(value)) {
    // The real server downloads the URL; the emulator only records it.
    let name = null;
    try { name = decodeURIComponent(path.posix.basename(new URL(value).pathname)) || null; } catch (_e) { /* */ }
    const n = state.fileSeq++;
    return {
      source: 'url', given: value, url: value, file_id: `URL${n}_${randomId(9)}`, file_unique_id: `U${n}${randomId(4)}`,
      file_name: name, mime_type: MIME_BY_EXT[path.extname(name || '').toLowerCase()] || null, file_size: null,
    };
  }
  const known = state.files.get(value);
  if (known) return { source: 'file_id', given: value, url: null, ...known };
  // An unknown file_id (say, one from the real Telegram in a scenario) is accepted and recorded as given.
  return {
    source: 'file_id', given: value, url: null, file_id: value,
    file_unique_id: `U${crypto.createHash('sha1').update(value).digest('hex').slice(0, 12)}`,
    file_name: null, mime_type: null, file_size: null,
  };
}

// What Telegram takes as a photo: a picture (PNG, JPEG, GIF, WebP, BMP) of at most 10 MB whose
// width and height add up to at most 10000, neither over 20 times the other.
const IMAGE_SIGNATURES = [
  Buffer.from([0x89, 0x50, 0x4e, 0x47]), Buffer.from([0xff, 0xd8, 0xff]), Buffer.from('GIF8'), Buffer.from('BM'),
];

/** A photo upload's {width, height} when it is a PNG whose header says so, else null; throws
 * Telegram's 400 for what is not a picture and for dimensions Telegram refuses. */
function checkPhoto(data) {
  const webp = data.length >= 12 && data.slice(0, 4).toString('latin1') === 'RIFF' && data.slice(8, 12).toString('latin1') === 'WEBP';
  if (!webp && !IMAGE_SIGNATURES.some((sig) => data.length >= sig.length && data.slice(0, sig.length).equals(sig))) {
    throw badRequest('IMAGE_PROCESS_FAILED');
  }
  if (data.length > 10 * 1024 * 1024) throw badRequest('PHOTO_INVALID_DIMENSIONS');
  const png = data.length >= 24 && data.slice(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))
    && data.slice(12, 16).toString('latin1') === 'IHDR';
  if (!png) return null;
  const width = data.readUInt32BE(16);
  const height = data.readUInt32BE(20);
  if (width === 0 || height === 0 || width + height > 10000 || width > 20 * height || height > 20 * width) {
    throw badRequest('PHOTO_INVALID_DIMENSIONS');
  }
  return { width, height };
}

function mediaObject(kind, f) {
  const base = { file_id: f.file_id, file_unique_id: f.file_unique_id };
  if (f.file_size !== null && f.file_size !== undefined) base.file_size = f.file_size;
  const named = { ...(f.file_name ? { file_name: f.file_name } : {}), ...(f.mime_type ? { mime_type: f.mime_type } : {}) };
  switch (kind) {
    case 'photo': return [{ ...base, width: f.dimensions ? f.dimensions.width : 320, height: f.dimensions ? f.dimensions.height : 240 }];
    case 'video':
    case 'animation': return { ...base, width: 320, height: 240, duration: 1, ...named };
    case 'audio': return { ...base, duration: 1, ...named };
    case 'voice': return { ...base, duration: 1, ...(f.mime_type ? { mime_type: f.mime_type } : {}) };
    default: return { ...base, ...named };
  }
}

// ---------------------------------------------------------------- the emulator itself

const tg = new TelegramServer({ port: 9000, host, storeTimeout: 24 * 3600 });
tg.config.port = port; // the emulator turns port 0 into 9000; we want "any free port"

// A message as it appears in another's reply_to_message: Telegram leaves out its own reply.
function quoted(message) {
  const copy = clone(message);
  delete copy.reply_to_message;
  return copy;
}

/** A message of this chat the emulator knows, bot's or user's: {message, deleted}, or null. */
function knownMessage(token, chatId, messageId) {
  const entry = findEntry(token, chatId, messageId);
  if (entry) return { message: entry.message, deleted: entry.deleted };
  const user = state.userMessages.get(key(token, chatId, messageId));
  if (user && user.message) return { message: user.message, deleted: user.deleted };
  return null;
}

/** The message the bot replies to (reply_parameters or reply_to_message_id), quoted, or
 * undefined. A deleted one is Telegram's 400 unless allow_sending_without_reply; one the
 * emulator never saw (an update posted straight to a webhook) is left out. */
function repliedTo(token, chatId, params) {
  const rp = params.reply_parameters && typeof params.reply_parameters === 'object' ? params.reply_parameters : null;
  const raw = rp ? rp.message_id : params.reply_to_message_id;
  if (raw === undefined || raw === null) return undefined;
  const target = rp && rp.chat_id !== undefined && rp.chat_id !== null ? Number(rp.chat_id) : chatId;
  const known = knownMessage(token, target, Number(raw));
  const allow = rp ? rp.allow_sending_without_reply : params.allow_sending_without_reply;
  if (known && known.deleted && !allow) throw badRequest('message to be replied not found');
  return known && !known.deleted && target === chatId ? quoted(known.message) : undefined;
}

// Sent messages go through the emulator's storage and counters, then get a full Message.
function addBotMessage(token, chatId, method, content, markup, params, media) {
  const reply = repliedTo(token, chatId, params);
  const stored = tg.addBotMessage(
    { chat_id: chatId, text: content.text ?? content.caption, ...(markup ? { reply_markup: markup } : {}) },
    token,
  );
  const message = {
    message_id: stored.message_id,
    from: botUser(token),
    chat: chatObject(token, chatId),
    date: nowSec(),
    ...(reply ? { reply_to_message: reply } : {}),
    ...content,
  };
  if (inlineOnly(markup)) message.reply_markup = markup;
  chatLog(token, chatId).push({
    message_id: message.message_id,
    chat_id: chatId,
    method,
    date: message.date,
    text: content.text ?? content.caption ?? null,
    raw_text: params.text ?? params.caption ?? null,
    parse_mode: params.parse_mode ?? null,
    reply_markup: markup ?? null,
    media: media ?? null,
    deleted: false,
    edits: [],
    message,
  });
  return clone(message);
}

// Webhook delivery like Telegram's: JSON POST with the secret token header, a non-2xx is an error.
async function deliverWebhook(token, update) {
  const webhook = tg.webhooks[token];
  const headers = { 'content-type': 'application/json' };
  if (webhook.secret_token) headers['x-telegram-bot-api-secret-token'] = webhook.secret_token;
  const response = await fetch(webhook.url, { method: 'POST', headers, body: JSON.stringify(update) });
  if (response.status < 200 || response.status > 299) {
    throw new Error(`webhook ${webhook.url} answered ${response.status}`);
  }
}

// The emulator posts to webhooks with axios, without the secret token header, and bumps its ids
// only after the webhook answered (so a bot replying meanwhile got the same message_id): replaced.
async function queueUserUpdate(update) {
  if (!update.botToken) throw new Error('The update must contain `botToken` field.');
  if (tg.webhooks[update.botToken]) await deliverWebhook(update.botToken, TelegramServer.formatUpdate(update));
  else tg.storage.userMessages.push(update);
}
tg.addUserMessage = async function addUserMessage(message) {
  const update = { ...this.getCommonFields(message.botToken), message };
  this.messageId++;
  this.updateId++;
  await queueUserUpdate(update);
  this.emit('AddedUserMessage');
};
tg.addUserCommand = async function addUserCommand(message) {
  if (!message.entities) throw new Error('Command should have entities');
  const update = { ...this.getCommonFields(message.botToken), message, entities: message.entities };
  this.messageId++;
  this.updateId++;
  await queueUserUpdate(update);
  this.emit('AddedUserCommand');
};
tg.addUserCallback = async function addUserCallback(callbackQuery) {
  const update = { ...this.getCommonFields(callbackQuery.botToken), callbackQuery, callbackId: this.callbackId };
  this.callbackId++;
  this.updateId++;
  await queueUserUpdate(update);
  this.emit('AddedUserCallbackQuery');
};

// Updates waiting for the bot: the emulator's own entries ({message} or {callbackQuery}) and injected
// raw ones ({raw}). An update stays until getUpdates is called with an offset above its update_id.
const entryUpdateId = (u) => {
  if (!('raw' in u)) return u.updateId;
  return u.raw && typeof u.raw === 'object' && Number.isInteger(u.raw.update_id) ? u.raw.update_id : null;
};

function updateType(update) {
  if (!update || typeof update !== 'object') return null;
  return Object.keys(update).find((k) => k !== 'update_id') || null;
}

TelegramServer.formatUpdate = function formatUpdate(update) {
  if ('raw' in update) return update.raw;
  if ('callbackQuery' in update) {
    const cq = update.callbackQuery;
    const chatId = Number((cq.message && cq.message.chat && cq.message.chat.id) ?? (cq.from && cq.from.id));
    let { message } = cq;
    if (!message || message.message_id === undefined || message.date === undefined) {
      const last = chatLog(update.botToken, chatId).filter((e) => !e.deleted).pop();
      message = last ? clone(last.message) : { chat: chatObject(update.botToken, chatId), message_id: 0, date: 0 };
    }
    const out = {
      id: String(update.callbackId),
      from: cq.from,
      message,
      chat_instance: cq.chat_instance || chatInstance(update.botToken, chatId),
    };
    if (cq.data !== undefined) out.data = cq.data;
    return { update_id: update.updateId, callback_query: out };
  }
  const message = { ...update.message, message_id: update.messageId };
  delete message.botToken;
  return { update_id: update.updateId, message };
};

function pendingUpdates(token) {
  return tg.storage.userMessages.filter((u) => u.botToken === token);
}

function dropPending(token, predicate = () => true) {
  tg.storage.userMessages = tg.storage.userMessages.filter((u) => u.botToken !== token || !predicate(u));
}

function collectUpdates(token, params) {
  const allowed = state.allowedUpdates.get(token);
  let pending = pendingUpdates(token).filter((u) => {
    if (!allowed || !allowed.length) return true;
    const type = updateType(TelegramServer.formatUpdate(u));
    return type === null || allowed.includes(type);
  });
  if (Number.isInteger(params.offset) && params.offset < 0) pending = pending.slice(params.offset);
  const limit = Number.isInteger(params.limit) && params.limit > 0 ? Math.min(params.limit, 100) : 100;
  return pending.slice(0, limit);
}

function wake(token) {
  const waiter = state.waiters.get(token);
  if (waiter) waiter.check();
}

function getUpdates({ token, params, res, call }) {
  if (tg.webhooks[token]) {
    throw new ApiError(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first");
  }
  if (Number.isInteger(params.offset) && params.offset > 0) {
    dropPending(token, (u) => {
      const id = entryUpdateId(u);
      return id !== null && id < params.offset;
    });
  }
  if (Array.isArray(params.allowed_updates)) state.allowedUpdates.set(token, params.allowed_updates);
  const previous = state.waiters.get(token);
  if (previous) {
    previous.fail(new ApiError(409, 'Conflict: terminated by other getUpdates request; make sure that only one bot instance is running'));
  }
  const timeout = Math.min(Math.max(Number.isInteger(params.timeout) ? params.timeout : 0, 0), 50);
  return new Promise((resolve, reject) => {
    let timer = null;
    const waiter = {};
    const finish = () => {
      clearTimeout(timer);
      if (state.waiters.get(token) === waiter) state.waiters.delete(token);
    };
    const deliver = (entries) => {
      finish();
      // An injected update without an integer update_id can never be confirmed: it goes out once.
      const once = new Set(entries.filter((u) => entryUpdateId(u) === null));
      if (once.size) dropPending(token, (u) => once.has(u));
      resolve(entries.map((u) => TelegramServer.formatUpdate(u)));
    };
    waiter.check = () => {
      const entries = collectUpdates(token, params);
      if (entries.length) deliver(entries);
    };
    waiter.fail = (error) => {
      finish();
      reject(error);
    };
    const first = collectUpdates(token, params);
    if (first.length || timeout === 0) {
      deliver(first);
      return;
    }
    state.waiters.set(token, waiter);
    timer = setTimeout(() => deliver([]), timeout * 1000);
    res.on('close', () => {
      if (res.writableFinished) return;
      finish(); // the bot went away (stopped polling): forget the request
      call.aborted = true;
    });
  });
}

// ---------------------------------------------------------------- Bot API methods

function sendMedia(kind, method) {
  return ({ token, params, files }) => {
    const chatId = chatIdOf(params);
    const file = resolveInputFile(kind, params[kind], files);
    const caption = renderText(params.caption, params.parse_mode, 'caption');
    const markup = checkMarkup(params.reply_markup);
    const content = { [kind]: mediaObject(kind, file) };
    if (caption !== undefined && caption !== '') content.caption = caption;
    const media = {
      kind,
      source: file.source,
      given: file.given,
      url: file.url,
      file_id: file.file_id,
      file_unique_id: file.file_unique_id,
      file_name: file.file_name,
      mime_type: file.mime_type,
      size: file.file_size,
    };
    return addBotMessage(token, chatId, method, content, markup, params, media);
  };
}

function editEntry(token, params, what) {
  if (params.inline_message_id) return null;
  const chatId = chatIdOf(params);
  const messageId = messageIdOf(params);
  const entry = findEntry(token, chatId, messageId);
  if (!entry || entry.deleted) throw badRequest('message to edit not found');
  if (what === 'text' && entry.media) throw badRequest('there is no text in the message to edit');
  if (what === 'caption' && !entry.media) throw badRequest('there is no caption in the message to edit');
  return entry;
}

function applyEdit(entry, method, changes, params) {
  const markup = checkMarkup(params.reply_markup);
  const same = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
  const textKey = entry.media ? 'caption' : 'text';
  const newText = 'text' in changes ? changes.text : entry.message[textKey];
  if (same(newText, entry.message[textKey]) && same(inlineOnly(markup), entry.message.reply_markup)) {
    throw badRequest('message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message');
  }
  if ('text' in changes) {
    if (changes.text === undefined || changes.text === '') delete entry.message[textKey];
    else entry.message[textKey] = changes.text;
    entry.text = changes.text ?? null;
    entry.raw_text = params.text ?? params.caption ?? null;
    entry.parse_mode = params.parse_mode ?? null;
  }
  if (inlineOnly(markup)) entry.message.reply_markup = markup;
  else delete entry.message.reply_markup; // editing without reply_markup removes the inline keyboard
  entry.reply_markup = markup ?? null;
  entry.message.edit_date = nowSec();
  entry.edits.push({ method, date: entry.message.edit_date, text: entry.text, reply_markup: entry.reply_markup });
  return clone(entry.message);
}

function checkCommands(commands) {
  if (!Array.isArray(commands)) throw badRequest("can't parse commands JSON object");
  if (commands.length > 100) throw badRequest('too many commands');
  for (const c of commands) {
    if (!c || typeof c.command !== 'string' || !/^[a-z0-9_]{1,32}$/.test(c.command)) throw badRequest('BOT_COMMAND_INVALID');
    if (typeof c.description !== 'string' || c.description.length < 1 || c.description.length > 256) {
      throw badRequest('command description is empty or too long');
    }
  }
  return commands;
}

const commandsKey = (token, params) => key(token, JSON.stringify(params.scope || { type: 'default' }), params.language_code || '');

const METHODS = {
  getMe: ({ token }) => ({
    ...botUser(token),
    can_join_groups: true,
    can_read_all_group_messages: false,
    supports_inline_queries: false,
    can_connect_to_business: false,
    has_main_web_app: false,
  }),
  getUpdates,
  logOut: () => true,
  close: () => true,

  setWebhook: ({ token, params }) => {
    if (!params.url) throw badRequest('bad webhook: An HTTPS URL must be provided for webhook');
    tg.setWebhook({ url: params.url, secret_token: params.secret_token || null }, token);
    if (params.drop_pending_updates) dropPending(token);
    return true;
  },
  deleteWebhook: ({ token, params }) => {
    tg.deleteWebhook(token);
    if (params.drop_pending_updates) dropPending(token);
    return true;
  },
  getWebhookInfo: ({ token }) => ({
    url: (tg.webhooks[token] && tg.webhooks[token].url) || '',
    has_custom_certificate: false,
    pending_update_count: pendingUpdates(token).length,
  }),

  sendMessage: ({ token, params }) => {
    const chatId = chatIdOf(params);
    const text = renderText(params.text, params.parse_mode, 'text');
    const markup = checkMarkup(params.reply_markup);
    return addBotMessage(token, chatId, 'sendMessage', { text }, markup, params, null);
  },
  sendDocument: sendMedia('document', 'sendDocument'),
  sendPhoto: sendMedia('photo', 'sendPhoto'),
  sendVideo: sendMedia('video', 'sendVideo'),
  sendAudio: sendMedia('audio', 'sendAudio'),
  sendVoice: sendMedia('voice', 'sendVoice'),
  sendAnimation: sendMedia('animation', 'sendAnimation'),

  editMessageText: ({ token, params }) => {
    const entry = editEntry(token, params, 'text');
    if (!entry) return true;
    const text = renderText(params.text, params.parse_mode, 'text');
    const message = applyEdit(entry, 'editMessageText', { text }, params);
    tg.editMessageText({
      chat_id: entry.chat_id,
      message_id: entry.message_id,
      text,
      ...(inlineOnly(entry.reply_markup) ? { reply_markup: entry.reply_markup } : {}),
    });
    return message;
  },
  editMessageCaption: ({ token, params }) => {
    const entry = editEntry(token, params, 'caption');
    if (!entry) return true;
    const caption = renderText(params.caption, params.parse_mode, 'caption');
    return applyEdit(entry, 'editMessageCaption', { text: caption }, params);
  },
  editMessageReplyMarkup: ({ token, params }) => {
    const entry = editEntry(token, params, 'markup');
    if (!entry) return true;
    const message = applyEdit(entry, 'editMessageReplyMarkup', {}, params);
    tg.editMessageReplyMarkup({
      chat_id: entry.chat_id,
      message_id: entry.message_id,
      reply_markup: entry.reply_markup || { inline_keyboard: [] },
    });
    return message;
  },
  deleteMessage: ({ token, params }) => {
    const chatId = chatIdOf(params);
    const messageId = messageIdOf(params);
    const entry = findEntry(token, chatId, messageId);
    const userMessage = state.userMessages.get(key(token, chatId, messageId));
    const target = entry || userMessage;
    if (!target || target.deleted) throw badRequest('message to delete not found');
    target.deleted = true;
    return true;
  },
  deleteMessages: ({ token, params }) => {
    const chatId = chatIdOf(params);
    if (!Array.isArray(params.message_ids)) throw badRequest('message_ids is empty');
    for (const id of params.message_ids) {
      const target = findEntry(token, chatId, Number(id)) || state.userMessages.get(key(token, chatId, id));
      if (target) target.deleted = true;
    }
    return true;
  },

  answerCallbackQuery: ({ token, params }) => {
    const query = state.callbacks.get(key(token, params.callback_query_id));
    if (!query || query.answered) {
      throw badRequest('query is too old and response timeout expired or query ID is invalid');
    }
    if (params.text !== undefined && params.text !== null && String(params.text).length > 200) {
      throw badRequest('MESSAGE_TOO_LONG');
    }
    query.answered = true;
    return true;
  },
  sendChatAction: ({ params }) => {
    chatIdOf(params);
    if (!params.action) throw badRequest('action is empty');
    return true;
  },

  setMyCommands: ({ token, params }) => {
    state.commands.set(commandsKey(token, params), checkCommands(params.commands));
    return true;
  },
  getMyCommands: ({ token, params }) => state.commands.get(commandsKey(token, params)) || [],
  deleteMyCommands: ({ token, params }) => {
    state.commands.delete(commandsKey(token, params));
    return true;
  },
  setMyDescription: () => true,
  setMyShortDescription: () => true,
  setMyName: () => true,
  setChatMenuButton: () => true,

  getFile: ({ params }) => {
    const file = state.files.get(params.file_id);
    if (!file) throw badRequest('wrong file_id or the file is temporarily unavailable');
    return {
      file_id: file.file_id, file_unique_id: file.file_unique_id, file_size: file.file_size, file_path: file.file_path,
    };
  },
};
const METHODS_LOWER = new Map(Object.entries(METHODS).map(([name, fn]) => [name.toLowerCase(), [name, fn]]));

// ---------------------------------------------------------------- flood control

// The Bots FAQ ("My bot is hitting limits, how do I avoid this?"): in one chat avoid more than
// one message per second ("we may allow short bursts that go over this limit"), no more than 20
// messages per minute to the same group, and not more than about 30 messages per second in
// bulk. Past a limit Telegram answers 429 "Too Many Requests: retry after N" with
// parameters.retry_after = N (whole seconds). Kinder limits would hide a bot that floods, so
// they hold by default; a test measuring something else turns them off with /test/limits.
const LIMIT_DEFAULTS = {
  enabled: process.env.TELEGRAM_EMULATOR_LIMITS !== '0',
  chat_per_second: 1,
  chat_burst: 3, // a reply of a few messages at once passes, as in Telegram; a stream does not
  group_per_minute: 20,
  overall_per_second: 30,
};
const LIMIT_KEYS = Object.keys(LIMIT_DEFAULTS).filter((k) => k !== 'enabled');
// Every method that puts a new message in a chat (edits, answers and chat actions do not).
const SEND_METHODS = new Set(
  Object.keys(METHODS).filter((m) => m.startsWith('send') && m !== 'sendChatAction').map((m) => m.toLowerCase()),
);

function limitsOf(token) {
  if (!state.limits.has(token)) state.limits.set(token, { ...LIMIT_DEFAULTS });
  return state.limits.get(token);
}

function floodOf(token) {
  if (!state.flood.has(token)) state.flood.set(token, { overall: [], chats: new Map(), holds: new Map() });
  return state.flood.get(token);
}

/** A sliding window (send times in ms, oldest first) of at most `size` sends in `length` ms:
 * ms until one more fits, 0 when it fits now. */
function windowWait(times, size, length, now) {
  while (times.length && times[0] <= now - length) times.shift();
  return times.length < size ? 0 : times[times.length - size] + length - now;
}

/** A private chat: a token bucket of `chat_burst` messages refilled at `chat_per_second`. */
function bucketWait(bucket, limits, now) {
  const tokens = Math.min(limits.chat_burst, bucket.tokens + ((now - bucket.at) / 1000) * limits.chat_per_second);
  return tokens >= 1 ? 0 : ((1 - tokens) / limits.chat_per_second) * 1000;
}

function chatFlood(flood, chatId, limits, now) {
  if (!flood.chats.has(chatId)) flood.chats.set(chatId, chatId < 0 ? [] : { tokens: limits.chat_burst, at: now });
  return flood.chats.get(chatId);
}

const tooMany = (seconds) => new ApiError(429, `Too Many Requests: retry after ${seconds}`, { retry_after: seconds });

/** Before a send: Telegram's 429 when it breaks a limit or comes inside a retry_after (then
 * also recorded as a violation), else null. Nothing is counted until the send succeeds. */
function floodCheck(token, method, params, call) {
  const limits = limitsOf(token);
  const chatId = Number(params.chat_id);
  if (!limits.enabled || !SEND_METHODS.has(method.toLowerCase()) || !Number.isInteger(chatId)) return null;
  const now = Date.now();
  const flood = floodOf(token);
  for (const scope of ['all', `chat:${chatId}`]) {
    const until = flood.holds.get(scope) || 0;
    if (until > now) {
      state.violations.push({ token, seq: call.seq, method, chat_id: chatId, scope, early_ms: until - now });
      log(`${method} to ${chatId} came ${until - now} ms inside a retry_after (${scope})`);
      return tooMany(Math.ceil((until - now) / 1000));
    }
  }
  const chat = chatFlood(flood, chatId, limits, now);
  const waits = [
    ['all', windowWait(flood.overall, limits.overall_per_second, 1000, now)],
    [`chat:${chatId}`, chatId < 0 ? windowWait(chat, limits.group_per_minute, 60000, now) : bucketWait(chat, limits, now)],
  ].filter(([, wait]) => wait > 0);
  if (!waits.length) return null;
  const [scope, wait] = waits.reduce((a, b) => (b[1] > a[1] ? b : a));
  const seconds = Math.max(1, Math.ceil(wait / 1000));
  flood.holds.set(scope, Math.max(flood.holds.get(scope) || 0, now + seconds * 1000));
  return tooMany(seconds);
}

/** A send went out: it counts against the limits. */
function floodCount(token, method, params) {
  const limits = limitsOf(token);
  const chatId = Number(params.chat_id);
  if (!limits.enabled || !SEND_METHODS.has(method.toLowerCase()) || !Number.isInteger(chatId)) return;
  const now = Date.now();
  const flood = floodOf(token);
  flood.overall.push(now);
  const chat = chatFlood(flood, chatId, limits, now);
  if (chatId < 0) {
    chat.push(now);
  } else {
    const tokens = Math.min(limits.chat_burst, chat.tokens + ((now - chat.at) / 1000) * limits.chat_per_second);
    Object.assign(chat, { tokens: tokens - 1, at: now });
  }
}

// ---------------------------------------------------------------- supergroups

/** A call naming a group that became a supergroup: Telegram's 400 with the new id. */
function migratedCheck(token, params) {
  const chatId = Number(params.chat_id);
  const moved = Number.isInteger(chatId) ? state.migrations.get(key(token, chatId)) : undefined;
  if (moved === undefined) return null;
  return new ApiError(400, 'Bad Request: group chat was upgraded to a supergroup chat', { migrate_to_chat_id: moved });
}

const upgradedNote = (token, chatId) => {
  const moved = state.migrations.get(key(token, Number(chatId)));
  return moved === undefined ? null : `group ${chatId} was upgraded to the supergroup ${moved}: act there`;
};

function takeFailure(token, method) {
  const index = state.failures.findIndex((f) => f.method === method && (f.token === null || f.token === token));
  if (index < 0) return null;
  const failure = state.failures[index];
  failure.times -= 1;
  if (failure.times <= 0) state.failures.splice(index, 1);
  return failure.error;
}

function describeFiles(files) {
  return Object.entries(files || {}).map(([field, f]) => ({
    field, file_name: f.filename, size: f.data.length, mime_type: f.contentType,
  }));
}

async function botRoute(req, res) {
  if (req.method !== 'GET' && req.method !== 'POST') {
    sendError(res, 405, `Method Not Allowed: ${req.method}`);
    return;
  }
  const token = decodeURIComponent(req.params[0]);
  const requested = req.params[1];
  const [method, handler] = METHODS_LOWER.get(requested.toLowerCase()) || [requested, null];
  const body = req.body && typeof req.body === 'object' && !Buffer.isBuffer(req.body) ? req.body : {};
  const params = normalizeParams({ ...req.query, ...body });
  const call = {
    seq: state.seq++, time: Date.now() / 1000, token, method, params, files: describeFiles(req.files), ok: false,
  };
  state.calls.push(call);
  const fail = (code, description, parameters) => {
    call.error_code = code;
    call.description = description;
    if (verbose || code === 404) log(`${method} -> ${code} ${description}`);
    sendError(res, code, description, parameters);
  };
  if (!/^\d+:[A-Za-z0-9_-]+$/.test(token)) {
    fail(401, 'Unauthorized');
    return;
  }
  const injected = takeFailure(token, method.toLowerCase());
  if (injected) {
    fail(injected.error_code, injected.description, injected.parameters);
    return;
  }
  if (!handler) {
    fail(404, 'Not Found: method not found');
    return;
  }
  const refused = migratedCheck(token, params) || floodCheck(token, method, params, call);
  if (refused) {
    fail(refused.code, refused.description, refused.parameters);
    return;
  }
  try {
    const result = await handler({ token, params, files: req.files || {}, req, res, call });
    if (res.headersSent || res.writableEnded) return;
    floodCount(token, method, params);
    call.ok = true;
    if (verbose) log(`${method} ok`);
    sendOk(res, result);
  } catch (error) {
    if (res.headersSent || res.writableEnded) return;
    if (error instanceof ApiError) fail(error.code, error.description, error.parameters);
    else {
      log(`${method} crashed: ${error && error.stack}`);
      fail(500, `Internal Server Error: ${error}`);
    }
  }
}

// ---------------------------------------------------------------- client and test routes

function rememberUser(token, chat, from) {
  if (chat && Number(chat.id) > 0 && from) state.users.set(key(token, Number(chat.id)), from);
}

// A group or supergroup the client writes in: its type and title as given (or the defaults),
// which the bot's messages there then carry.
function rememberGroup(token, chat) {
  const chatId = Number(chat.id);
  const group = { ...defaultGroup(chatId), ...(state.groups.get(key(token, chatId)) || {}) };
  if (chat.type) group.type = chat.type;
  if (chat.title) group.title = chat.title;
  if (chat.username) group.username = chat.username;
  if (chat.is_forum !== undefined) group.is_forum = chat.is_forum;
  state.groups.set(key(token, chatId), group);
  Object.assign(chat, { id: chatId, ...group });
}

/** A user's message that replies to another: `reply_to_message` ({message_id} is enough) or
 * `reply_to_message_id` becomes the full message of that chat, as the bot would get it. */
function resolveUserReply(token, msg) {
  const given = msg.reply_to_message;
  const raw = given && typeof given === 'object' ? given.message_id : msg.reply_to_message_id;
  delete msg.reply_to_message_id;
  if (raw === undefined || raw === null) return null;
  const known = knownMessage(token, Number(msg.chat.id), Number(raw));
  if (known && !known.deleted) {
    msg.reply_to_message = quoted(known.message);
    return null;
  }
  if (given && typeof given === 'object' && given.chat && given.date !== undefined) return null; // crafted
  return `no message ${raw} in chat ${msg.chat.id} to reply to`;
}

function clientMessageRoute(kind) {
  return async (req, res) => {
    const msg = req.body;
    if (!msg || typeof msg !== 'object' || !msg.botToken) {
      res.status(400).json({ ok: false, description: 'the message needs botToken' });
      return;
    }
    if (!msg.chat || msg.chat.id === undefined) {
      res.status(400).json({ ok: false, description: 'the message needs chat.id' });
      return;
    }
    if (msg.date === undefined) msg.date = nowSec();
    const upgraded = upgradedNote(msg.botToken, msg.chat.id);
    if (upgraded) {
      res.status(400).json({ ok: false, description: upgraded });
      return;
    }
    if (Number(msg.chat.id) < 0) {
      if (!msg.from || msg.from.id === undefined) {
        res.status(400).json({ ok: false, description: 'a message in a group needs from (the user who wrote it)' });
        return;
      }
      rememberGroup(msg.botToken, msg.chat);
    }
    if (msg.from === undefined && Number(msg.chat.id) > 0) {
      msg.from = { id: Number(msg.chat.id), is_bot: false, first_name: msg.chat.first_name || 'Test' };
    }
    const replyError = resolveUserReply(msg.botToken, msg);
    if (replyError) {
      res.status(400).json({ ok: false, description: replyError });
      return;
    }
    if (kind === 'command' && !msg.entities && typeof msg.text === 'string' && msg.text.startsWith('/')) {
      const space = msg.text.indexOf(' ');
      msg.entities = [{ offset: 0, length: space < 0 ? msg.text.length : space, type: 'bot_command' }];
    }
    rememberUser(msg.botToken, msg.chat, msg.from);
    const ids = { message_id: tg.messageId, update_id: tg.updateId };
    try {
      await (kind === 'command' ? tg.addUserCommand(msg) : tg.addUserMessage(msg));
    } catch (error) {
      res.status(400).json({ ok: false, description: String(error && error.message) });
      return;
    }
    const seen = { ...msg, message_id: ids.message_id };
    delete seen.botToken;
    state.userMessages.set(key(msg.botToken, Number(msg.chat.id), ids.message_id), { deleted: false, message: seen });
    wake(msg.botToken);
    res.json({ ok: true, result: ids });
  };
}

async function clientCallbackRoute(req, res) {
  const cq = req.body;
  if (!cq || typeof cq !== 'object' || !cq.botToken) {
    res.status(400).json({ ok: false, description: 'the callback query needs botToken' });
    return;
  }
  const token = cq.botToken;
  const chatId = Number((cq.message && cq.message.chat && cq.message.chat.id) ?? cq.chatId ?? (cq.from && cq.from.id));
  if (!Number.isInteger(chatId)) {
    res.status(400).json({ ok: false, description: 'the callback query needs message.chat.id, chatId or from.id' });
    return;
  }
  if (!cq.from && chatId < 0) {
    res.status(400).json({ ok: false, description: 'a button press in a group needs from (the user who pressed)' });
    return;
  }
  const upgraded = upgradedNote(token, chatId);
  if (upgraded) {
    res.status(400).json({ ok: false, description: upgraded });
    return;
  }
  if (!cq.from) cq.from = state.users.get(key(token, chatId)) || { id: chatId, is_bot: false, first_name: 'Test' };
  const wanted = cq.message && cq.message.message_id !== undefined ? Number(cq.message.message_id) : null;
  const alive = chatLog(token, chatId).filter((e) => !e.deleted);
  let message;
  if (wanted !== null) {
    const entry = findEntry(token, chatId, wanted);
    // A message the bot never sent here (or deleted) is what Telegram calls an InaccessibleMessage.
    message = entry && !entry.deleted ? clone(entry.message) : { chat: chatObject(token, chatId), message_id: wanted, date: 0 };
  } else {
    const hasData = (e) => e.message.reply_markup && e.message.reply_markup.inline_keyboard.flat()
      .some((b) => b.callback_data === cq.data);
    const entry = alive.filter(hasData).pop() || alive[alive.length - 1];
    if (!entry) {
      res.status(400).json({ ok: false, description: `the bot has sent no message to chat ${chatId} to press a button on` });
      return;
    }
    message = clone(entry.message);
  }
  cq.message = message;
  cq.chat_instance = cq.chat_instance || chatInstance(token, chatId);
  rememberUser(token, message.chat, cq.from);
  const ids = { callback_query_id: String(tg.callbackId), update_id: tg.updateId, message_id: message.message_id };
  state.callbacks.set(key(token, ids.callback_query_id), { answered: false });
  try {
    await tg.addUserCallback(cq);
  } catch (error) {
    res.status(400).json({ ok: false, description: String(error && error.message) });
    return;
  }
  wake(token);
  res.json({ ok: true, result: ids });
}

const testRoutes = express.Router();

testRoutes.get('/health', (_req, res) => res.json({ ok: true, result: { port: tg.config.port } }));

testRoutes.post('/failNext', (req, res) => {
  const b = req.body || {};
  if (!b.method) {
    res.status(400).json({ ok: false, description: 'method is required' });
    return;
  }
  const code = Number(b.error_code || 400);
  const defaults = {
    400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden: bot was blocked by the user',
    404: 'Not Found', 409: 'Conflict', 429: `Too Many Requests: retry after ${b.retry_after ?? 1}`,
    500: 'Internal Server Error', 502: 'Bad Gateway',
  };
  const parameters = {};
  if (b.retry_after !== undefined && b.retry_after !== null) parameters.retry_after = Number(b.retry_after);
  else if (code === 429) parameters.retry_after = 1;
  if (b.migrate_to_chat_id !== undefined && b.migrate_to_chat_id !== null) parameters.migrate_to_chat_id = Number(b.migrate_to_chat_id);
  state.failures.push({
    token: b.token || null,
    method: String(b.method).toLowerCase(),
    times: Number(b.times || 1),
    error: {
      error_code: code,
      description: b.description || defaults[code] || `Error ${code}`,
      parameters: Object.keys(parameters).length ? parameters : undefined,
    },
  });
  res.json({ ok: true, result: true });
});

testRoutes.post('/injectUpdate', async (req, res) => {
  const b = req.body || {};
  if (!b.token || !('update' in b)) {
    res.status(400).json({ ok: false, description: 'token and update are required' });
    return;
  }
  const update = b.update;
  const isObject = update !== null && typeof update === 'object' && !Array.isArray(update);
  if (isObject && update.update_id === undefined && b.assign_update_id !== false) update.update_id = tg.updateId++;
  if (isObject && update.callback_query && update.callback_query.id !== undefined) {
    state.callbacks.set(key(b.token, update.callback_query.id), { answered: false });
  }
  const injected = isObject && update.message;
  if (injected && injected.chat && Number.isInteger(Number(injected.chat.id)) && Number.isInteger(injected.message_id)) {
    // Known from now on, so that the bot can reply to it.
    state.userMessages.set(key(b.token, Number(injected.chat.id), injected.message_id), { deleted: false, message: clone(injected) });
  }
  if (tg.webhooks[b.token]) {
    try {
      await deliverWebhook(b.token, update);
    } catch (error) {
      res.status(502).json({ ok: false, description: `webhook delivery failed: ${error}` });
      return;
    }
  } else {
    tg.storage.userMessages.push({ raw: update, botToken: b.token, time: Date.now() });
    wake(b.token);
  }
  res.json({ ok: true, result: { update_id: isObject && Number.isInteger(update.update_id) ? update.update_id : null } });
});

testRoutes.post('/limits', (req, res) => {
  const b = req.body || {};
  if (!b.token) {
    res.status(400).json({ ok: false, description: 'token is required' });
    return;
  }
  const limits = limitsOf(b.token);
  if (b.enabled !== undefined && b.enabled !== null) limits.enabled = Boolean(b.enabled);
  for (const name of LIMIT_KEYS) {
    if (b[name] === undefined || b[name] === null) continue;
    const value = Number(b[name]);
    if (!(value > 0)) {
      res.status(400).json({ ok: false, description: `${name} must be a positive number` });
      return;
    }
    limits[name] = value;
  }
  state.flood.delete(b.token); // new limits start from a clean slate
  res.json({ ok: true, result: limits });
});

testRoutes.post('/violations', (req, res) => {
  const b = req.body || {};
  res.json({ ok: true, result: state.violations.filter((v) => !b.token || v.token === b.token) });
});

// A basic group becomes a supergroup, as when its owner opens its history to new members: a new
// id, the old one refused from now on, and the two service messages Telegram sends the bot
// (unless `notify` is false: a bot that missed them, say while it was down for days).
testRoutes.post('/upgradeGroup', async (req, res) => {
  const b = req.body || {};
  const old = Number(b.chatId);
  if (!b.token || !Number.isInteger(old) || old >= 0 || String(old).startsWith('-100')) {
    res.status(400).json({ ok: false, description: 'token and chatId of a basic group (negative, not -100...) are required' });
    return;
  }
  if (!b.from || b.from.id === undefined) {
    res.status(400).json({ ok: false, description: 'from (the user who upgraded the group) is required' });
    return;
  }
  if (state.migrations.has(key(b.token, old))) {
    res.status(400).json({ ok: false, description: upgradedNote(b.token, old) });
    return;
  }
  const upgraded = Number(`-100${-old}`); // Telegram's supergroup ids: -100 and the channel id
  const group = { ...defaultGroup(old), ...(state.groups.get(key(b.token, old)) || {}) };
  const supergroup = { ...group, type: 'supergroup' };
  state.groups.set(key(b.token, upgraded), supergroup);
  const from = { is_bot: false, first_name: 'Test', ...b.from };
  const notify = b.notify !== false;
  if (notify) {
    await tg.addUserMessage({ botToken: b.token, from, chat: { id: old, ...group }, date: nowSec(), migrate_to_chat_id: upgraded });
  }
  state.migrations.set(key(b.token, old), upgraded);
  if (notify) {
    await tg.addUserMessage({
      botToken: b.token, from, chat: { id: upgraded, ...supergroup }, date: nowSec(), migrate_from_chat_id: old,
    });
    wake(b.token);
  }
  res.json({ ok: true, result: { chat_id: upgraded } });
});

testRoutes.post('/botMessages', (req, res) => {
  const b = req.body || {};
  res.json({ ok: true, result: chatLog(b.token, Number(b.chatId)) });
});

testRoutes.post('/calls', (req, res) => {
  const b = req.body || {};
  const method = b.method ? String(b.method).toLowerCase() : null;
  const calls = state.calls.filter((c) => (!b.token || c.token === b.token) && (!method || c.method.toLowerCase() === method));
  res.json({ ok: true, result: calls });
});

testRoutes.get('/files/:fileId', (req, res) => {
  const file = state.files.get(req.params.fileId);
  if (!file) {
    res.status(404).json({ ok: false, description: 'no such file' });
    return;
  }
  res.type(file.mime_type || 'application/octet-stream').send(file.data);
});

// ---------------------------------------------------------------- the front app

const app = express();
app.disable('x-powered-by');
app.use(express.json({ limit: '60mb' }));
app.use(express.urlencoded({ extended: false, limit: '60mb', parameterLimit: 10000 }));
app.use(express.raw({ type: 'multipart/form-data', limit: '60mb' }));
app.use(multipartMiddleware);

app.get(/^\/file\/bot([^/]+)\/(.+)$/, (req, res) => {
  const file = state.filesByPath.get(req.params[1]);
  if (!file) {
    sendError(res, 404, 'Not Found');
    return;
  }
  res.type(file.mime_type || 'application/octet-stream').send(file.data);
});
app.all(/^\/bot([^/]+)\/([^/]+)\/?$/, (req, res) => {
  botRoute(req, res);
});
app.post('/sendMessage', clientMessageRoute('message'));
app.post('/sendCommand', clientMessageRoute('command'));
app.post('/sendCallback', clientCallbackRoute);
app.use('/test', testRoutes);
app.use(tg.webServer); // the emulator's own client routes (/getUpdates, /getUpdatesHistory)

app.use((error, req, res, _next) => {
  const code = error instanceof ApiError ? error.code : (error.status || error.statusCode || 500);
  const description = error instanceof ApiError ? error.description : `Bad Request: ${error.message}`;
  if (/^\/bot/.test(req.path)) sendError(res, code, description);
  else res.status(code).json({ ok: false, description });
});

tg.webServer = app;

async function main() {
  await tg.start();
  const { server } = tg;
  // Longer than the clients' keep-alive so that the server never drops a connection a client reuses.
  server.keepAliveTimeout = 120000;
  server.headersTimeout = 121000;
  const actual = server.address().port;
  tg.config.port = actual;
  tg.config.apiURL = `${tg.config.protocol}://${host}:${actual}`;
  process.stdout.write(`${JSON.stringify({ port: actual })}\n`);
}

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (args['exit-on-stdin-close']) {
  // The parent (pytest) holds our stdin: when it goes away, so do we.
  process.stdin.on('end', stop);
  process.stdin.on('close', stop);
  process.stdin.resume();
}

main().catch((error) => {
  log(`failed to start: ${error && error.stack}`);
  process.exit(1);
});
