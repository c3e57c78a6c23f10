-- SPDX-License-Identifier: Apache-2.0
-- Settings that change at run time (docs/configuration.md, "Settings at run
-- time"): a value here overrides the configuration's for every node; each
-- change is kept in settings_history and recorded as SETTING_CHANGED in the
-- transaction that makes it. Removing a row returns the key to the
-- configuration's value.

CREATE TABLE settings (
    key text PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9_]{0,63}$'),
    value text NOT NULL CHECK (length(value) < 4096),
    updated_by bigint NOT NULL REFERENCES users (id),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_seq bigint
);

CREATE TABLE settings_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key text NOT NULL,
    old_value text,         -- NULL: the configuration's value was in force
    new_value text,         -- NULL: back to the configuration's value
    changed_by bigint NOT NULL REFERENCES users (id),
    changed_at timestamptz NOT NULL DEFAULT now(),
    seq bigint
);
CREATE INDEX settings_history_key ON settings_history (key, id);

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON settings TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT ON settings_history TO %I', app);
END
$$;
