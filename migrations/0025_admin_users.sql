-- SPDX-License-Identifier: Apache-2.0
-- Account administration (docs/api.md, "Accounts (admin)"): an admin may
-- require an account to use TOTP (until it is set up the account may only
-- reach its own /v1/me routes), and sees when each account last signed in.
-- Role changes and password resets are the admin's too (USER_UPDATED).

ALTER TABLE users ADD COLUMN totp_required boolean NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN last_login_at timestamptz;

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT UPDATE (role, totp_required, last_login_at) ON users TO %I', app);
END
$$;
