// The change feed the Cosmos DB double's wrapper (cosmos.js) adds to
// @vercel/cosmosdb-server, which has none: enough of the REST protocol for
// azcosmos v1.5.0's ContainerClient.ReadChangeFeed and its partition key
// range cache, in "latest version" mode.
//
// Each container keeps a log of its documents' latest versions, each with
// the container's log sequence number (LSN) of the write that made it. A
// change feed request is a GET of the container's docs with the header
// "A-IM: Incremental feed"; If-None-Match carries the continuation, the
// LSN the reader has seen up to ("*" for now, absent for the beginning).
// The answer is 200 with {_rid, Documents, _count} and the ETag to continue
// from, or 304 with that ETag when nothing changed since (the shapes
// newChangeFeedResponse and fetchPartitionKeyRanges parse in the SDK).
// Like Cosmos DB in this mode, a document changed twice appears once, in
// the place of its last change, and deletes do not appear.
//
// Every container has one partition key range, "0", covering ["", "FF");
// the package's own answer for it has a numeric id the SDK cannot parse.
"use strict";

const lib = "@vercel/cosmosdb-server/lib";
const handlers = {
  create: require(`${lib}/handler/create-document`).default,
  upsert: require(`${lib}/handler/upsert-document`).default,
  replace: require(`${lib}/handler/replace-document`).default,
  patch: require(`${lib}/handler/patch-document`).default,
  remove: require(`${lib}/handler/delete-document`).default,
  deleteCollection: require(`${lib}/handler/delete-collection`).default,
  deleteDatabase: require(`${lib}/handler/delete-database`).default,
  readDocuments: require(`${lib}/handler/read-documents`).default,
  readRanges: require(`${lib}/handler/read-partition-key-ranges`).default,
};

// The partition key range change feed never changes: one range, one ETag.
const RANGES_ETAG = '"1"';

class Feeds {
  constructor() {
    this.logs = new Map(); // "db/coll" -> {lsn, docs: Map(key -> {lsn, doc})}
  }

  log(dbId, collId) {
    const name = `${dbId}/${collId}`;
    let l = this.logs.get(name);
    if (!l) {
      l = { lsn: 0, docs: new Map() };
      this.logs.set(name, l);
    }
    return l;
  }

  // answer serves the requests this module owns (change feed reads and
  // partition key ranges) and returns their body, or undefined to let the
  // package's handler run.
  answer(account, req, res, params, handler) {
    const aim = String(req.headers["a-im"] || "").toLowerCase() === "incremental feed";
    if (handler === handlers.readRanges) return this.ranges(account, req, res, params, aim);
    if (handler === handlers.readDocuments && aim) return this.changes(account, req, res, params);
    return undefined;
  }

  ranges(account, req, res, { dbId, collId }, aim) {
    const coll = account.database(dbId).collection(collId).read();
    res.setHeader("etag", RANGES_ETAG);
    if (aim && req.headers["if-none-match"] === RANGES_ETAG) {
      res.statusCode = 304;
      return null;
    }
    const range = {
      id: "0", _rid: `${coll._rid}AgAAAA==`, _etag: RANGES_ETAG, _ts: Math.floor(Date.now() / 1000),
      minInclusive: "", maxExclusive: "FF", ridPrefix: 0, throughputFraction: 1, status: "online", parents: [],
    };
    res.setHeader("x-ms-item-count", "1");
    return { _rid: coll._rid, PartitionKeyRanges: [range], _count: 1 };
  }

  changes(account, req, res, { dbId, collId }) {
    const coll = account.database(dbId).collection(collId).read();
    const l = this.log(dbId, collId);
    const since = sinceOf(req.headers["if-none-match"], l.lsn);
    if (since === null) {
      res.statusCode = 400;
      return { code: "BadRequest", message: `If-None-Match ${req.headers["if-none-match"]} is no continuation of this feed` };
    }
    let max = parseInt(req.headers["x-ms-max-item-count"] || "100", 10);
    if (!(max > 0)) max = Infinity;
    const page = [...l.docs.values()].filter((e) => e.lsn > since).sort((a, b) => a.lsn - b.lsn).slice(0, max);
    if (page.length === 0) {
      res.statusCode = 304;
      res.setHeader("etag", `"${Math.max(since, l.lsn)}"`);
      return null;
    }
    res.setHeader("etag", `"${page[page.length - 1].lsn}"`);
    res.setHeader("x-ms-item-count", String(page.length));
    return { _rid: coll._rid, Documents: page.map((e) => e.doc), _count: page.length };
  }

  // written notes what a successful request of the package's handler
  // changed.
  written(req, status, params, handler, body) {
    if (status >= 300) return;
    const { dbId, collId, docId } = params;
    const pk = String(req.headers["x-ms-documentdb-partitionkey"] || "");
    switch (handler) {
      case handlers.create:
      case handlers.upsert:
      case handlers.replace:
      case handlers.patch: {
        if (!body || typeof body.id !== "string") return;
        const l = this.log(dbId, collId);
        l.lsn++;
        l.docs.set(`${pk}\u0000${body.id}`, { lsn: l.lsn, doc: Object.assign({}, body, { _lsn: l.lsn }) });
        return;
      }
      case handlers.remove:
        this.log(dbId, collId).docs.delete(`${pk}\u0000${docId}`);
        return;
      case handlers.deleteCollection:
        this.logs.delete(`${dbId}/${collId}`);
        return;
      case handlers.deleteDatabase:
        for (const name of [...this.logs.keys()]) {
          if (name.startsWith(`${dbId}/`)) this.logs.delete(name);
        }
    }
  }
}

// sinceOf reads a continuation: the LSN after which changes are wanted, 0
// for the beginning, or null when it is not one.
function sinceOf(ifNoneMatch, now) {
  if (ifNoneMatch === undefined || ifNoneMatch === "") return 0;
  const v = String(ifNoneMatch).replace(/^W\//, "").replace(/"/g, "");
  if (v === "*") return now;
  return /^\d+$/.test(v) ? parseInt(v, 10) : null;
}

module.exports = { Feeds };
