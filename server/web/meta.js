// SPDX-License-Identifier: Apache-2.0
// The upload metadata rules of server/api/upload_meta.c, in the browser, so
// a form can say what is wrong before anything is sent (the server checks
// again: it decides). No DOM: tests run these functions under node against
// the server's own answers (tests/integration/test_staff_app.py), and any
// page that uploads (the staff upload view, the submission portal) can use
// them. Each check returns null when the value is acceptable, otherwise the
// reason, worded for the person who typed it.

const encoder = new TextEncoder();
export const utf8Bytes = (s) => encoder.encode(s).length;

// The server caps every decoded metadata value at 2 KiB (META_VALUE_MAX;
// a description at 2000 bytes).
export const VALUE_MAX = 2048;
// Recording times: from 2000-01-01 to one day after the server's now.
const EARLIEST = Date.UTC(2000, 0, 1) / 1000;
const SLACK = 86400;
const SPAN_MAX = 7 * 86400;

// A lone surrogate cannot be encoded as UTF-8 (TextEncoder would write
// U+FFFD instead, silently changing the value).
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
// C0 and C1 controls, DEL, and the bidirectional embeddings, overrides and
// isolates, which make a name display as another (dems_http_filename_ok).
const refused = /[\u0000-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069]/; // eslint-disable-line no-control-regex

function textProblem(v) {
  if (loneSurrogate.test(v)) return 'is not valid text (a broken character)';
  if (refused.test(v)) return 'contains a control character or a text-direction override';
  return null;
}

export function filenameProblem(v) {
  const n = utf8Bytes(v);
  if (n === 0) return 'is empty';
  if (n > 255) return `is too long (${n} bytes; at most 255)`;
  if (v.includes('/')) return 'may not contain "/"';
  return textProblem(v);
}

export const DESCRIPTION_MAX = 2000; // upload_meta.c's description_problem

export function descriptionProblem(v) {
  const n = utf8Bytes(v);
  if (n === 0) return 'is empty';
  if (n > DESCRIPTION_MAX) return `is too long (${n} bytes; at most ${DESCRIPTION_MAX})`;
  return textProblem(v);
}

export function serialProblem(v) {
  if (v.length === 0 || v.length > 64 || !/^[A-Za-z0-9._-]+$/.test(v)) {
    return 'must be 1 to 64 letters, digits, dots, dashes or underscores';
  }
  return null;
}

// A media type as the server takes it (type/subtype of A-Z a-z 0-9 / . + - _).
export function mediaTypeOk(v) {
  const slash = v.indexOf('/');
  return v.length > 0 && v.length <= 127 && slash > 0 && slash < v.length - 1 && /^[A-Za-z0-9/.+_-]+$/.test(v);
}

// upload_parse_rfc3339: seconds since the epoch, or null.
export function parseTime(s) {
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/.exec(s);
  if (!m || s.length < 20) return null;
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map(Number);
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return null;
  let offset = 0;
  if (m[8] && m[8] !== 'Z' && m[8] !== 'z') {
    const oh = Number(m[8].slice(1, 3)), om = Number(m[8].slice(4, 6));
    if (oh > 23 || om > 59) return null;
    offset = (oh * 60 + om) * 60 * (m[8][0] === '+' ? 1 : -1);
  }
  const t = Date.UTC(y, mo - 1, d, h, mi, sec) / 1000;
  if (new Date(Date.UTC(y, mo - 1, d)).getUTCDate() !== d) return null; // 31 February
  return t - offset;
}

export function timeProblem(v, now = Date.now() / 1000) {
  const t = parseTime(v);
  if (t === null) return 'is not a valid time';
  if (t < EARLIEST) return 'is before 2000';
  if (t > now + SLACK) return 'is in the future';
  return null;
}

export function spanProblem(start, end) {
  const s = parseTime(start), e = parseTime(end);
  if (s === null || e === null) return null;
  if (e < s) return 'is before the recording start';
  if (e - s > SPAN_MAX) return 'is more than 7 days after the recording start';
  return null;
}

const CHECKS = {
  filename: filenameProblem,
  description: descriptionProblem,
  device_serial: serialProblem,
  officer_id: serialProblem,
  filetype: (v) => (mediaTypeOk(v) ? null : 'must be a media type such as video/mp4'),
  content_type: (v) => (mediaTypeOk(v) ? null : 'must be a media type such as video/mp4'),
  sha256: (v) => (/^[0-9a-fA-F]{64}$/.test(v) ? null : 'must be 64 hex digits'),
};

// Checks a whole Upload-Metadata object ({key: text}) as the server does;
// returns {key: reason} for every value it would refuse (empty when none).
export function metadataProblems(meta, now = Date.now() / 1000) {
  const out = {};
  for (const [k, v] of Object.entries(meta)) {
    let why;
    if (k === 'recording_start' || k === 'recording_end') why = timeProblem(v, now);
    else if (CHECKS[k]) why = CHECKS[k](v);
    else why = 'is not a metadata key the server knows';
    if (!why && utf8Bytes(v) > VALUE_MAX) why = `is longer than ${VALUE_MAX} bytes`;
    if (why) out[k] = why;
  }
  if (meta.filetype !== undefined && meta.content_type !== undefined) out.content_type = 'is given twice (filetype)';
  if (!out.recording_start && !out.recording_end && meta.recording_start && meta.recording_end) {
    const why = spanProblem(meta.recording_start, meta.recording_end);
    if (why) out.recording_end = why;
  }
  return out;
}
