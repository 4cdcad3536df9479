-- A status filter on an agent's history (`GET /gateway-requests?status=…`) walks an
-- index of the calls that did not complete. The statuses an agent filters for (seller
-- errors, timeouts, interrupted calls, payment outcomes) are rare among a busy agent's
-- calls, so without it a filtered page read table rows until it had found its own; the
-- completed calls, most of them, are found at once through the newest-first indexes.
-- Completed calls are left out of it, so a call that completes costs its history write
-- nothing more.
CREATE INDEX gateway_requests_buyer_status ON gateway_requests (buyer_id, status, created_at DESC, id)
    WHERE status <> 'completed';
CREATE INDEX gateway_requests_seller_status ON gateway_requests (seller_id, status, created_at DESC, id)
    WHERE status <> 'completed';
