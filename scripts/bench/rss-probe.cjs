// Preloaded into the action's node processes by the bench
// (NODE_OPTIONS=--require <this file>): appends the process's peak RSS to
// $BMC_BENCH_RSS_FILE when it exits. Inert without that variable.
const { appendFileSync } = require('node:fs')

const file = process.env.BMC_BENCH_RSS_FILE
if (file) {
  process.on('exit', () => {
    try {
      const line = { pid: process.pid, script: process.argv[1] || '', maxRssKiB: process.resourceUsage().maxRSS }
      appendFileSync(file, `${JSON.stringify(line)}\n`)
    } catch {
      // measuring must never change the step's outcome
    }
  })
}
