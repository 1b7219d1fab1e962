import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import type { Readable } from 'node:stream'

import { errorMessage } from '../../errors.js'
import { log } from '../../log.js'
import { cacheModeAllows } from '../actions-cache.js'
import { runCommand } from '../../builder/command.js'
import { chooseCodec, compressFile, decodeStream, decompressToFile, zstdOnPath, type Codec } from '../compression.js'
import { metered, progressCounter, progressMeter } from '../progress.js'
import type { CacheStore, OpenedEntry } from '../store.js'
import { downloadBlob, openBlob, putWholeBlob, SINGLE_PUT_MAX, uploadBlob, uploadFileBlob } from './blob.js'
import type { ServiceV2 } from './config.js'
import { ENTRY_TRAILER_BYTES, ENTRY_VERSION, entryHeader, fileEntryTrailer, splitEntryHeader, withEntryHeader } from './entry-format.js'
import { DEFAULT_RETRY, type RetryPolicy } from './retry.js'
import { TwirpClient, TwirpError } from './twirp.js'

/** GitHub's limit on one cache entry (the cache library refuses larger archives the same way). */
export const MAX_ENTRY_BYTES = 10 * 1024 ** 3

/** The prefix of a message with which the service refuses a write by policy. */
const WRITE_DENIED = 'cache write denied:'

export interface StreamStoreOptions {
  policy?: RetryPolicy
  maxEntryBytes?: number
  /** Forces a codec (tests, the bench); by default a probe of the archive picks one. */
  codec?: Codec
  /** Block size and parallelism of an uncompressed archive sent in ranges (tests, the bench). */
  upload?: { blockBytes?: number; parallel?: number; singlePutMax?: number }
}

/**
 * The GitHub Actions cache (service v2) without the cache library: restore
 * streams the entry's body through its decoder into the mount archive,
 * save streams the archive through its encoder into the block upload. No
 * outer tar, no second copy of the archive, no `tar -P` of what the entry
 * holds; the archive itself is checked by the entry guards before anything
 * reaches the builder, as for every store.
 */
export class GitHubStreamStore implements CacheStore {
  private readonly twirp: TwirpClient
  private readonly policy: RetryPolicy

  constructor(
    service: ServiceV2,
    private readonly options: StreamStoreOptions = {}
  ) {
    const policy = options.policy ?? DEFAULT_RETRY
    // A log line per retry, naming what is retried (inside a mount's context the log layer adds its id).
    this.policy = {
      ...policy,
      onRetry: (what, attempt, waitMs, error) => {
        policy.onRetry?.(what, attempt, waitMs, error)
        log.info(`${what} failed (${errorMessage(error)}), attempt ${attempt} of ${policy.attempts}; retrying in ${Math.ceil(waitMs / 1000)} s`)
      }
    }
    this.twirp = new TwirpClient(service, this.policy)
  }

  available(): boolean {
    return true
  }

  readable(): boolean {
    return cacheModeAllows('read')
  }

  writable(): boolean {
    return cacheModeAllows('write')
  }

  async restore(archivePath: string, primaryKey: string, restoreKeys: string[]): Promise<string | undefined> {
    const found = await this.locate(primaryKey, restoreKeys)
    if (found === undefined) return undefined
    await downloadBlob(
      found.url,
      async (body, length) => {
        const { codec, rest } = await entryBody(body, length)
        await decompressToFile(rest, codec, archivePath)
      },
      this.policy
    )
    return found.matched
  }

  async open(primaryKey: string, restoreKeys: string[]): Promise<OpenedEntry | undefined> {
    const found = await this.locate(primaryKey, restoreKeys)
    if (found === undefined) return undefined
    const { body, length } = await openBlob(found.url, this.policy)
    const { codec, rest } = await entryBody(body, length)
    return { matchedKey: found.matched, body: decodeStream(rest, codec) }
  }

  /** The entry a lookup matches and its signed download URL; undefined on a miss. */
  private async locate(primaryKey: string, restoreKeys: string[]): Promise<{ url: string; matched: string } | undefined> {
    const answer = await this.twirp.getDownloadUrl(primaryKey, restoreKeys, ENTRY_VERSION)
    const url = answer.signed_download_url
    const matched = answer.matched_key
    return answer.ok && url && matched ? { url, matched } : undefined
  }

  async find(_archivePath: string, primaryKey: string, restoreKeys: string[]): Promise<string | undefined> {
    const answer = await this.twirp.getDownloadUrl(primaryKey, restoreKeys, ENTRY_VERSION)
    return answer.ok && answer.matched_key ? answer.matched_key : undefined
  }

  async exists(_archivePath: string, key: string): Promise<boolean> {
    const answer = await this.twirp.getDownloadUrl(key, [], ENTRY_VERSION)
    return answer.ok && answer.matched_key === key
  }

  async save(archivePath: string, key: string): Promise<boolean> {
    const rawSize = (await stat(archivePath)).size
    const codec = this.options.codec ?? (await chooseCodec(archivePath))
    let uploadUrl: string
    try {
      const created = await this.twirp.createEntry(key, ENTRY_VERSION)
      if (!created.ok || !created.signed_upload_url) {
        const message = created.message ?? ''
        if (message.startsWith(WRITE_DENIED)) throw new Error(`the cache service refused the write: ${message}`)
        if (message !== '') throw new Error(`the cache service did not reserve ${key}: ${message}`)
        log.info(`not saved: the cache service did not reserve ${key} (another job may be saving it)`)
        return false
      }
      uploadUrl = created.signed_upload_url
    } catch (error) {
      if (error instanceof TwirpError && error.code === 'already_exists') {
        log.info(`not saved: ${key} exists already (or another job is saving it)`)
        return false
      }
      throw error
    }
    let size = 0
    const maxBytes = this.options.maxEntryBytes ?? MAX_ENTRY_BYTES
    const length = entryHeader(codec).length + rawSize + ENTRY_TRAILER_BYTES
    if (codec === 'none' && length > maxBytes) throw new Error(`the entry is larger than the service's limit of ${maxBytes} bytes`)
    if (codec === 'none' && rawSize <= (this.options.upload?.singlePutMax ?? SINGLE_PUT_MAX)) {
      // Size known up front: one streamed request (a retry reads the file again).
      size = await putWholeBlob(uploadUrl, () => withEntryHeader(codec, createReadStream(archivePath)), length, this.policy)
    } else if (codec === 'none') {
      const { blockBytes, parallel } = this.options.upload ?? {}
      const fileBlocks = { ...(blockBytes !== undefined ? { blockBytes } : {}), ...(parallel !== undefined ? { parallel } : {}) }
      // Blocks read straight from ranges of the file, in parallel; one more
      // sequential read meanwhile computes the trailer, which goes last.
      size = await uploadFileBlob(
        uploadUrl,
        { head: entryHeader(codec), path: archivePath, size: rawSize, tail: fileEntryTrailer(codec, archivePath, rawSize) },
        { policy: this.policy, onBlock: progressCounter({ label: 'uploading', total: length }), ...fileBlocks }
      )
    } else if (codec === 'zstd' && zstdOnPath()) {
      // zstd reads the archive itself: the raw bytes never pass through this process.
      let failure: { error: unknown } | undefined
      await runCommand('zstd', ['-q', '-c', '-T0', '-3', '--', archivePath], {
        stdout: async out => {
          try {
            size = await uploadBlob(uploadUrl, withEntryHeader(codec, metered(out, progressMeter({ label: 'uploading (compressed)' }))), {
              policy: this.policy,
              maxBytes
            })
          } catch (error) {
            // Close the pipe, or zstd blocks on it; this error is the one worth reporting.
            failure = { error }
            out.destroy()
            throw error
          }
        }
      }).catch((error: unknown) => {
        throw failure ? failure.error : error
      })
    } else {
      const meter = progressMeter({ label: 'uploading', total: rawSize })
      await compressFile(
        archivePath,
        codec,
        async compressed => {
          size = await uploadBlob(uploadUrl, withEntryHeader(codec, compressed), { policy: this.policy, maxBytes })
        },
        meter
      )
    }
    const finalized = await this.twirp.finalize(key, ENTRY_VERSION, size)
    if (!finalized.ok) throw new Error(`the cache service did not accept the upload of ${key}${finalized.message ? `: ${finalized.message}` : ''}`)
    return true
  }
}

/** An entry's download, counted for progress lines, split into its codec and its encoded archive. */
async function entryBody(body: Readable, length: number | undefined): Promise<{ codec: Codec; rest: Readable }> {
  const meter = progressMeter({ label: 'downloading', ...(length !== undefined ? { total: length } : {}) })
  return splitEntryHeader(metered(body, meter))
}
