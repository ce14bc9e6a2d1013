-- A stand-in for a service's own table: one row per applied effect.
CREATE TABLE effects (event_id TEXT NOT NULL, order_id TEXT NOT NULL);
