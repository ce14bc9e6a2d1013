CREATE TABLE products (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    price_currency TEXT NOT NULL,
    price_minor BIGINT NOT NULL CHECK (price_minor >= 0),
    -- Units available to order; reserved units are already subtracted.
    stock BIGINT NOT NULL CHECK (stock >= 0),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One per order: 'reserved', then 'committed' (paid) or 'released' (cancelled). A release
-- for an unknown order leaves a 'released' row with no items, so a late reserve is refused.
CREATE TABLE reservations (
    order_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'committed', 'released')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE reservation_items (
    order_id TEXT NOT NULL REFERENCES reservations (order_id),
    product_id TEXT NOT NULL REFERENCES products (id),
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_currency TEXT NOT NULL,
    unit_price_minor BIGINT NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
