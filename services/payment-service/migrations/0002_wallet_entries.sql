-- Every change of a wallet's balance, one row each: a balance is the sum of its wallet's
-- entries, and an order has at most one debit and one refund (the unique key), so a double
-- charge cannot be written, and a reconciliation can count what each order cost.
CREATE TABLE wallet_entries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES wallets (user_id),
    kind TEXT NOT NULL CHECK (kind IN ('opening', 'top_up', 'debit', 'refund')),
    -- Signed: a debit is negative.
    amount_minor BIGINT NOT NULL,
    -- The order a debit or refund is for; none for openings and top-ups.
    order_id TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (order_id, kind)
);
CREATE INDEX wallet_entries_by_user ON wallet_entries (user_id, id);

-- Wallets opened before the ledger existed start from the balance they had.
INSERT INTO wallet_entries (user_id, kind, amount_minor, created_at)
SELECT user_id, 'opening', balance_minor, updated_at FROM wallets;
