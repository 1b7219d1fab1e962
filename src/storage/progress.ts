import { Transform, type Readable } from 'node:stream'

import { formatBytes } from '../format.js'
import { log } from '../log.js'
import { PROGRESS_INTERVAL_MS } from '../progress.js'

/**
 * Progress lines for long transfers: mount archives can be gigabytes, and a
 * silent CLI for minutes looks hung. Quick transfers print nothing: the first
 * line comes after one interval (10 s, as for the phases: src/progress.ts).
 * Inside a mount's log context each line carries the mount's id.
 */
export interface ProgressOptions {
  /** What moves, e.g. `npm: uploading`. */
  label: string
  /** Expected bytes, when known (for a percentage). */
  total?: number
  intervalMs?: number
  now?: () => number
  emit?: (line: string) => void
}

const DEFAULT_INTERVAL_MS = PROGRESS_INTERVAL_MS

/** `npm: uploading 120.0 MiB of 500.0 MiB (24%), 40.0 MiB/s`. */
export function progressLine(label: string, done: number, total: number | undefined, elapsedMs: number): string {
  const rate = elapsedMs > 0 ? `, ${formatBytes(Math.round((done * 1000) / elapsedMs))}/s` : ''
  if (total === undefined || total <= 0) return `${label} ${formatBytes(done)}${rate}`
  const percent = Math.min(100, Math.floor((done * 100) / total))
  return `${label} ${formatBytes(done)} of ${formatBytes(total)} (${percent}%)${rate}`
}

/** A counter told the bytes moved, piece by piece (parallel transfers), that reports every interval. */
export function progressCounter(options: ProgressOptions): (bytes: number) => void {
  const now = options.now ?? Date.now
  const emit = options.emit ?? ((line: string) => log.info(line))
  const interval = options.intervalMs ?? DEFAULT_INTERVAL_MS
  const started = now()
  let next = started + interval
  let done = 0
  return bytes => {
    done += bytes
    const t = now()
    if (t >= next) {
      emit(progressLine(options.label, done, options.total, t - started))
      next = t + interval
    }
  }
}

/** A pass-through stream that counts the bytes going through and reports every interval. */
export function progressMeter(options: ProgressOptions): Transform {
  const count = progressCounter(options)
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      count(chunk.length)
      callback(null, chunk)
    }
  })
}

/** `source` piped through `meter`, with the source's errors passed on (pipe() alone drops them). */
export function metered(source: Readable, meter: Transform): Transform {
  source.once('error', e => meter.destroy(e))
  return source.pipe(meter)
}
