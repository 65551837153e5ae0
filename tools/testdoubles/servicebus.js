'use strict';
// A single-process stand-in for an Azure Service Bus namespace, for tests.
//
// It speaks enough of Service Bus's AMQP 1.0 dialect for the unmodified Go
// azservicebus client, reached with a connection string ending in
// UseDevelopmentEmulator=true (plain AMQP, SASL ANONYMOUS): the $cbs
// put-token exchange, sends (single and batched), scheduled messages,
// peek-lock receive with credit, complete / abandon / dead-letter on the
// link and on the $management link, lock renewal, lock expiry, max delivery
// count and duplicate detection. Everything lives in memory.
//
// Usage: node servicebus.js [--admin-port-file PATH] [--max-message-size BYTES]
// It prints "ADMIN <port>" (the HTTP admin endpoint) and then "READY <port>"
// (the AMQP endpoint), and exits on SIGTERM.
//
// Admin API (JSON bodies; durations in milliseconds):
//   PUT  /queues/NAME        {lockDurationMs, maxDeliveryCount, duplicateDetectionWindowMs}
//                            creates or reconfigures a queue; in Azure these come from infrastructure
//   GET  /queues/NAME        counts: active, scheduled, locked, deadLettered, transfers
//   POST /namespaces         {same defaults} starts another namespace on its own AMQP port and
//                            answers {port}; its queues, created on first use, get those defaults
//   PUT|GET /namespaces/PORT/queues/NAME   the same, in that namespace
//   PUT  /faults             {refuseLinks, detachLinks, serverBusy, ignoreSettlements, durationMs} opens a window of
//                            failure, replacing any open one, that ends by itself after durationMs
//                            (0: until DELETE): refuseLinks answers every new link but $cbs with a
//                            detach (amqp:link:detach-forced); detachLinks detaches every open link
//                            the same way when the window opens; serverBusy rejects sends and
//                            management requests with com.microsoft:server-busy and delivers nothing;
//                            ignoreSettlements leaves every settlement sent on a receiving link
//                            unanswered (a link that went silent), while the $management link
//                            still settles by lock token.
//                            Locks held when the window opens stay, and expire as usual.
//   DELETE /faults           ends the window; GET /faults reports it and counts what it refused
//   PUT|GET|DELETE /namespaces/PORT/faults   the same, for that namespace
//
// It is a test tool: it does not persist, partition, expire messages by TTL,
// support sessions, topics or deferral, or check tokens.

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const rhea = require('rhea');
const amqpMessage = require('rhea/lib/message.js');
const types = require('rhea/lib/types.js');

// Queue defaults follow Service Bus's (lock 1 min, 10 deliveries); duplicate
// detection is always on because the product's queues enable it.
const DEFAULTS = { lockDurationMs: 60000, maxDeliveryCount: 10, duplicateDetectionWindowMs: 10 * 60000 };
const DLQ_SUFFIX = '/$deadletterqueue';
const BATCH_FORMAT = 0x80013700; // message-format of a Service Bus batch: each data section is a whole message

const SECTION = { header: 0x70, deliveryAnnotations: 0x71, annotations: 0x72, properties: 0x73, appProps: 0x74, data: 0x75, sequence: 0x76, value: 0x77, footer: 0x78 };
const SYMBOLIC_SECTION = {
  'amqp:header:list': 0x70, 'amqp:delivery-annotations:map': 0x71, 'amqp:message-annotations:map': 0x72,
  'amqp:properties:list': 0x73, 'amqp:application-properties:map': 0x74, 'amqp:data:binary': 0x75,
  'amqp:amqp-sequence:list': 0x76, 'amqp:amqp-value:*': 0x77, 'amqp:footer:map': 0x78,
};

const args = parseArgs(process.argv.slice(2));
const MAX_MESSAGE_SIZE = Number(args['max-message-size'] || 256 * 1024); // Standard tier

// rhea decodes every incoming message into plain JavaScript values, which
// loses AMQP types (an int64 application property would come back as a
// uint32). The broker must hand messages on byte for byte, so it takes the
// raw bytes instead and decodes only what it reads. rhea calls this function
// from one place, for each complete transfer of message-format 0.
const decodeMessage = amqpMessage.decode;
amqpMessage.decode = (buffer) => ({ raw: buffer });

// go-amqp sends an end for a session whose begin it gave up on before
// writing it (a cancelled context), so the channel was never opened here.
// rhea treats that as a protocol error and drops the whole connection;
// Service Bus shrugs, and so does this double.
const Connection = require('rhea/lib/connection.js');
const onEnd = Connection.prototype.on_end;
Connection.prototype.on_end = function (frame) {
  if (!this.remote_channel_map[frame.channel]) return log('end for unknown channel', frame.channel);
  return onEnd.call(this, frame);
};
// The same courtesy for a detach of a link that is already gone.
const Session = require('rhea/lib/session.js');
const onDetach = Session.prototype.on_detach;
Session.prototype.on_detach = function (frame) {
  if (!this.remote.handles[frame.performative.handle]) return log('detach for unknown handle', frame.performative.handle);
  return onDetach.call(this, frame);
};

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith('--')) out[argv[i].slice(2)] = argv[i + 1], i++;
  }
  return out;
}

function log(...parts) {
  if (process.env.SERVICEBUS_DOUBLE_DEBUG) console.error(new Date().toISOString(), ...parts);
}

// ---------------------------------------------------------------------------
// Message codec: a stored message keeps its bare message (properties,
// application properties, body, footer) as the sender encoded it; the broker
// rewrites only the header and message annotations on every delivery.

function sectionCode(typed) {
  const d = typed.descriptor && typed.descriptor.value;
  return typeof d === 'string' ? SYMBOLIC_SECTION[d] : Number(d);
}

function parseMessage(buffer) {
  const reader = new types.Reader(buffer);
  const m = { ttl: undefined, annotations: [], propertiesRaw: null, properties: {}, appProps: null, bodyRaw: [], bodies: [] };
  while (reader.remaining() > 0) {
    const start = reader.position;
    const section = reader.read();
    const raw = buffer.subarray(start, reader.position);
    switch (sectionCode(section)) {
      case SECTION.header:
        m.ttl = decodeMessage(raw).ttl;
        break;
      case SECTION.deliveryAnnotations:
        break; // addressed to the broker, not forwarded
      case SECTION.annotations:
        m.annotations = section.value; // [key, value, key, value, ...], still typed
        break;
      case SECTION.properties:
        m.propertiesRaw = raw;
        m.properties = decodeMessage(raw);
        break;
      case SECTION.appProps:
        m.appProps = section.value;
        break;
      default: // body sections and the footer travel untouched
        m.bodyRaw.push(raw);
        if (sectionCode(section) === SECTION.data) m.bodies.push(section.value);
    }
  }
  m.bodyRaw = Buffer.concat(m.bodyRaw);
  return m;
}

function annotation(parsed, name) {
  for (let i = 0; i + 1 < parsed.annotations.length; i += 2) {
    if (String(parsed.annotations[i].value) === name) return parsed.annotations[i + 1].value;
  }
  return undefined;
}

// withEntries replaces or adds entries of an AMQP map kept as a typed
// [key, value, ...] list; wrapKey types the keys it adds.
function withEntries(items, entries, wrapKey) {
  const out = [];
  for (let i = 0; i + 1 < (items || []).length; i += 2) {
    if (!(String(items[i].value) in entries)) out.push(items[i], items[i + 1]);
  }
  for (const [k, v] of Object.entries(entries)) out.push(wrapKey(k), v);
  return out;
}

function described(code, typed) {
  return types.described(types.wrap_ulong(code), typed);
}

// encodeDelivery builds the message as a receiver sees it. The client reads
// the delivery count from the header as "previous attempts" and adds one;
// x-opt-sequence-number must be a long, or the client panics on a type
// assertion.
function encodeDelivery(msg, lockedUntil) {
  const w = new types.Writer();
  w.write(described(SECTION.header, types.List32([
    types.wrap_boolean(true), // durable
    types.Ubyte(4), // priority
    msg.parsed.ttl ? types.wrap_uint(msg.parsed.ttl) : types.Null(),
    types.wrap_boolean(false), // first-acquirer
    types.wrap_uint(msg.failures),
  ])));
  const broker = {
    'x-opt-sequence-number': types.Long(msg.seq),
    'x-opt-enqueued-time': types.wrap_timestamp(msg.enqueuedAt),
    'x-opt-locked-until': types.wrap_timestamp(lockedUntil),
  };
  if (msg.deadLetterSource) broker['x-opt-deadletter-source'] = types.wrap_string(msg.deadLetterSource);
  w.write(described(SECTION.annotations, types.Map32(withEntries(msg.parsed.annotations, broker, types.wrap_symbol))));
  if (msg.parsed.propertiesRaw) w.write_bytes(msg.parsed.propertiesRaw);
  if (msg.parsed.appProps) w.write(described(SECTION.appProps, types.Map32(msg.parsed.appProps)));
  w.write_bytes(msg.parsed.bodyRaw);
  return w.toBuffer();
}

// Lock tokens travel in two byte orders: a delivery tag carries the 16-byte
// token in .NET GUID order (the first three fields little-endian), while
// management requests carry it as an AMQP uuid in RFC 4122 order.
function dotnetGuidOrder(b) {
  return Buffer.from([b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], ...b.subarray(8)]);
}

// ---------------------------------------------------------------------------
// Entities.

class LockLost extends Error {}

class Queue {
  constructor(ns, name, props, isDLQ) {
    this.ns = ns;
    this.name = name;
    this.isDLQ = isDLQ;
    this.configure(props);
    this.nextSeq = 1;
    this.messages = new Map(); // seq -> message, whatever its state
    this.available = []; // seqs ready for delivery, ascending
    this.seenIds = new Map(); // message id -> when duplicate detection forgets it
    this.consumers = []; // our sending links to this queue's receivers
    this.transfers = 0; // transfers received, to let tests see how a publish was batched
    this.dlq = isDLQ ? null : new Queue(ns, name + DLQ_SUFFIX, props, true);
  }

  configure(props) {
    this.lockDurationMs = props.lockDurationMs;
    this.maxDeliveryCount = this.isDLQ ? Infinity : props.maxDeliveryCount;
    this.duplicateDetectionWindowMs = props.duplicateDetectionWindowMs;
    if (this.dlq) this.dlq.configure(props);
  }

  // enqueue stores a sent message unless its id was seen within the window;
  // it answers the sequence number, or undefined for a dropped duplicate.
  enqueue(parsed, now) {
    const id = parsed.properties.message_id;
    if (id !== undefined && id !== null) {
      const key = Buffer.isBuffer(id) ? id.toString('hex') : String(id); // uuid ids arrive as bytes
      this.forgetIds(now);
      if (this.seenIds.has(key)) return undefined;
      this.seenIds.set(key, now + this.duplicateDetectionWindowMs);
    }
    const scheduled = annotation(parsed, 'x-opt-scheduled-enqueue-time');
    const at = scheduled instanceof Date ? scheduled.getTime() : 0;
    const msg = { seq: this.nextSeq++, parsed, failures: 0, enqueuedAt: Math.max(now, at), lock: null, timer: null };
    this.messages.set(msg.seq, msg);
    if (at > now) {
      msg.scheduled = true;
      msg.timer = setTimeout(() => { msg.scheduled = false; msg.timer = null; this.makeAvailable(msg); }, at - now);
    } else {
      this.makeAvailable(msg);
    }
    return msg.seq;
  }

  forgetIds(now) {
    // Map iteration follows insertion order, which is expiry order per queue.
    for (const [id, expires] of this.seenIds) {
      if (expires > now) break;
      this.seenIds.delete(id);
    }
  }

  cancelScheduled(seq) {
    const msg = this.messages.get(seq);
    if (msg && msg.scheduled) {
      clearTimeout(msg.timer);
      this.messages.delete(seq);
    }
  }

  makeAvailable(msg) {
    let lo = 0, hi = this.available.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.available[mid] < msg.seq) lo = mid + 1; else hi = mid;
    }
    this.available.splice(lo, 0, msg.seq);
    this.pump();
  }

  // pump hands available messages to receivers with credit, round robin.
  pump() {
    if (this.ns.fault && this.ns.fault.serverBusy) return;
    while (this.available.length > 0) {
      const link = this.nextConsumer();
      if (!link) return;
      const msg = this.messages.get(this.available.shift());
      this.lockAndSend(msg, link);
    }
  }

  nextConsumer() {
    for (let i = 0; i < this.consumers.length; i++) {
      const link = this.consumers.shift();
      this.consumers.push(link);
      if (link.is_open() && creditLeft(link) > 0) return link;
    }
    return undefined;
  }

  lockAndSend(msg, link) {
    const token = crypto.randomBytes(16);
    const lock = { key: token.toString('hex'), queue: this, msg, until: Date.now() + this.lockDurationMs, timer: null };
    msg.lock = lock;
    this.ns.locks.set(lock.key, lock);
    lock.timer = setTimeout(() => this.expire(lock), this.lockDurationMs);
    const delivery = link.send(encodeDelivery(msg, lock.until), dotnetGuidOrder(token), 0);
    delivery.lockKey = lock.key;
    link.unsent.push(delivery);
  }

  // current returns the live lock for a token, or throws LockLost.
  current(key) {
    const lock = this.ns.locks.get(key);
    if (!lock || lock.queue !== this || lock.msg.lock !== lock) throw new LockLost(`lock ${key} is not held`);
    return lock;
  }

  unlock(lock) {
    clearTimeout(lock.timer);
    this.ns.locks.delete(lock.key);
    lock.msg.lock = null;
  }

  renew(key) {
    const lock = this.current(key);
    clearTimeout(lock.timer);
    lock.until = Date.now() + this.lockDurationMs;
    lock.timer = setTimeout(() => this.expire(lock), this.lockDurationMs);
    return lock.until;
  }

  complete(key) {
    const lock = this.current(key);
    this.unlock(lock);
    this.messages.delete(lock.msg.seq);
  }

  // release returns a message the client never handed to its application
  // (azservicebus's releaser does this with prefetched messages): Service Bus
  // does not count that as a delivery.
  release(key) {
    const lock = this.current(key);
    this.unlock(lock);
    this.makeAvailable(lock.msg);
  }

  // abandon applies the client's properties-to-modify (sent as the
  // modified outcome's message annotations) to the application properties,
  // where Service Bus puts them.
  abandon(key, propertiesToModify) {
    const lock = this.current(key);
    this.unlock(lock);
    const msg = lock.msg;
    if (propertiesToModify && Object.keys(propertiesToModify).length > 0) {
      msg.parsed = Object.assign({}, msg.parsed, { appProps: withEntries(msg.parsed.appProps, wrapValues(propertiesToModify), types.wrap_string) });
    }
    this.failed(msg);
  }

  expire(lock) {
    if (this.ns.locks.get(lock.key) !== lock) return;
    log('lock expired', this.name, lock.msg.seq);
    this.unlock(lock);
    this.failed(lock.msg);
  }

  // failed counts a delivery that did not end in a settlement; the delivery
  // that uses up the last attempt sends the message to the dead-letter queue.
  failed(msg) {
    msg.failures++;
    if (msg.failures >= this.maxDeliveryCount) {
      this.moveToDLQ(msg, 'MaxDeliveryCountExceeded', `Message could not be consumed after ${this.maxDeliveryCount} delivery attempts.`, {});
    } else {
      this.makeAvailable(msg);
    }
  }

  deadLetter(key, reason, description, extra) {
    if (this.isDLQ) throw new Error('a dead-lettered message cannot be dead-lettered again');
    const lock = this.current(key);
    this.unlock(lock);
    this.moveToDLQ(lock.msg, reason, description, extra);
  }

  // moveToDLQ records the reason where the client looks for it: in the
  // application properties DeadLetterReason and DeadLetterErrorDescription.
  moveToDLQ(msg, reason, description, extra) {
    this.messages.delete(msg.seq);
    const entries = Object.assign(wrapValues(extra), {
      DeadLetterReason: types.wrap_string(reason || ''),
      DeadLetterErrorDescription: types.wrap_string(description || ''),
    });
    const parsed = Object.assign({}, msg.parsed, { appProps: withEntries(msg.parsed.appProps, entries, types.wrap_string) });
    const dead = { seq: this.dlq.nextSeq++, parsed, failures: 0, enqueuedAt: msg.enqueuedAt, lock: null, timer: null, deadLetterSource: this.name };
    this.dlq.messages.set(dead.seq, dead);
    this.dlq.makeAvailable(dead);
  }

  stats() {
    let scheduled = 0, locked = 0;
    for (const msg of this.messages.values()) {
      if (msg.scheduled) scheduled++;
      if (msg.lock) locked++;
    }
    return {
      name: this.name, active: this.messages.size - scheduled, scheduled, locked,
      deadLettered: this.dlq ? this.dlq.messages.size : 0, transfers: this.transfers,
      lockDurationMs: this.lockDurationMs, maxDeliveryCount: this.isDLQ ? null : this.maxDeliveryCount,
      duplicateDetectionWindowMs: this.duplicateDetectionWindowMs,
    };
  }
}

function wrapValues(obj) {
  const out = {};
  for (const [k, v] of Object.entries(obj || {})) out[k] = types.wrap(v);
  return out;
}

// creditLeft is the link credit not yet spoken for: rhea takes credit only
// when it writes a transfer, after the current event, so deliveries queued in
// this turn still count against it.
function creditLeft(link) {
  const written = link.session.outgoing.next_pending_delivery;
  while (link.unsent.length > 0 && link.unsent[0].id < written) link.unsent.shift();
  return link.credit - link.unsent.length;
}

class Namespace {
  constructor(defaults) {
    this.defaults = Object.assign({}, DEFAULTS, defaults);
    this.queues = new Map();
    this.locks = new Map(); // lock token (hex, RFC order) -> lock
    this.links = new Set(); // open links but $cbs, for a fault to detach
    this.fault = null; // the open window of failure, if any
    this.container = rhea.create_container({ id: 'servicebus-double' });
    this.container.sasl_server_mechanisms.enable_anonymous();
    this.wire(this.container);
  }

  listen() {
    return new Promise((resolve, reject) => {
      this.server = this.container.listen({
        host: '127.0.0.1', port: 0,
        // Locked messages stay unsettled deliveries until the client settles
        // them, so a session needs room for many.
        session_buffer_size: 1 << 20,
        sender_options: { treat_modified_as_released: false },
        receiver_options: { autoaccept: false, credit_window: 1000 },
      });
      this.server.once('listening', () => resolve(this.server.address().port));
      this.server.once('error', reject);
    });
  }

  // entity resolves an address to a queue, creating it with the namespace
  // defaults; entity names are case-insensitive, as in Service Bus.
  entity(address) {
    let name = String(address || '').toLowerCase();
    const dlq = name.endsWith(DLQ_SUFFIX);
    if (dlq) name = name.slice(0, -DLQ_SUFFIX.length);
    if (!name || name.includes('$')) return undefined;
    const q = this.queue(name);
    return dlq ? q.dlq : q;
  }

  queue(name, props) {
    name = name.toLowerCase();
    let q = this.queues.get(name);
    if (!q) {
      q = new Queue(this, name, Object.assign({}, this.defaults, props), false);
      this.queues.set(name, q);
    } else if (props) {
      q.configure(Object.assign({}, this.defaults, props));
    }
    return q;
  }

  // setFault opens a window of failure (see the admin API above).
  setFault(f) {
    this.clearFault();
    this.fault = Object.assign({ refused: 0, detached: 0, busy: 0, ignored: 0 }, f);
    if (f.durationMs > 0) this.fault.timer = setTimeout(() => this.clearFault(), f.durationMs);
    if (f.detachLinks) {
      for (const link of this.links) {
        this.dropConsumer(link);
        this.links.delete(link);
        if (link.is_open()) {
          this.fault.detached++;
          link.close({ condition: 'amqp:link:detach-forced', description: 'the entity is being updated (test fault)' });
        }
      }
    }
  }

  clearFault() {
    if (!this.fault) return;
    clearTimeout(this.fault.timer);
    this.fault = null;
    for (const q of this.queues.values()) q.pump();
  }

  faultState() {
    if (!this.fault) return { active: false };
    const { refuseLinks, detachLinks, serverBusy, ignoreSettlements, refused, detached, busy, ignored } = this.fault;
    return { active: true, refuseLinks: !!refuseLinks, detachLinks: !!detachLinks, serverBusy: !!serverBusy, ignoreSettlements: !!ignoreSettlements, refused, detached, busy, ignored };
  }

  // refused closes a new link while the fault refuses links, and tracks it
  // otherwise; it reports whether the link was closed.
  refused(link) {
    if (this.fault && this.fault.refuseLinks) {
      this.fault.refused++;
      // The attach that precedes the detach still states the size limit:
      // a client that read 0 there would find every message too large.
      link.local.attach.max_message_size = MAX_MESSAGE_SIZE;
      link.close({ condition: 'amqp:link:detach-forced', description: 'the namespace is unavailable (test fault)' });
      return true;
    }
    this.links.add(link);
    return false;
  }

  busy() {
    if (!this.fault || !this.fault.serverBusy) return false;
    this.fault.busy++;
    return true;
  }

  wire(c) {
    // A remotely initiated link is opened by rhea before these events; the
    // fields set here go out in our attach. The client insists that the
    // reply echoes source, target and both settle modes.
    c.on('sender_open', (ctx) => this.onSenderOpen(ctx.sender));
    c.on('receiver_open', (ctx) => this.onReceiverOpen(ctx.receiver));
    c.on('message', (ctx) => this.onMessage(ctx));
    c.on('sendable', (ctx) => this.onCredit(ctx.sender));
    c.on('sender_draining', (ctx) => this.onCredit(ctx.sender));
    for (const outcome of ['accepted', 'rejected', 'released', 'modified']) {
      c.on(outcome, (ctx) => this.onOutcome(outcome, ctx.delivery));
    }
    c.on('sender_close', (ctx) => { this.links.delete(ctx.sender); this.dropConsumer(ctx.sender); });
    c.on('receiver_close', (ctx) => this.links.delete(ctx.receiver));
    c.on('disconnected', (ctx) => this.dropConnection(ctx.connection));
    c.on('connection_close', (ctx) => this.dropConnection(ctx.connection));
    c.on('error', (err) => log('amqp error', err && err.message));
    c.on('sender_error', (ctx) => log('sender error', ctx.sender.error));
    c.on('receiver_error', (ctx) => log('receiver error', ctx.receiver.error));
  }

  echoAttach(link) {
    const remote = link.remote.attach;
    // rhea has already unwrapped the remote termini; described() re-encodes
    // them unchanged.
    if (remote.source) link.local.attach.source = remote.source.described();
    if (remote.target) link.local.attach.target = remote.target.described();
    if (remote.snd_settle_mode !== undefined) link.local.attach.snd_settle_mode = remote.snd_settle_mode;
    if (remote.rcv_settle_mode !== undefined) link.local.attach.rcv_settle_mode = remote.rcv_settle_mode;
  }

  // onSenderOpen handles a client's receiving link: either the reply half of
  // a request/response pair ($cbs or $management), or a queue receiver.
  onSenderOpen(link) {
    this.echoAttach(link);
    const source = String((link.remote.attach.source || {}).address || '');
    if (source === '$cbs' || source.toLowerCase().endsWith('/$management')) {
      // Replies are routed by the request's reply-to, which names this
      // link's target address.
      const target = String((link.remote.attach.target || {}).address || '');
      if (this.refused(link)) return;
      replyLinks(link.connection).set(target, link);
      return;
    }
    if (this.refused(link)) return;
    const q = this.entity(source);
    if (!q) {
      link.close({ condition: 'amqp:not-found', description: `no entity ${source}` });
      return;
    }
    link.queue = q;
    link.unsent = [];
    q.consumers.push(link);
  }

  // onReceiverOpen handles a client's sending link: requests to $cbs or
  // $management, or messages for a queue.
  onReceiverOpen(link) {
    this.echoAttach(link);
    const target = String((link.remote.attach.target || {}).address || '');
    const lower = target.toLowerCase();
    if (target === '$cbs') {
      link.role = 'cbs';
    } else if (this.refused(link)) {
      return;
    } else if (lower.endsWith('/$management')) {
      link.role = 'management';
      link.queue = this.entity(target.slice(0, -'/$management'.length));
    } else {
      link.queue = this.entity(target);
      if (!link.queue || link.queue.isDLQ) {
        link.close({ condition: 'amqp:not-found', description: `cannot send to ${target}` });
        return;
      }
      link.role = 'entity';
      link.local.attach.max_message_size = MAX_MESSAGE_SIZE;
    }
  }

  onMessage(ctx) {
    const link = ctx.receiver;
    const delivery = ctx.delivery;
    const raw = ctx.format === undefined ? ctx.message.raw : ctx.message;
    try {
      if (!link.role) {
        // A transfer on a link this double refused: the client may send
        // before it reads the detach, and an accepted outcome would tell
        // it that a message nobody stored was sent.
        throw Object.assign(new Error('the link was refused'), { condition: 'amqp:link:detach-forced' });
      }
      if (link.role === 'entity' && this.busy()) {
        throw Object.assign(new Error('the namespace is busy (test fault)'), { condition: 'com.microsoft:server-busy' });
      } else if (link.role === 'management' && this.busy()) {
        this.reply(link, decodeMessage(raw), 503, 'the namespace is busy (test fault)', undefined, 'com.microsoft:server-busy');
      } else if (link.role === 'entity') {
        this.onSend(link.queue, raw, ctx.format || 0);
      } else if (link.role === 'cbs') {
        this.reply(link, decodeMessage(raw), 200, 'OK'); // any token will do
      } else if (link.role === 'management') {
        this.onManagement(link, decodeMessage(raw));
      }
      delivery.update(true, amqpMessage.accepted().described());
    } catch (err) {
      log('rejecting a transfer:', err.message);
      delivery.update(true, amqpMessage.rejected({ error: { condition: err.condition || 'amqp:internal-error', description: err.message } }).described());
    }
  }

  onSend(queue, raw, format) {
    if (raw.length > MAX_MESSAGE_SIZE) {
      throw Object.assign(new Error(`message of ${raw.length} bytes exceeds ${MAX_MESSAGE_SIZE}`), { condition: 'amqp:link:message-size-exceeded' });
    }
    queue.transfers++;
    const now = Date.now();
    if (format === BATCH_FORMAT) {
      // The envelope only copies the first message's properties; each data
      // section holds one complete message.
      for (const inner of parseMessage(raw).bodies) queue.enqueue(parseMessage(inner), now);
    } else {
      queue.enqueue(parseMessage(raw), now);
    }
  }

  onManagement(link, req) {
    const props = req.application_properties || {};
    const body = req.body || {};
    const q = link.queue;
    const op = props.operation;
    if (!q) return this.reply(link, req, 404, 'no such entity');
    try {
      switch (op) {
        case 'com.microsoft:renew-lock': {
          const until = (body['lock-tokens'] || []).map((t) => q.renew(Buffer.from(t).toString('hex')));
          return this.reply(link, req, 200, 'OK', { expirations: types.wrap_array(until, types.Timestamp.typecode) });
        }
        case 'com.microsoft:update-disposition':
          for (const t of body['lock-tokens'] || []) this.disposeByManagement(q, Buffer.from(t).toString('hex'), body);
          return this.reply(link, req, 200, 'OK');
        case 'com.microsoft:schedule-message': {
          const now = Date.now();
          const seqs = (body.messages || []).map((m) => q.enqueue(parseMessage(Buffer.from(m.message)), now) || 0);
          return this.reply(link, req, 200, 'OK', { 'sequence-numbers': types.wrap_array(seqs, types.Long.typecode) });
        }
        case 'com.microsoft:cancel-scheduled-message':
          for (const seq of body['sequence-numbers'] || []) q.cancelScheduled(Number(seq));
          return this.reply(link, req, 200, 'OK');
        default:
          return this.reply(link, req, 501, `operation ${op} is not supported by the test double`);
      }
    } catch (err) {
      // 410 Gone is how Service Bus says "lock lost" on the management link.
      if (err instanceof LockLost) return this.reply(link, req, 410, err.message, undefined, 'com.microsoft:message-lock-lost');
      return this.reply(link, req, 400, err.message);
    }
  }

  disposeByManagement(q, key, body) {
    switch (body['disposition-status']) {
      case 'completed': return q.complete(key);
      case 'abandoned': return q.abandon(key, body['properties-to-modify']);
      case 'suspended': return q.deadLetter(key, body['deadletter-reason'], body['deadletter-description'], body['properties-to-modify']);
      default: throw new Error(`disposition ${body['disposition-status']} is not supported by the test double`);
    }
  }

  // reply answers a request/response message. The client matches replies by
  // correlation-id = the request's message-id, and accepts a status code
  // only if it is an int32.
  reply(requestLink, req, status, description, value, condition) {
    const link = replyLinks(requestLink.connection).get(String(req.reply_to));
    if (!link) return log('no reply link for', req.reply_to);
    const props = { 'status-code': types.Int(status), 'status-description': types.wrap_string(description) };
    if (condition) props['error-condition'] = types.wrap_symbol(condition);
    link.send({ correlation_id: req.message_id, application_properties: props, body: value === undefined ? null : value });
  }

  onCredit(link) {
    if (!link.queue) return;
    link.queue.pump();
    // A drain asks us to use up or give back the credit we cannot use now.
    if (link.is_open() && link._draining && creditLeft(link) > 0) link.set_drained(true);
  }

  // onOutcome applies the client's disposition of a delivered message and
  // settles it. A lock that is no longer held answers a rejected outcome
  // with com.microsoft:message-lock-lost, which the client reports as
  // CodeLockLost.
  onOutcome(outcome, delivery) {
    const link = delivery.link;
    if (!link.queue || delivery.lockKey === undefined) return;
    if (this.fault && this.fault.ignoreSettlements) {
      this.fault.ignored++;
      return log('settlement left unanswered (test fault)', outcome);
    }
    const q = link.queue;
    const state = delivery.remote_state;
    try {
      switch (outcome) {
        case 'accepted':
          q.complete(delivery.lockKey);
          return delivery.update(true, amqpMessage.accepted().described());
        case 'released':
          q.release(delivery.lockKey);
          return delivery.update(true, amqpMessage.released().described());
        case 'modified':
          if (state.undeliverable_here) throw new Error('deferral is not supported by the test double');
          q.abandon(delivery.lockKey, state.message_annotations);
          return delivery.update(true, amqpMessage.modified({ delivery_failed: true }).described());
        case 'rejected': {
          const error = state.error || {};
          const info = error.info || {};
          const extra = Object.assign({}, info);
          delete extra.DeadLetterReason;
          delete extra.DeadLetterErrorDescription;
          q.deadLetter(delivery.lockKey, info.DeadLetterReason, info.DeadLetterErrorDescription, extra);
          // A bare rejected outcome: with an error in it the client would
          // report the dead-letter as failed and rebuild its links.
          return delivery.update(true, amqpMessage.rejected().described());
        }
      }
    } catch (err) {
      const condition = err instanceof LockLost ? 'com.microsoft:message-lock-lost' : 'amqp:not-allowed';
      delivery.update(true, amqpMessage.rejected({ error: { condition, description: err.message } }).described());
    }
  }

  dropConsumer(link) {
    if (!link.queue || !link.unsent) return;
    const i = link.queue.consumers.indexOf(link);
    if (i >= 0) link.queue.consumers.splice(i, 1);
  }

  // dropConnection forgets a connection's receivers; their locks stay and
  // expire as usual, as in Service Bus.
  dropConnection(connection) {
    for (const link of this.links) if (link.connection === connection) this.links.delete(link);
    for (const q of this.queues.values()) {
      for (const queue of [q, q.dlq]) queue.consumers = queue.consumers.filter((l) => l.connection !== connection);
    }
  }
}

function replyLinks(connection) {
  if (!connection.replyLinks) connection.replyLinks = new Map();
  return connection.replyLinks;
}

// ---------------------------------------------------------------------------
// Admin endpoint.

function queueProps(body) {
  const out = {};
  for (const k of Object.keys(DEFAULTS)) {
    if (body[k] !== undefined && body[k] !== null && body[k] !== 0) out[k] = Number(body[k]);
  }
  return out;
}

function startAdmin(namespaces) {
  const server = http.createServer((req, res) => {
    let data = '';
    req.on('data', (chunk) => { data += chunk; });
    req.on('end', async () => {
      const send = (status, obj) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(obj));
      };
      try {
        const body = data ? JSON.parse(data) : {};
        const url = new URL(req.url, 'http://admin');
        let path = url.pathname;
        let ns = namespaces.get('default');
        const scoped = path.match(/^\/namespaces\/(\d+)(\/.*)$/);
        if (scoped) {
          ns = namespaces.get(scoped[1]);
          path = scoped[2];
          if (!ns) return send(404, { error: `no namespace on port ${scoped[1]}` });
        }
        if (req.method === 'POST' && path === '/namespaces') {
          const created = new Namespace(queueProps(body));
          const port = await created.listen();
          namespaces.set(String(port), created);
          return send(201, { port });
        }
        if (path === '/faults') {
          if (req.method === 'PUT') {
            ns.setFault({
              refuseLinks: !!body.refuseLinks, detachLinks: !!body.detachLinks, serverBusy: !!body.serverBusy,
              ignoreSettlements: !!body.ignoreSettlements, durationMs: Number(body.durationMs || 0),
            });
          } else if (req.method === 'DELETE') {
            ns.clearFault();
          } else if (req.method !== 'GET') {
            return send(405, { error: `${req.method} /faults` });
          }
          return send(200, ns.faultState());
        }
        const q = path.match(/^\/queues\/(.+)$/);
        if (q && req.method === 'PUT') return send(200, ns.queue(decodeURIComponent(q[1]), queueProps(body)).stats());
        if (q && req.method === 'GET') return send(200, ns.queue(decodeURIComponent(q[1])).stats());
        return send(404, { error: `no route ${req.method} ${url.pathname}` });
      } catch (err) {
        return send(400, { error: err.message });
      }
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

async function main() {
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => process.exit(0));
  const namespaces = new Map();
  const ns = new Namespace({});
  const port = await ns.listen();
  namespaces.set('default', ns);
  namespaces.set(String(port), ns);
  const adminPort = await startAdmin(namespaces);
  if (args['admin-port-file']) fs.writeFileSync(args['admin-port-file'], String(adminPort));
  process.stdout.write(`ADMIN ${adminPort}\n`);
  process.stdout.write(`READY ${port}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
