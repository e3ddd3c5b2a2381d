'use strict';
// What the test scripts share: finding compiled test files, and reading a TAP run's summary.
const { readdirSync, statSync } = require('node:fs');
const path = require('node:path');

/** Every `*.test.js` (or file matching `pattern`) under `p`, a file or a directory, sorted, appended to `out`. */
function collect(p, out = [], pattern = /\.test\.js$/) {
  if (statSync(p).isDirectory()) {
    for (const name of readdirSync(p).sort()) collect(path.join(p, name), out, pattern);
  } else if (pattern.test(p)) {
    out.push(p);
  }
  return out;
}

/** A count from the summary Node's TAP reporter ends with (`# pass 12`), 0 when absent. */
function tapCount(output, what) {
  return Number(new RegExp(`^# ${what} (\\d+)$`, 'm').exec(output)?.[1] ?? 0);
}

module.exports = { collect, tapCount };
