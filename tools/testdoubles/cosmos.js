#!/usr/bin/env node
// Cosmos DB test double: @vercel/cosmosdb-server 1.0.1 over plain HTTP on
// 127.0.0.1, with a thin wrapper that mends what the adapter's tests rely on.
//
// The package's own request handler is not exported, so this file drives its
// account and router directly and adds:
//   - 404 with a Cosmos-style body (and sub-status 1003 when the database or
//     container is missing, as Azure answers) instead of the 500 the package
//     throws for a read of a missing item;
//   - Connection: keep-alive, which quadruples sequential throughput;
//   - account locations on http://, so an SDK that follows the account's
//     endpoint list keeps talking plain HTTP;
//   - transactional batches as Cosmos DB runs them (create, upsert, read,
//     delete, replace and patch): every operation in the
//     partition the request's header names (the Go SDK sends it only
//     there), all or nothing (the package keeps the operations before a
//     failed one), and 207 Multi-Status when one fails, that operation
//     with its own status and the others 424 (the package answers 200);
//     the change feed below does not show a batch's writes;
//   - a change feed (cosmosfeed.js): change feed reads of a container's
//     documents and its partition key ranges, in the shapes azcosmos
//     v1.5.0's ReadChangeFeed parses;
//   - a clean exit on SIGTERM;
//   - fault switches for outage tests, on an HTTP admin endpoint of its own
//     (its port is written to --admin-port-file before READY is printed):
//       PUT    /faults {kind, container, durationMs, retryAfterMs}
//       DELETE /faults          ends the fault at once
//       GET    /faults          {active, kind, container, injected}
//     kind is one of
//       throttle     429 with x-ms-retry-after-ms (retryAfterMs, default 100)
//                    and sub-status 3200, as Cosmos DB answers when a
//                    partition's request units are spent;
//       unavailable  503, as during a failover;
//       drop         the connection is closed without an answer;
//       hang         the request is held unanswered until the window ends,
//                    then served, as by a server that stopped responding;
//       refuse       the listening socket is closed and every open
//                    connection destroyed, so connections are refused, and
//                    it listens again on the same port when the window ends.
//     container limits throttle, unavailable, drop and hang to one container's
//     requests (all requests when empty); the window ends by itself after
//     durationMs (0: until DELETE).
// Usage: node cosmos.js [--admin-port-file PATH]   (prints "READY <port>" once listening)
"use strict";

const http = require("http");
const crypto = require("crypto");
const fs = require("fs");

const lib = "@vercel/cosmosdb-server/lib";
const Account = require(`${lib}/account`).default;
const routes = require(`${lib}/routes`).default;
const { parsePartitionKey } = require(`${lib}/utils/get-partition-from-header`);
const { Feeds } = require("./cosmosfeed");

function notFound(res, subStatus, message) {
  res.statusCode = 404;
  if (subStatus) res.setHeader("x-ms-substatus", String(subStatus));
  return { code: "NotFound", message };
}

// mend answers the requests the package gets wrong, or returns undefined to
// let the package's handler run.
function mend(account, req, res, params) {
  const { dbId, collId, docId } = params;
  if (!dbId) return undefined;
  if (!account.database(dbId).read()) {
    // Whatever was addressed under a missing database: the owner is missing.
    if (collId || req.method !== "GET") {
      return notFound(res, 1003, `Owner resource does not exist: database ${dbId}`);
    }
    return notFound(res, 0, `Database ${dbId} does not exist`);
  }
  if (!collId) return undefined;
  const coll = account.database(dbId).collection(collId);
  if (!coll.read()) {
    if (req.url.includes("/docs") || req.method !== "GET") {
      return notFound(res, 1003, `Owner resource does not exist: container ${collId}`);
    }
    return notFound(res, 0, `Container ${collId} does not exist`);
  }
  if (docId && req.method === "GET") {
    const header = req.headers["x-ms-documentdb-partitionkey"];
    const pk = parsePartitionKey(Array.isArray(header) ? header[0] : header, docId);
    if (!coll.document(docId, pk).read()) {
      return notFound(res, 0, "Entity with the specified id does not exist in the system.");
    }
  }
  return undefined;
}

const readJSON = require(`${lib}/json`).default;
const docOps = require(`${lib}/handler/_document-operations`);

const { patchOperation } = require(`${lib}/handler/_patch-operations`);

// patchInBatch runs a batch's patch operation: azcosmos sends the patch
// specification ({condition, operations}) as the operation's resourceBody.
function patchInBatch(coll, input) {
  const spec = input.resourceBody || {};
  return patchOperation(coll, {
    id: input.id, partitionKey: input.partitionKey, ifMatch: input.ifMatch,
    operations: spec.operations || [], condition: spec.condition,
  });
}

// batch runs a transactional batch. An operation that fails undoes the
// ones before it: each document the batch touched is put back as it was
// (deleted if it did not exist), as one transaction would leave it.
async function batch(account, req, res, { dbId, collId }) {
  const ops = await readJSON(req);
  const coll = account.database(dbId).collection(collId);
  const header = req.headers["x-ms-documentdb-partitionkey"];
  const pkHeader = Array.isArray(header) ? header[0] : header;
  if (!Array.isArray(ops) || !pkHeader) {
    res.statusCode = 400;
    return { code: "BadRequest", message: "a batch is an array of operations with a partition key header" };
  }
  const before = new Map(); // id -> the document before the batch, or null
  const results = [];
  let failed = -1;
  for (let i = 0; i < ops.length; i++) {
    const input = Object.assign({}, ops[i], { partitionKey: pkHeader });
    const id = input.id || (input.resourceBody && input.resourceBody.id);
    if (id && !before.has(id)) before.set(id, coll.document(id, parsePartitionKey(pkHeader, id)).read() || null);
    const run = {
      Create: docOps.createOperation, Upsert: docOps.upsertOperation, Read: docOps.readOperation,
      Delete: docOps.deleteOperation, Replace: docOps.replaceOperation, Patch: patchInBatch,
    }[input.operationType];
    if (!run) {
      res.statusCode = 400;
      return { code: "BadRequest", message: `operation type '${input.operationType}' is not supported in a batch here` };
    }
    const r = run(coll, input);
    if (r.statusCode >= 400) {
      failed = i;
      results.push({ statusCode: r.statusCode, requestCharge: 1 });
      break;
    }
    results.push({ statusCode: r.statusCode, requestCharge: 1, eTag: r.body && r.body._etag, resourceBody: r.body });
  }
  if (failed < 0) return results;
  for (const [id, prior] of before) {
    const pk = parsePartitionKey(pkHeader, id);
    if (prior === null) {
      if (coll.document(id, pk).read()) coll.documents.delete(id, pk);
    } else {
      coll.documents.upsert(prior);
    }
  }
  res.statusCode = 207;
  return ops.map((_, i) => (i === failed ? results[i] : { statusCode: 424, requestCharge: 0 }));
}

function argValue(name) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

// fault is the switch the admin endpoint sets; null when requests are served.
let fault = null;
const FAULT_KINDS = ["throttle", "unavailable", "drop", "refuse", "hang"];

// applies reports whether the active fault of kind applies to a request.
function applies(kind, params) {
  return !!fault && fault.kind === kind && (!fault.container || (!!params && params.collId === fault.container));
}

// hung resolves once no hang applies to a request (at once when none does).
async function hung(params) {
  if (!applies("hang", params)) return;
  fault.injected++;
  while (applies("hang", params)) await new Promise((resolve) => setTimeout(resolve, 20));
}

// faulted answers a request the active fault applies to, or returns false.
function faulted(req, res, params) {
  if (!fault || fault.kind === "refuse" || fault.kind === "hang" || !applies(fault.kind, params)) return false;
  fault.injected++;
  if (fault.kind === "drop") {
    req.socket.destroy();
    return true;
  }
  if (fault.kind === "throttle") {
    res.statusCode = 429;
    res.setHeader("x-ms-retry-after-ms", String(fault.retryAfterMs));
    res.setHeader("x-ms-substatus", "3200");
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ code: "TooManyRequests", message: "Request rate is large (test fault)" }));
    return true;
  }
  res.statusCode = 503;
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify({ code: "ServiceUnavailable", message: "Service is currently unavailable (test fault)" }));
  return true;
}

function main() {
  let account;
  let port = 0;
  const feeds = new Feeds();
  const sockets = new Set();
  const server = http.createServer({ keepAliveTimeout: 60000 }, (req, res) => {
    (async () => {
      const route = routes(req);
      await hung(route && route[0]);
      if (faulted(req, res, route && route[0])) return;
      let body;
      if (!route) {
        res.statusCode = 400;
        body = { code: "BadRequest", message: `no route for ${req.method} ${req.url}` };
      } else {
        const [params, handler] = route;
        try {
          body = mend(account, req, res, params);
          const isBatch = String(req.headers["x-ms-cosmos-is-batch-request"]).toLowerCase() === "true";
          if (body === undefined && isBatch && req.method === "POST") body = await batch(account, req, res, params);
          if (body === undefined) body = feeds.answer(account, req, res, params, handler);
          if (body === undefined) {
            body = await handler(account, req, res, params);
            feeds.written(req, res.statusCode, params, handler, body);
          }
        } catch (err) {
          console.error(err);
          res.statusCode = 500;
          body = { code: "InternalServerError", message: String((err && err.message) || err) };
        }
        if (res.statusCode > 399 && body && !body.message) body.message = "";
      }
      res.setHeader("content-type", "application/json");
      res.setHeader("content-location", `http://${req.headers.host}${req.url}`);
      res.setHeader("connection", "keep-alive");
      res.setHeader("x-ms-activity-id", crypto.randomUUID());
      res.setHeader("x-ms-request-charge", "1");
      if (body && body._etag && !res.getHeader("etag")) res.setHeader("etag", body._etag);
      if (res.statusCode === 304) return res.end();
      res.end(JSON.stringify(body === undefined ? {} : body));
    })().catch(err => {
      console.error(err);
      if (!res.writableEnded) {
        res.statusCode = 500;
        res.end(JSON.stringify({ code: "InternalServerError", message: String(err) }));
      }
    });
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.once("listening", async () => {
    port = server.address().port;
    account = new Account("127.0.0.1", port);
    const data = account.read();
    for (const loc of [...data.writableLocations, ...data.readableLocations]) {
      loc.databaseAccountEndpoint = `http://127.0.0.1:${port}/`;
    }
    const adminPort = await startAdmin();
    const portFile = argValue("admin-port-file");
    if (portFile) fs.writeFileSync(portFile, String(adminPort));
    process.stdout.write(`READY ${port}\n`);
  });
  server.listen(0, "127.0.0.1");

  // setFault starts a fault window, ending any earlier one first.
  function setFault(f) {
    clearFault();
    fault = Object.assign({ injected: 0 }, f);
    if (f.durationMs > 0) fault.timer = setTimeout(clearFault, f.durationMs);
    if (f.kind === "refuse") {
      server.close();
      for (const socket of sockets) socket.destroy();
    }
  }

  function clearFault() {
    if (!fault) return;
    clearTimeout(fault.timer);
    const was = fault;
    fault = null;
    if (was.kind === "refuse") server.listen(port, "127.0.0.1");
  }

  function startAdmin() {
    const admin = http.createServer((req, res) => {
      let data = "";
      req.on("data", (chunk) => { data += chunk; });
      req.on("end", () => {
        const send = (status, obj) => {
          res.writeHead(status, { "content-type": "application/json" });
          res.end(JSON.stringify(obj));
        };
        try {
          if (req.url !== "/faults") return send(404, { error: `no route ${req.method} ${req.url}` });
          if (req.method === "PUT") {
            const body = JSON.parse(data || "{}");
            if (!FAULT_KINDS.includes(body.kind)) return send(400, { error: `kind must be one of ${FAULT_KINDS.join(", ")}` });
            setFault({
              kind: body.kind,
              container: body.container || "",
              durationMs: Number(body.durationMs || 0),
              retryAfterMs: Number(body.retryAfterMs || 100),
            });
          } else if (req.method === "DELETE") {
            clearFault();
          } else if (req.method !== "GET") {
            return send(405, { error: `${req.method} /faults` });
          }
          return send(200, fault
            ? { active: true, kind: fault.kind, container: fault.container, injected: fault.injected }
            : { active: false });
        } catch (err) {
          return send(400, { error: err.message });
        }
      });
    });
    return new Promise((resolve) => admin.listen(0, "127.0.0.1", () => resolve(admin.address().port)));
  }
  const stop = () => process.exit(0);
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main();
