-- SPDX-License-Identifier: Apache-2.0
-- GET /v1/evidence lists artefacts newest first, paging by (created_at, id):
-- an index in that order makes each page a range scan instead of a sort of
-- every artefact.
CREATE INDEX artefacts_newest ON artefacts (created_at DESC, id DESC);
