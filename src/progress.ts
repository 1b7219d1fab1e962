import { formatBytes } from './format.js'
import { log } from './log.js'

/**
 * Progress of a long phase (an inject or extract build, a transfer): every
 * interval (10 s), one line with the bytes moved so far and the rate over
 * the last interval, e.g. `inject: 1.2 GiB in 30 s, 41.0 MiB/s`. A phase
 * shorter than one interval prints nothing, and neither does one that has
 * moved nothing yet (an inject waiting for its first download, which reports
 * its own progress). The clock is a seam: tests
 * swap it for one they advance.
 */
export interface ProgressClock {
  now(): number
  /** Calls `tick` every `ms` until the returned function is called. */
  every(ms: number, tick: () => void): () => void
}

export const realClock: ProgressClock = {
  now: () => Date.now(),
  every: (ms, tick) => {
    const timer = setInterval(tick, ms)
    // Progress alone never keeps the process alive.
    timer.unref()
    return () => clearInterval(timer)
  }
}

export const PROGRESS_INTERVAL_MS = 10_000

let clock: ProgressClock = realClock

/** Installs another clock (tests); returns the one it replaced. */
export function setProgressClock(next: ProgressClock): ProgressClock {
  const previous = clock
  clock = next
  return previous
}

export interface Progress {
  /** Counts `bytes` more. */
  add(bytes: number): void
  /** Stops the lines (idempotent). */
  stop(): void
}

/** `label: 1.2 GiB in 30 s, 41.0 MiB/s` (the rate over the last interval). */
export function phaseProgressLine(label: string, done: number, elapsedMs: number, recentBytes: number, recentMs: number): string {
  const rate = recentMs > 0 ? `, ${formatBytes(Math.round((recentBytes * 1000) / recentMs))}/s` : ''
  return `${label}: ${formatBytes(done)} in ${Math.round(elapsedMs / 1000)} s${rate}`
}

/**
 * Starts reporting a phase labelled `label` (a phase name such as `inject`;
 * inside a mount's log context the line carries the mount's id as well).
 */
export function startProgress(label: string, emit: (line: string) => void = line => log.info(line)): Progress {
  const c = clock
  const started = c.now()
  let done = 0
  let last = { at: started, done: 0 }
  const cancel = c.every(PROGRESS_INTERVAL_MS, () => {
    const t = c.now()
    if (done === 0) return
    emit(phaseProgressLine(label, done, t - started, done - last.done, t - last.at))
    last = { at: t, done }
  })
  let stopped = false
  return {
    add: bytes => {
      done += bytes
    },
    stop: () => {
      if (stopped) return
      stopped = true
      cancel()
    }
  }
}
