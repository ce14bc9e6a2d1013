CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('PENDING_PAYMENT', 'PAID', 'CANCELLED')),
    total_currency TEXT NOT NULL,
    total_minor BIGINT NOT NULL,
    cancel_reason TEXT NOT NULL DEFAULT '',
    -- Client-chosen; the same key from the same user always means the same order.
    idempotency_key TEXT,
    -- The normalised request lines, to refuse a key reused for a different basket.
    request_fingerprint TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX orders_by_user ON orders (user_id, id);
CREATE INDEX orders_pending ON orders (status, created_at);

CREATE TABLE order_items (
    order_id TEXT NOT NULL REFERENCES orders (id),
    product_id TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_currency TEXT NOT NULL,
    unit_price_minor BIGINT NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
