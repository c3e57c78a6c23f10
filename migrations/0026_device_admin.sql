-- SPDX-License-Identifier: Apache-2.0
-- Device administration (docs/api.md, "Devices (docks)"): a device may be
-- renamed (DEVICE_UPDATED) and re-enrolled with a new certificate under the
-- same serial (DEVICE_ENROLLED naming the certificate it replaces; the old
-- one no longer authenticates).

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT UPDATE (name, cert_sha256, certificate, issued) ON devices TO %I', app);
END
$$;
