/**
 * A bound on one engine call: it ends when nothing happened for `idleMs`
 * (no output line, no stream byte: `touch()` is called on each) or when
 * `totalMs` passed, whichever comes first. A call past its deadline is
 * stopped (command.ts), so no stalled build, hung registry pull or peer that
 * never connects can hold a job.
 */
export class Deadline {
  private readonly controller = new AbortController()
  private idleTimer: NodeJS.Timeout | undefined
  private readonly totalTimer: NodeJS.Timeout | undefined

  constructor(
    readonly idleMs: number,
    readonly totalMs?: number
  ) {
    this.touch()
    if (totalMs !== undefined) {
      this.totalTimer = setTimeout(() => this.expire(`no result after ${secs(totalMs)}`), totalMs)
      this.totalTimer.unref()
    }
  }

  /** Aborted with the reason when the deadline passes. */
  get signal(): AbortSignal {
    return this.controller.signal
  }

  /** Something happened: the idle clock starts again. */
  touch(): void {
    if (this.controller.signal.aborted) return
    if (this.idleTimer) this.idleTimer.refresh()
    else {
      this.idleTimer = setTimeout(() => this.expire(`nothing happened for ${secs(this.idleMs)}`), this.idleMs)
      this.idleTimer.unref()
    }
  }

  /** The call ended: no more timers. */
  clear(): void {
    clearTimeout(this.idleTimer)
    clearTimeout(this.totalTimer)
  }

  private expire(reason: string): void {
    this.clear()
    this.controller.abort(new Error(reason))
  }
}

const secs = (ms: number): string => (ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`)

/** Idle bound of a generated build: 10 minutes, or BUILDKIT_MOUNT_CACHE_IDLE_TIMEOUT seconds. */
export function buildIdleMs(env: NodeJS.ProcessEnv = process.env): number {
  const s = Number(env.BUILDKIT_MOUNT_CACHE_IDLE_TIMEOUT)
  return Number.isFinite(s) && s > 0 ? s * 1000 : 10 * 60_000
}

/** Total bound of a generated build moving `bytes`: 30 minutes plus one per 512 MiB (at least 9 MB/s). */
export function buildTotalMs(bytes: number): number {
  return 30 * 60_000 + Math.ceil(bytes / 512 / 1024 ** 2) * 60_000
}

/** The deadline of a generated build moving `bytes`: the idle and total bounds above. */
export function buildDeadline(bytes: number): Deadline {
  return new Deadline(buildIdleMs(), buildTotalMs(bytes))
}

/** Bound of a short docker call (version, inspect): 60 s, or the idle bound when that is shorter. */
export function shortCallMs(env: NodeJS.ProcessEnv = process.env): number {
  return Math.min(60_000, buildIdleMs(env))
}
