// Verify a request the Crochet gateway forwarded to your seller endpoint (Node.js,
// node:crypto only). In your server, call verify(secret, headers, body) with the
// listing's signing secret, the request's headers and its exact body bytes (a Buffer;
// read the raw body, not re-serialized JSON), and answer 401 when it returns a reason:
//
//   const reason = verify(secret, req.headers, rawBody);
//   if (reason) { res.writeHead(401).end(JSON.stringify({ error: reason })); return; }
//
// Run as a script on a captured request (`crochet example-seller --capture FILE`):
//
//   node verify.mjs SECRET_FILE REQUEST_JSON
//
// exits 0 when the request verifies, 1 (with the reason) when it does not.

import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

export const MAX_SKEW_SECONDS = 300;

function equal(a, b) {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Returns null when the request comes from the gateway, else the reason it does not. */
export function verify(secret, headers, body, now = Math.floor(Date.now() / 1000)) {
  const h = {};
  for (const [k, v] of Object.entries(headers)) h[k.toLowerCase()] = String(v);
  const names = ["x-crochet-timestamp", "x-crochet-request-id", "x-crochet-listing-id",
    "x-crochet-body-sha256", "x-crochet-signature"];
  for (const name of names) {
    if (!(name in h)) return `missing header ${name}`;
  }
  const [timestamp, requestId, listingId, claimedSha, signature] = names.map((n) => h[n]);

  const bodySha = createHash("sha256").update(body).digest("hex");
  if (!equal(claimedSha, bodySha)) return "X-Crochet-Body-SHA256 does not match the body";
  if (!/^-?[0-9]+$/.test(timestamp)) return "X-Crochet-Timestamp is not a Unix time";
  if (Math.abs(now - Number(timestamp)) > MAX_SKEW_SECONDS) return "X-Crochet-Timestamp is not recent";
  const expected = createHmac("sha256", Buffer.from(secret, "utf8"))
    .update(`${timestamp}.${requestId}.${listingId}.${bodySha}`)
    .digest("hex");
  if (!equal(expected, signature.toLowerCase())) return "X-Crochet-Signature does not match";
  return null;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv.length !== 4) {
    console.error("usage: node verify.mjs SECRET_FILE REQUEST_JSON");
    process.exit(2);
  }
  const secret = readFileSync(process.argv[2], "utf8").trim();
  const captured = JSON.parse(readFileSync(process.argv[3], "utf8"));
  const reason = verify(secret, captured.headers, Buffer.from(captured.body, "utf8"));
  console.log(reason ? `refused: ${reason}` : "verified");
  process.exit(reason ? 1 : 0);
}
