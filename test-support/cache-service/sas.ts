// Signed blob URLs (a stand-in for Azure SAS): the URLs handed out by Twirp
// and v1 carry sp (permission), se (expiry) and sig = HMAC(blobId, sp, se),
// checked by the blob endpoint. No bearer token is involved.

import { createHmac, timingSafeEqual } from 'node:crypto'
import type { ServiceContext } from './context.js'

export const AZURE_VERSION = '2025-11-05'
/** IP-style blob URL path: /<account>/<container>/<blob>. */
export const BLOB_PREFIX = '/blobs/cache/'

export type BlobPermission = 'r' | 'cw'

export function signBlob(secret: Buffer, blobId: string, permission: string, expiry: string): string {
  return createHmac('sha256', secret).update(`${blobId}\n${permission}\n${expiry}`).digest('hex')
}

/** Checks a blob URL's sp/se/sig query against the blob id; returns an error message or undefined. */
export function verifyBlobSignature(
  secret: Buffer,
  blobId: string,
  query: URLSearchParams,
  need: 'r' | 'w',
  now: number
): { code: string; message: string } | undefined {
  const sp = query.get('sp')
  const se = query.get('se')
  const sig = query.get('sig')
  if (!sp || !se || !sig) {
    return { code: 'AuthenticationFailed', message: 'Server failed to authenticate the request: missing sp/se/sig.' }
  }
  const expected = Buffer.from(signBlob(secret, blobId, sp, se), 'hex')
  const given = Buffer.from(sig, 'hex')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { code: 'AuthenticationFailed', message: 'Server failed to authenticate the request: signature mismatch.' }
  }
  const expiry = Date.parse(se)
  if (Number.isNaN(expiry) || expiry < now) {
    return { code: 'AuthenticationFailed', message: 'Signed expiry time has passed.' }
  }
  if (!sp.includes(need)) {
    return { code: 'AuthorizationPermissionMismatch', message: 'This request is not authorized to perform this operation using this permission.' }
  }
  return undefined
}

/** A blob URL of this service valid for ctx.urlTtlMs. */
export function signedUrl(ctx: ServiceContext, blobId: string, permission: BlobPermission): string {
  const se = new Date(Date.now() + ctx.urlTtlMs).toISOString().replace(/\.\d{3}Z$/, 'Z')
  const sig = signBlob(ctx.secret, blobId, permission, se)
  return `${ctx.blobBaseUrl ?? ctx.baseUrl}${BLOB_PREFIX.slice(1)}${blobId}?sv=${AZURE_VERSION}&sr=b&sp=${permission}&se=${encodeURIComponent(se)}&sig=${sig}`
}
