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
//   - a clean exit on SIGTERM.
// Usage: node cosmos.js   (prints "READY <port>" once listening)
"use strict";

const http = require("http");
const crypto = require("crypto");

const lib = "@vercel/cosmosdb-server/lib";
const Account = require(`${lib}/account`).default;
const routes = require(`${lib}/routes`).default;
const { parsePartitionKey } = require(`${lib}/utils/get-partition-from-header`);

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

function main() {
  let account;
  const server = http.createServer({ keepAliveTimeout: 60000 }, (req, res) => {
    (async () => {
      const route = routes(req);
      let body;
      if (!route) {
        res.statusCode = 400;
        body = { code: "BadRequest", message: `no route for ${req.method} ${req.url}` };
      } else {
        const [params, handler] = route;
        try {
          body = mend(account, req, res, params);
          if (body === undefined) body = await handler(account, req, res, params);
        } catch (err) {
          console.error(err);
          res.statusCode = 500;
          body = { code: "InternalServerError", message: String((err && err.message) || err) };
        }
        if (res.statusCode > 399 && body && !body.message) body.message = "";
      }
      if (body && body._etag) res.setHeader("etag", body._etag);
      res.setHeader("content-type", "application/json");
      res.setHeader("content-location", `http://${req.headers.host}${req.url}`);
      res.setHeader("connection", "keep-alive");
      res.setHeader("x-ms-activity-id", crypto.randomUUID());
      res.setHeader("x-ms-request-charge", "1");
      if (req.headers["a-im"] && res.statusCode === 200) {
        // The package's change feed never reports changes: say so plainly.
        if (req.headers["if-none-match"]) res.statusCode = 304;
        res.setHeader("etag", "1");
      }
      res.end(JSON.stringify(body === undefined ? {} : body));
    })().catch(err => {
      console.error(err);
      if (!res.writableEnded) {
        res.statusCode = 500;
        res.end(JSON.stringify({ code: "InternalServerError", message: String(err) }));
      }
    });
  });
  server.on("listening", () => {
    const { port } = server.address();
    account = new Account("127.0.0.1", port);
    const data = account.read();
    for (const loc of [...data.writableLocations, ...data.readableLocations]) {
      loc.databaseAccountEndpoint = `http://127.0.0.1:${port}/`;
    }
    process.stdout.write(`READY ${port}\n`);
  });
  server.listen(0, "127.0.0.1");
  const stop = () => process.exit(0);
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main();
