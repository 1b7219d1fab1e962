import { errorMessage } from '../../errors.js'
import { log } from '../../log.js'
import { headerOf, readBody, send, type HttpResponse } from './http.js'
import { HttpStatusError, parseRetryAfter, withRetries, type RetryPolicy } from './retry.js'

/**
 * GitHub's REST API for a repository's Actions caches, the two calls the
 * cache protocol lacks: list entries by key prefix and delete by key. The
 * job's cache token cannot do either; these take a GitHub token whose job
 * has `permissions: actions: write` (listing needs `actions: read`). Every
 * call is short: an idle peer ends a request, and one listing (all its
 * pages) or one deletion, retries included, has a deadline, so a slow API
 * never holds a job.
 */

/** The action input that carries the token, named in the errors. */
export const TOKEN_INPUT = 'github-token'

/** What a job needs for deletion, said by every error that a token or permission explains. */
export const PERMISSION_HINT = `the job needs \`permissions: actions: write\` and a token (the \`${TOKEN_INPUT}\` input, by default \${{ github.token }})`

export interface RestTarget {
  /** e.g. https://api.github.com, or https://ghes.example.com/api/v3 (no trailing slash needed). */
  apiUrl: string
  /** owner/name */
  repository: string
  token: string
}

/** One cache entry as the API lists it. */
export interface ActionsCache {
  id: number
  ref: string
  key: string
  version: string
  lastAccessedAt: string
  createdAt: string
  sizeInBytes: number
}

export interface RestOptions {
  policy?: RetryPolicy
  /** A request whose peer sends nothing for this long fails (default 20 s). */
  idleMs?: number
  /** The longest one listing or one deletion may take, retries included (default 60 s). */
  deadlineMs?: number
}

/** A few quick retries: deleting is a courtesy to the cache budget, never worth a long wait. */
export const REST_RETRY: RetryPolicy = { attempts: 3, baseMs: 1000, maxWaitMs: 10_000 }
const DEFAULT_IDLE_MS = 20_000
const DEFAULT_DEADLINE_MS = 60_000
const PER_PAGE = 100
/** Ten pages: a mount's chain is far shorter, and no listing may take long. */
const MAX_PAGES = 10
const REPOSITORY = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/

/** An API answer that failed a call, with its HTTP status. */
export class GitHubApiError extends HttpStatusError {
  constructor(status: number, message: string, retryAfterMs?: number) {
    super(status, message, retryAfterMs)
    this.name = 'GitHubApiError'
  }
}

/** The API of this repository, from the runner's GITHUB_API_URL and GITHUB_REPOSITORY; throws when they are unusable. */
export function restTarget(token: string, env: NodeJS.ProcessEnv = process.env): RestTarget {
  const apiUrl = (env.GITHUB_API_URL ?? '').trim() || 'https://api.github.com'
  if (!/^https?:\/\/[^\s/]+/.test(apiUrl)) throw new Error(`GITHUB_API_URL is not an http(s) URL: ${JSON.stringify(apiUrl)}`)
  const repository = (env.GITHUB_REPOSITORY ?? '').trim()
  if (!REPOSITORY.test(repository)) {
    throw new Error(
      repository === '' ? 'GITHUB_REPOSITORY is not set (owner/name)' : `GITHUB_REPOSITORY is not owner/name: ${JSON.stringify(repository)}`
    )
  }
  return { apiUrl, repository, token }
}

export class GitHubRestClient {
  private readonly policy: RetryPolicy

  constructor(
    private readonly target: RestTarget,
    private readonly options: RestOptions = {}
  ) {
    const policy = options.policy ?? REST_RETRY
    this.policy = {
      ...policy,
      onRetry: (what, attempt, waitMs, error) => {
        policy.onRetry?.(what, attempt, waitMs, error)
        log.info(
          `GitHub API: ${what} failed (${errorMessage(error)}), attempt ${attempt} of ${policy.attempts}; retrying in ${Math.ceil(waitMs / 1000)} s`
        )
      }
    }
  }

  /** Every entry whose key starts with `key` (all when absent), of `ref` when given; newest access first, at most 1000. */
  async listCaches(filter: { key?: string; ref?: string } = {}): Promise<ActionsCache[]> {
    return this.withDeadline('list caches', async signal => {
      const all: ActionsCache[] = []
      for (let page = 1; page <= MAX_PAGES; page++) {
        const query: Record<string, string> = { per_page: String(PER_PAGE), page: String(page) }
        if (filter.key !== undefined) query.key = filter.key
        if (filter.ref !== undefined) query.ref = filter.ref
        const answer = await this.call('list caches', 'GET', query, signal, async res => cacheList(await readJson(res)))
        all.push(...answer.caches)
        if (answer.caches.length < PER_PAGE || all.length >= answer.total) break
      }
      return all
    })
  }

  /** Deletes every entry with exactly this key (every version), of `ref` when given; returns the deleted, [] when none. */
  async deleteCachesByKey(key: string, ref?: string): Promise<ActionsCache[]> {
    if (key === '') throw new Error('deleting a cache entry needs its key')
    return this.withDeadline('delete cache', async signal => {
      const query: Record<string, string> = { key }
      if (ref !== undefined) query.ref = ref
      return this.call('delete cache', 'DELETE', query, signal, async res => (res.status === 404 ? [] : cacheList(await readJson(res)).caches), [404])
    })
  }

  /** Runs `fn` under an abort signal that fires after the deadline; an abort becomes one error saying so. */
  private async withDeadline<T>(what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ms = this.options.deadlineMs ?? DEFAULT_DEADLINE_MS
    const signal = AbortSignal.timeout(ms)
    try {
      return await fn(signal)
    } catch (error) {
      if (signal.aborted) throw new Error(`GitHub API: ${what}: no answer within ${ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`}`)
      throw error
    }
  }

  /** One call with retries; `read` gets a 2xx answer, or one of the `accepted` statuses. */
  private call<T>(
    what: string,
    method: 'GET' | 'DELETE',
    query: Record<string, string>,
    signal: AbortSignal,
    read: (res: HttpResponse) => Promise<T>,
    accepted: readonly number[] = []
  ): Promise<T> {
    const url = new URL(`${this.target.apiUrl.replace(/\/+$/, '')}/repos/${this.target.repository}/actions/caches`)
    for (const [name, value] of Object.entries(query)) url.searchParams.set(name, value)
    return withRetries(what, { ...this.policy, sleep: ms => this.sleep(ms, signal) }, async () => {
      signal.throwIfAborted()
      const res = await send({
        method,
        url,
        headers: {
          Accept: 'application/vnd.github+json',
          'X-GitHub-Api-Version': '2022-11-28',
          Authorization: `Bearer ${this.target.token}`,
          'User-Agent': 'buildkit-mount-cache'
        },
        idleMs: this.options.idleMs ?? DEFAULT_IDLE_MS,
        signal
      })
      if ((res.status >= 200 && res.status < 300) || accepted.includes(res.status)) return read(res)
      throw await apiError(what, res)
    })
  }

  /** The policy's wait, cut short by the deadline. */
  private sleep(ms: number, signal: AbortSignal): Promise<void> {
    const wait = this.policy.sleep ?? ((n: number) => new Promise<void>(resolve => setTimeout(resolve, n).unref()))
    return Promise.race([wait(ms), new Promise<void>(resolve => signal.addEventListener('abort', () => resolve(), { once: true }))])
  }
}

async function readJson(res: HttpResponse): Promise<unknown> {
  const text = (await readBody(res.body)).toString('utf8')
  try {
    return JSON.parse(text) as unknown
  } catch {
    throw new Error('GitHub API: the answer is not JSON')
  }
}

/** `{total_count, actions_caches: [...]}`, checked field by field. */
function cacheList(value: unknown): { total: number; caches: ActionsCache[] } {
  const o = value as { total_count?: unknown; actions_caches?: unknown } | null
  if (typeof o !== 'object' || o === null || typeof o.total_count !== 'number' || !Array.isArray(o.actions_caches)) {
    throw new Error('GitHub API: the answer is not a list of caches')
  }
  return { total: o.total_count, caches: o.actions_caches.map(actionsCache) }
}

function actionsCache(value: unknown): ActionsCache {
  const c = (value ?? {}) as Record<string, unknown>
  const text = (name: string): string => (typeof c[name] === 'string' ? c[name] : '')
  if (typeof c.id !== 'number' || typeof c.key !== 'string') throw new Error('GitHub API: a listed cache has no id or key')
  return {
    id: c.id,
    ref: text('ref'),
    key: c.key,
    version: text('version'),
    lastAccessedAt: text('last_accessed_at'),
    createdAt: text('created_at'),
    sizeInBytes: typeof c.size_in_bytes === 'number' ? c.size_in_bytes : 0
  }
}

/**
 * The error of an answer that is not 2xx: the API's message, and for 401 and
 * 403 what the job needs (a rate limit, 403 or 429 with no requests left,
 * says so instead).
 */
async function apiError(what: string, res: HttpResponse): Promise<GitHubApiError> {
  let message = ''
  try {
    const text = (await readBody(res.body, 64 * 1024)).toString('utf8')
    try {
      const parsed = JSON.parse(text) as { message?: unknown }
      message = typeof parsed.message === 'string' ? parsed.message : text
    } catch {
      message = text
    }
  } catch {
    // the status is the message
  }
  const detail = message.replace(/\s+/g, ' ').trim().slice(0, 200)
  const retryAfter = parseRetryAfter(headerOf(res.headers, 'retry-after'))
  const rateLimited = headerOf(res.headers, 'x-ratelimit-remaining') === '0'
  const hint = rateLimited ? ': the API rate limit is used up' : res.status === 401 || res.status === 403 ? `: ${PERMISSION_HINT}` : ''
  return new GitHubApiError(res.status, `GitHub API: ${what}: HTTP ${res.status}${detail ? ` (${detail})` : ''}${hint}`, retryAfter)
}
