// Preloaded into the action's node processes by the bench
// (NODE_OPTIONS=--require <this file>): appends the process's peak RSS, its
// CPU time (its children's too) and the bytes it wrote to storage to
// $BMC_BENCH_RSS_FILE when it exits. Inert without that variable.
//
// write_bytes of /proc/self/io counts the bytes the process caused to be
// written to storage (dirtied page cache counts at once, even if the file is
// deleted before writeback; cancelled_write_bytes then says how much), and
// the kernel adds every reaped child's counts to it: at exit it covers the
// step's whole process tree (docker, tar, zstd), but not the engine's own
// writes. It is absent where /proc is (Linux only).
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

/** write_bytes and cancelled_write_bytes of /proc/self/io, or {} where it cannot be read. */
function storageWrites() {
  try {
    const io = readFileSync('/proc/self/io', 'utf8')
    const field = name => {
      const m = new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)
      return m ? Number(m[1]) : undefined
    }
    const writeBytes = field('write_bytes')
    const cancelledWriteBytes = field('cancelled_write_bytes')
    return writeBytes === undefined ? {} : { writeBytes, ...(cancelledWriteBytes === undefined ? {} : { cancelledWriteBytes }) }
  } catch {
    return {}
  }
}

const file = process.env.BMC_BENCH_RSS_FILE
if (file) {
  process.on('exit', () => {
    try {
      const usage = process.resourceUsage()
      const line = { pid: process.pid, script: process.argv[1] || '', maxRssKiB: usage.maxRSS, cpuSeconds: cpuSeconds(usage), ...storageWrites() }
      appendFileSync(file, `${JSON.stringify(line)}\n`)
    } catch {
      // measuring must never change the step's outcome
    }
  })
}
