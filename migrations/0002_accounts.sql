-- Accounts, sessions, API tokens, invitations, login throttling, site settings and image visibility.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    email         TEXT NOT NULL DEFAULT '',
    display_name  TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    password_hash TEXT NOT NULL,
    quota         INTEGER,                -- bytes; NULL means the site's default quota
    disabled      INTEGER NOT NULL DEFAULT 0,
    created       REAL NOT NULL,
    last_login    REAL
);

CREATE TABLE sessions (
    key_hash    TEXT PRIMARY KEY,         -- SHA-256 of the cookie's session key
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created     REAL NOT NULL,
    expires     REAL NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,     -- SHA-256 of the token; the token itself is shown once
    created     REAL NOT NULL,
    last_used   REAL
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE invitations (
    id          TEXT PRIMARY KEY,
    code_hash   TEXT NOT NULL UNIQUE,
    created_by  TEXT NOT NULL,
    created     REAL NOT NULL,
    expires     REAL NOT NULL,
    used_by     TEXT,
    used_at     REAL
);

CREATE TABLE login_failures (
    key          TEXT PRIMARY KEY,        -- 'user:<name>' or 'addr:<address>'
    failures     INTEGER NOT NULL,
    last_failure REAL NOT NULL,
    locked_until REAL NOT NULL
);

CREATE TABLE site_settings (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL             -- JSON
);

ALTER TABLE images ADD COLUMN visibility TEXT NOT NULL DEFAULT 'private'
    CHECK (visibility IN ('private', 'registered', 'public'));
-- everything catalogued before accounts existed was shown to every visitor: keep it so
UPDATE images SET visibility = 'public';
CREATE INDEX images_owner ON images (owner, created DESC);
CREATE INDEX images_visibility ON images (visibility, created DESC);
