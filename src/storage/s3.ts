import { stat } from 'node:fs/promises'
import { basename } from 'node:path'
import { Readable } from 'node:stream'

import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3'

import { chooseCodec, CODECS, compressFile, decompressToFile, type Codec } from './compression.js'
import { findEntry } from './lookup.js'
import type { ManagedStore, StoredEntry } from './managed.js'
import { metered, progressMeter } from './progress.js'
import type * as Sdk from './s3-sdk.js'

/**
 * `s3://bucket/prefix`: one object per entry, `<prefix>/<key>`, the archive
 * compressed, the codec in the object's metadata. Works with AWS S3 and the
 * S3-compatible stores (MinIO, R2, Ceph) through an endpoint override.
 * Uploads are multipart for large archives and streamed from the
 * compressor; downloads are streamed into the decompressor. An object
 * appears whole or not at all (S3 commits a PUT or a multipart upload
 * atomically), and the upload asks If-None-Match: * so the first complete
 * save of a key wins where the store supports conditional writes.
 */
export interface S3Options {
  bucket: string
  /** Key prefix without leading or trailing "/"; '' for the bucket's root. */
  prefix: string
  /** Endpoint override; default AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS. */
  endpoint?: string
  region?: string
  /** Multipart part size in bytes (at least 5 MiB, S3's minimum). */
  partSize?: number
  codec?: Codec
}

export const MIN_PART_SIZE = 5 * 1024 * 1024
const DEFAULT_PART_SIZE = 16 * 1024 * 1024
const METADATA_CODEC = 'compression'
const METADATA_RAW_SIZE = 'raw-size'

/**
 * The client: credentials from the standard chain (env, profiles, SSO, web
 * identity, instance roles). A custom endpoint means a third-party store:
 * path-style addressing, a region default (MinIO and friends ignore it), and
 * checksums only where S3 requires them (many such stores reject or store
 * the aws-chunked trailer encoding of the newer default).
 */
export function s3ClientConfig(options: S3Options, env: NodeJS.ProcessEnv = process.env): S3ClientConfig {
  const endpoint = options.endpoint ?? (env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined)
  const region = options.region ?? (env.AWS_REGION || env.AWS_DEFAULT_REGION || undefined)
  const config: S3ClientConfig = {}
  if (region) config.region = region
  if (endpoint) {
    config.endpoint = endpoint
    config.forcePathStyle = true
    config.region ??= 'us-east-1'
    if (!env.AWS_REQUEST_CHECKSUM_CALCULATION) config.requestChecksumCalculation = 'WHEN_REQUIRED'
    if (!env.AWS_RESPONSE_CHECKSUM_VALIDATION) config.responseChecksumValidation = 'WHEN_REQUIRED'
  }
  return config
}

const CONTENT_TYPE: Record<Codec, string> = { zstd: 'application/zstd', gzip: 'application/gzip', none: 'application/x-tar' }

let sdkModule: Promise<typeof Sdk> | undefined

/**
 * The AWS SDK, imported on first use: it is most of the S3 store's weight
 * (in the bundle a file of its own that esbuild leaves to a runtime import,
 * see scripts/bundle.mjs), and only an s3:// backend needs it.
 */
function loadSdk(): Promise<typeof Sdk> {
  return (sdkModule ??= import('./s3-sdk.js'))
}

export class S3Store implements ManagedStore {
  readonly location: string
  private client: Promise<S3Client> | undefined

  /** `client` replaces the one made from the options (tests); either is made or loaded on first use. */
  constructor(
    private readonly options: S3Options,
    client?: S3Client
  ) {
    this.location = `s3://${options.bucket}/${options.prefix}`
    if (client) this.client = Promise.resolve(client)
  }

  available(): boolean {
    return true
  }

  readable(): boolean {
    return true
  }

  writable(): boolean {
    return true
  }

  async restore(archivePath: string, primaryKey: string, restoreKeys: string[]): Promise<string | undefined> {
    const hit = await findEntry({ exact: key => this.head(key), list: prefix => this.list(prefix) }, primaryKey, restoreKeys)
    if (!hit) return undefined
    const { GetObjectCommand } = await loadSdk()
    const got = await (await this.s3()).send(new GetObjectCommand({ Bucket: this.options.bucket, Key: this.objectKey(hit.key) }))
    if (!(got.Body instanceof Readable)) throw new Error(`${hit.key}: the S3 response has no readable body`)
    const codec = got.Metadata?.[METADATA_CODEC]
    if (!(CODECS as readonly string[]).includes(codec ?? '')) {
      got.Body.destroy()
      throw new Error(`${hit.key}: the object has no known compression in its metadata (x-amz-meta-${METADATA_CODEC}: ${codec ?? 'none'})`)
    }
    const meter = progressMeter({
      label: `${basename(archivePath, '.tar')}: downloading`,
      ...(got.ContentLength !== undefined ? { total: got.ContentLength } : {})
    })
    await decompressToFile(metered(got.Body, meter), codec as Codec, archivePath)
    return hit.key
  }

  async find(_archivePath: string, primaryKey: string, restoreKeys: string[]): Promise<string | undefined> {
    return (await findEntry({ exact: key => this.head(key), list: prefix => this.list(prefix) }, primaryKey, restoreKeys))?.key
  }

  async exists(_archivePath: string, key: string): Promise<boolean> {
    return (await this.head(key)) !== undefined
  }

  async save(archivePath: string, key: string): Promise<boolean> {
    if (await this.head(key)) return false
    const codec = this.options.codec ?? (await chooseCodec(archivePath))
    const rawSize = (await stat(archivePath)).size
    const { Upload } = await loadSdk()
    const client = await this.s3()
    const upload = async (conditional: boolean): Promise<void> => {
      const meter = progressMeter({ label: `${basename(archivePath, '.tar')}: uploading`, total: rawSize })
      await compressFile(
        archivePath,
        codec,
        async body => {
          const upload = new Upload({
            client,
            partSize: this.options.partSize ?? DEFAULT_PART_SIZE,
            queueSize: 4,
            params: {
              Bucket: this.options.bucket,
              Key: this.objectKey(key),
              Body: body,
              ContentType: CONTENT_TYPE[codec],
              Metadata: { [METADATA_CODEC]: codec, [METADATA_RAW_SIZE]: String(rawSize) },
              ...(conditional ? { IfNoneMatch: '*' } : {})
            }
          })
          await upload.done()
        },
        meter
      )
    }
    try {
      await upload(true)
    } catch (error) {
      const status = httpStatus(error)
      // 412: an object appeared since the HEAD (a parallel save won); 409: a conditional write raced another.
      if (status === 412 || status === 409) return false
      // A store without conditional writes: the key names the content, so a plain overwrite is harmless.
      if (status === 501 || errorName(error) === 'NotImplemented') await upload(false)
      else throw error
    }
    return true
  }

  async list(prefix: string): Promise<StoredEntry[]> {
    const { ListObjectsV2Command } = await loadSdk()
    const client = await this.s3()
    const entries: StoredEntry[] = []
    let token: string | undefined
    do {
      const page = await client.send(
        new ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: this.objectKey(prefix), ...(token ? { ContinuationToken: token } : {}) })
      )
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined) continue
        const key = this.entryKey(o.Key)
        if (key === undefined || !key.startsWith(prefix)) continue
        const created = o.LastModified ?? new Date(0)
        entries.push({ key, size: o.Size ?? 0, created, lastUsed: created })
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (token)
    return entries
  }

  async delete(key: string): Promise<void> {
    const { DeleteObjectCommand } = await loadSdk()
    await (await this.s3()).send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.objectKey(key) }))
  }

  private async head(key: string): Promise<StoredEntry | undefined> {
    const { HeadObjectCommand } = await loadSdk()
    const client = await this.s3()
    try {
      const h = await client.send(new HeadObjectCommand({ Bucket: this.options.bucket, Key: this.objectKey(key) }))
      const created = h.LastModified ?? new Date(0)
      const codec = h.Metadata?.[METADATA_CODEC]
      return { key, size: h.ContentLength ?? 0, created, lastUsed: created, ...(codec === 'zstd' || codec === 'gzip' ? { compression: codec } : {}) }
    } catch (error) {
      if (httpStatus(error) === 404 || errorName(error) === 'NotFound' || errorName(error) === 'NoSuchKey') return undefined
      throw error
    }
  }

  private s3(): Promise<S3Client> {
    return (this.client ??= loadSdk().then(sdk => new sdk.S3Client(s3ClientConfig(this.options))))
  }

  private objectKey(key: string): string {
    return this.options.prefix === '' ? key : `${this.options.prefix}/${key}`
  }

  /** The entry key of an object key; undefined for objects in deeper "folders". */
  private entryKey(objectKey: string): string | undefined {
    const key = this.options.prefix === '' ? objectKey : objectKey.slice(this.options.prefix.length + 1)
    return key.includes('/') ? undefined : key
  }
}

function httpStatus(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode
}

function errorName(error: unknown): string | undefined {
  return error instanceof Error ? error.name : undefined
}
