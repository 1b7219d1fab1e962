/**
 * The retry policy of the stream client: which failures are worth another
 * attempt and how long to wait. GitHub answers a rate limit with 429 and
 * Retry-After (cache uploads are limited per repository per minute), an
 * overloaded service with 5xx; both are retried a few times with backoff,
 * and what still fails is the caller's warning, never a failed job.
 */
export interface RetryPolicy {
  attempts: number
  /** First backoff; doubles per attempt. */
  baseMs: number
  /** Longest single wait, whatever Retry-After asks. */
  maxWaitMs: number
  sleep?: (ms: number) => Promise<void>
  /** Told before each wait (a log line). */
  onRetry?: (what: string, attempt: number, waitMs: number, error: unknown) => void
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseMs: 1000, maxWaitMs: 60_000 }

/** An HTTP answer that failed a request: its status and, for 429/503, the wait the server asked for. */
export class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfterMs?: number
  ) {
    super(message)
    this.name = 'HttpStatusError'
  }
}

/** Statuses worth retrying: timeouts, rate limits and passing server-side failures (not 501, which is for good). */
const RETRYABLE_STATUSES = new Set([408, 429, 500, 502, 503, 504])

export function retryableStatus(status: number): boolean {
  return RETRYABLE_STATUSES.has(status)
}

const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
  'ERR_STREAM_PREMATURE_CLOSE'
])

/** Whether `error` is worth another attempt: a retryable status, a dropped connection, a cut body. */
export function retryable(error: unknown): boolean {
  if (error instanceof HttpStatusError) return retryableStatus(error.status)
  if (error instanceof TransferError) return true
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && NETWORK_CODES.has(code)
}

/** A body that ended early, went silent, or did not match its declared length. */
export class TransferError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'TransferError'
  }
}

/** A Retry-After header (seconds or an HTTP date) in milliseconds; undefined when absent or unreadable. */
export function parseRetryAfter(header: string | undefined, now: number = Date.now()): number | undefined {
  if (header === undefined) return undefined
  const text = header.trim()
  if (/^\d+$/.test(text)) return Number(text) * 1000
  const at = Date.parse(text)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

/** The wait before attempt `attempt + 1` (attempt counts from 1). */
export function backoffMs(policy: RetryPolicy, attempt: number, error: unknown): number {
  const asked = error instanceof HttpStatusError ? error.retryAfterMs : undefined
  const backoff = policy.baseMs * 2 ** (attempt - 1)
  return Math.min(policy.maxWaitMs, asked ?? backoff)
}

/** Runs `attempt` until it succeeds, fails for good, or the attempts are used up (the last error is thrown). */
export async function withRetries<T>(what: string, policy: RetryPolicy, attempt: (n: number) => Promise<T>): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt(n)
    } catch (error) {
      if (!(await retryAfter(what, policy, n, error))) throw error
    }
  }
}

/**
 * Whether attempt `n`, which failed with `error`, is worth attempt n + 1
 * (attempts left, a retryable failure); if so it waits its backoff first,
 * reported through onRetry. For loops that retry on their own terms (a
 * download resumed where it stopped).
 */
export async function retryAfter(what: string, policy: RetryPolicy, n: number, error: unknown): Promise<boolean> {
  if (n >= policy.attempts || !retryable(error)) return false
  const wait = backoffMs(policy, n, error)
  policy.onRetry?.(what, n, wait, error)
  await (policy.sleep ?? ((ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms))))(wait)
  return true
}
