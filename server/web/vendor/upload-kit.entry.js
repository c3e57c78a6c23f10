// SPDX-License-Identifier: Apache-2.0
// The entry point of upload-kit.js, the third-party code of the staff
// application (and of any other dems page that uploads: the submission
// portal): tus-js-client for resumable uploads and @noble/hashes' SHA-256,
// which, unlike WebCrypto, hashes a file a piece at a time. build.mjs
// bundles what these exports reach into one ES module; licenses.txt names
// every package whose code it holds, with its licence.
export { Upload, DetailedError, isSupported } from 'tus-js-client';
export { sha256 } from '@noble/hashes/sha2.js';
