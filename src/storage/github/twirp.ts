import { headerOf, readBody, send } from './http.js'
import type { ServiceV2 } from './config.js'
import { HttpStatusError, parseRetryAfter, withRetries, type RetryPolicy } from './retry.js'

/**
 * The three Twirp calls of the cache service v2 that the cache library
 * makes (github.actions.results.api.v1.CacheService), JSON with the proto
 * field names, the job's token as bearer. Answers that are not 2xx become
 * HttpStatusError with the Twirp code and message.
 */
const SERVICE = 'github.actions.results.api.v1.CacheService'

export interface DownloadUrlAnswer {
  ok: boolean
  signed_download_url?: string
  matched_key?: string
}

export interface CreateEntryAnswer {
  ok: boolean
  signed_upload_url?: string
  message?: string
}

export interface FinalizeAnswer {
  ok: boolean
  entry_id?: string
  message?: string
}

/** A Twirp error answer (e.g. 409 already_exists, 404 bad_route). */
export class TwirpError extends HttpStatusError {
  constructor(
    status: number,
    readonly code: string,
    message: string,
    retryAfterMs?: number
  ) {
    super(status, message, retryAfterMs)
    this.name = 'TwirpError'
  }
}

export class TwirpClient {
  constructor(
    private readonly service: ServiceV2,
    private readonly policy: RetryPolicy,
    private readonly userAgent = 'buildkit-mount-cache'
  ) {}

  getDownloadUrl(key: string, restoreKeys: string[], version: string): Promise<DownloadUrlAnswer> {
    return this.call('GetCacheEntryDownloadURL', { key, restore_keys: restoreKeys, version })
  }

  createEntry(key: string, version: string): Promise<CreateEntryAnswer> {
    return this.call('CreateCacheEntry', { key, version })
  }

  finalize(key: string, version: string, sizeBytes: number): Promise<FinalizeAnswer> {
    return this.call('FinalizeCacheEntryUpload', { key, version, size_bytes: String(sizeBytes) })
  }

  private call<T>(method: string, body: object): Promise<T> {
    const url = new URL(`/twirp/${SERVICE}/${method}`, this.service.baseUrl)
    const payload = Buffer.from(JSON.stringify(body))
    return withRetries(method, this.policy, async () => {
      const res = await send({
        method: 'POST',
        url,
        headers: {
          'Content-Type': 'application/json',
          Accept: 'application/json',
          Authorization: `Bearer ${this.service.token}`,
          'User-Agent': this.userAgent
        },
        body: payload
      })
      const text = (await readBody(res.body)).toString('utf8')
      if (res.status < 200 || res.status >= 300) throw twirpError(method, res.status, text, parseRetryAfter(headerOf(res.headers, 'retry-after')))
      try {
        return JSON.parse(text) as T
      } catch {
        throw new Error(`${method}: the answer is not JSON`)
      }
    })
  }
}

/** The error of a Twirp answer that is not 2xx: its JSON body's code and msg (or its text). */
export function twirpError(method: string, status: number, text: string, retryAfterMs?: number): TwirpError {
  let code = ''
  let msg = ''
  try {
    const parsed = JSON.parse(text) as { code?: unknown; msg?: unknown }
    if (typeof parsed.code === 'string') code = parsed.code
    if (typeof parsed.msg === 'string') msg = parsed.msg
  } catch {
    msg = text
  }
  const detail = [code, msg.replace(/\s+/g, ' ').trim()]
    .filter(s => s !== '')
    .join(': ')
    .slice(0, 200)
  return new TwirpError(status, code, `${method}: HTTP ${status}${detail ? ` (${detail})` : ''}`, retryAfterMs)
}
