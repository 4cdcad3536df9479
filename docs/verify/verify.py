"""Verify a request the Crochet gateway forwarded to your seller endpoint.

Standard library only. In your server, call ``verify(secret, headers, body)`` with the
listing's signing secret, the request's headers and its exact body bytes, and refuse the
request (401) when it returns a reason:

    reason = verify(secret, request.headers, request.get_data())
    if reason:
        abort(401, reason)

Run as a script on a captured request (``crochet example-seller --capture FILE``):

    python3 verify.py SECRET_FILE REQUEST_JSON

exits 0 when the request verifies, 1 (with the reason) when it does not.
"""

import hashlib
import hmac
import json
import sys
import time

MAX_SKEW_SECONDS = 300


def verify(secret, headers, body, now=None):
    """Returns None when the request comes from the gateway, else the reason it does not.

    secret: the listing's signing secret (str); headers: any mapping of header names to
    values (names in any case); body: the exact body bytes received.
    """
    h = {k.lower(): v for k, v in headers.items()}
    names = ("x-crochet-timestamp", "x-crochet-request-id", "x-crochet-listing-id",
             "x-crochet-body-sha256", "x-crochet-signature")
    for name in names:
        if name not in h:
            return "missing header " + name
    timestamp, request_id, listing_id, claimed_sha, signature = (h[n] for n in names)

    body_sha = hashlib.sha256(body).hexdigest()
    if not hmac.compare_digest(claimed_sha, body_sha):
        return "X-Crochet-Body-SHA256 does not match the body"
    try:
        age = (int(time.time()) if now is None else now) - int(timestamp)
    except ValueError:
        return "X-Crochet-Timestamp is not a Unix time"
    if abs(age) > MAX_SKEW_SECONDS:
        return "X-Crochet-Timestamp is not recent"
    message = f"{timestamp}.{request_id}.{listing_id}.{body_sha}".encode()
    expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        return "X-Crochet-Signature does not match"
    return None


def main(argv):
    if len(argv) != 3:
        print("usage: verify.py SECRET_FILE REQUEST_JSON", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        secret = f.read().strip()
    with open(argv[2], encoding="utf-8") as f:
        captured = json.load(f)
    reason = verify(secret, captured["headers"], captured["body"].encode("utf-8"))
    if reason:
        print("refused: " + reason)
        return 1
    print("verified")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
