/** Human-readable sizes and durations for log lines. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`
}

/** Seconds since `startedMs`, e.g. "1.3 s". */
export function seconds(startedMs: number, now: number = Date.now()): string {
  return `${((now - startedMs) / 1000).toFixed(1)} s`
}
