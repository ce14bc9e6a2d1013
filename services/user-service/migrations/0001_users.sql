CREATE TABLE users (
    id TEXT PRIMARY KEY,
    -- Stored lower-cased, so uniqueness is case-insensitive.
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    -- PHC string (argon2id, parameters and salt included).
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'admin')),
    created_at BIGINT NOT NULL
);
