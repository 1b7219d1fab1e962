// Preloaded into the action's node processes by the bench
// (NODE_OPTIONS=--require <this file>): appends the process's peak RSS to
// $BMC_BENCH_RSS_FILE when it exits, with its CPU time (its children's too). Inert without that variable.
const { appendFileSync, readFileSync } = require('node:fs')

/**
 * CPU seconds of the process and of the children it waited for (tar, zstd):
 * /proc/self/stat fields 16 and 17 (cutime, cstime) in clock ticks, 100 a second on Linux.
 */
function cpuSeconds(usage) {
  let children = 0
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    children = (Number(fields[13]) + Number(fields[14])) / 100
  } catch {
    // not Linux: the process's own time only
  }
  return (usage.userCPUTime + usage.systemCPUTime) / 1e6 + children
}

const file = process.env.BMC_BENCH_RSS_FILE
if (file) {
  process.on('exit', () => {
    try {
      const usage = process.resourceUsage()
      const line = { pid: process.pid, script: process.argv[1] || '', maxRssKiB: usage.maxRSS, cpuSeconds: cpuSeconds(usage) }
      appendFileSync(file, `${JSON.stringify(line)}\n`)
    } catch {
      // measuring must never change the step's outcome
    }
  })
}
