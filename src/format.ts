/** Human-readable sizes, durations and reasons for log lines. */
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

/** A message in one short line: its first non-empty line, at most `max` characters (a build's message can hold its whole script). */
export function oneLine(text: string, max: number): string {
  const line =
    text
      .split('\n')
      .map(l => l.trim())
      .find(l => l !== '') ?? ''
  return line.length > max ? `${line.slice(0, max - 3)}...` : line
}
