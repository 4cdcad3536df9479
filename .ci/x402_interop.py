"""The Python half of .ci/x402-interop (run it through that script).

    x402_interop.py seller DIR       a seller endpoint that checks nothing and counts:
                                     every request is appended to DIR/requests.jsonl (and
                                     the last one written to DIR/last-request.json, in the
                                     format of docs/verify); it answers 200 JSON and
                                     prints `listening on http://ADDR` once bound
    x402_interop.py buy URL DB DIR   buys URL (a listing's gateway URL) with the stock
                                     x402 client, unmodified, then checks the answer, the
                                     seller's calls (DIR) and the ledger in the SQLite DB

Exits non-zero, saying what was expected and what came, at the first failed check.
"""

import asyncio
import base64
import json
import sqlite3
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BODY = {"task": "summarize", "input": "x402 interop"}


def seller_answer(received):
    return {"ok": True, "seller": "x402-interop", "received": received}


def seller(directory):
    directory = Path(directory)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            request = {
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
            }
            with open(directory / "requests.jsonl", "a") as log:
                log.write(json.dumps(request) + "\n")
            (directory / "last-request.json").write_text(json.dumps(request))
            try:
                received = json.loads(body)
            except ValueError:
                received = None
            answer = json.dumps(seller_answer(received)).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    server.serve_forever()


def fail(message, **shown):
    print(f"x402 interop: {message}", file=sys.stderr)
    for name, value in shown.items():
        if not isinstance(value, str):
            value = json.dumps(value, indent=2, default=str)
        print(f"-- {name}:\n{value}", file=sys.stderr)
    sys.exit(1)


def decoded(header):
    try:
        return json.loads(base64.b64decode(header))
    except Exception:  # shown as it came
        return header


async def buy(url, db, directory):
    import httpx
    from eth_account import Account
    from x402 import x402Client
    from x402.http import x402HTTPClient
    from x402.http.clients import x402HttpxClient
    from x402.mechanisms.evm.exact import ExactEvmScheme

    # What the host offers, as a plain client sees it (shown on failure; no payment).
    async with httpx.AsyncClient() as plain:
        offer = await plain.post(url, json=BODY)
    offered = {
        "status": offer.status_code,
        "PAYMENT-REQUIRED": decoded(offer.headers.get("payment-required", "")),
        "body": offer.text,
    }
    if offer.status_code != 402 or "payment-required" not in offer.headers:
        fail("expected 402 with a PAYMENT-REQUIRED header", offer=offered)

    # The stock client, exactly as the x402 package documents it.
    account = Account.create()
    client = x402Client()
    client.register("eip155:*", ExactEvmScheme(signer=account))
    try:
        async with x402HttpxClient(client) as http:
            r = await http.post(url, json=BODY)
    except Exception as e:
        fail(f"the stock x402 client failed: {type(e).__name__}: {e}", offer=offered)
    answer = {"status": r.status_code, "headers": dict(r.headers), "body": r.text}
    if r.status_code != 200:
        fail(f"the paid retry answered {r.status_code}, expected 200", offer=offered, answer=answer)
    try:
        settle = x402HTTPClient(client).get_payment_settle_response(r.headers.get)
    except Exception as e:
        fail(f"the client cannot read PAYMENT-RESPONSE: {e}", answer=answer)
    if not settle.success:
        fail("PAYMENT-RESPONSE says the payment failed", settle=settle.model_dump(), answer=answer)
    data = r.json().get("data") or {}
    payment = data.get("payment") or {}
    if payment.get("status") != "settled" or payment.get("flow") != "x402":
        fail("expected data.payment settled by x402", answer=answer)
    if (payment.get("payer") or "").lower() != account.address.lower():
        fail(f"expected the payer {account.address}", answer=answer)
    if data.get("seller_response") != seller_answer(BODY):
        fail("expected the seller's JSON in data.seller_response", answer=answer)
    request_id = data.get("request_id") or ""
    if not request_id.startswith("gw_req_"):
        fail("expected data.request_id gw_req_…", answer=answer)
    print(f"paid {url}: 200, {request_id}, {json.dumps(data.get('charged_amount'))}, "
          f"PAYMENT-RESPONSE success (transaction {settle.transaction}, network {settle.network})")

    # The seller was called exactly once, by the gateway, with the buyer's body.
    calls = [json.loads(line) for line in open(Path(directory) / "requests.jsonl")]
    if len(calls) != 1:
        fail(f"the seller was called {len(calls)} times, expected once", calls=calls)
    if json.loads(calls[0]["body"]) != BODY or calls[0]["headers"].get("x-crochet-request-id") != request_id:
        fail("the seller's call is not the buyer's", call=calls[0])
    print("seller called exactly once")

    # The ledger balances: debit, seller credit and fee sum to zero; one settled payment.
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        ledger = con.execute(
            "SELECT COUNT(*), SUM(amount_cents) FROM ledger_entries WHERE gateway_request_id = ?",
            (request_id,),
        ).fetchone()
        payments = con.execute(
            "SELECT status, gateway_request_id, lower(payer) FROM x402_payments"
        ).fetchall()
    if ledger != (3, 0):
        fail(f"ledger entries of {request_id} (count, sum): {ledger}, expected (3, 0)")
    if payments != [("settled", request_id, account.address.lower())]:
        fail(f"x402_payments: {payments}, expected one settled row for {request_id}")
    print(f"ledger balances: {ledger[0]} entries summing to {ledger[1]}; one settled x402 payment")


def main(argv):
    if len(argv) == 2 and argv[0] == "seller":
        seller(argv[1])
    elif len(argv) == 4 and argv[0] == "buy":
        asyncio.run(buy(*argv[1:]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
