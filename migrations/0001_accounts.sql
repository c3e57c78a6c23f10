-- SPDX-License-Identifier: Apache-2.0
-- Accounts: staff users, bearer tokens (login sessions and API tokens) and
-- login throttling. The application role gets only what it needs; the role's
-- name arrives in the setting dems.app_role (set by demsd's migrator).

CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9._@-]{1,64}$'),
    role text NOT NULL CHECK (role IN ('admin', 'officer', 'prosecutor')),
    password_hash text NOT NULL,
    totp_secret bytea,
    totp_enabled boolean NOT NULL DEFAULT false,
    totp_last_step bigint NOT NULL DEFAULT 0,
    disabled boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Only SHA-256 of a token is stored; the token itself is shown once.
CREATE TABLE auth_tokens (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    user_id bigint NOT NULL REFERENCES users (id),
    kind text NOT NULL CHECK (kind IN ('session', 'api')),
    name text NOT NULL DEFAULT '' CHECK (length(name) <= 100),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX auth_tokens_user ON auth_tokens (user_id);

-- Failed logins per key ('u:<username>' or 'a:<address>') in a window.
CREATE TABLE login_throttle (
    key text PRIMARY KEY,
    failures integer NOT NULL,
    window_start timestamptz NOT NULL
);

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT SELECT, INSERT ON users TO %I', app);
    EXECUTE format('GRANT UPDATE (password_hash, totp_secret, totp_enabled, totp_last_step, '
                   'disabled, updated_at) ON users TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT ON auth_tokens TO %I', app);
    EXECUTE format('GRANT UPDATE (revoked_at) ON auth_tokens TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON login_throttle TO %I', app);
END
$$;
