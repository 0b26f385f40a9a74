'use strict';
// Haraka plugin entry (CommonJS). Haraka finds plugins by path, not through package "exports": the line
// `mta-sts-sender/haraka` in config/plugins loads this file from <haraka>/node_modules/mta-sts-sender/haraka/.
// Haraka copies the enumerable keys of this module (register, hook_get_mx, shutdown) onto its plugin object.
// Configuration: config/mta-sts.ini (reloaded on change). See README.md, section "Haraka".
const { createHarakaPlugin } = require('../dist/haraka/index.cjs');

Object.assign(exports, createHarakaPlugin());
