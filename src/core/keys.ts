import { createHash } from 'node:crypto'

/**
 * Cache keys, one family per mount:
 *
 *   <prefix>-<id>-<platform>-<files hash>-<content digest>
 *
 * Entries are immutable and a cache mount changes on every build, so the
 * saved key ends with the digest of the saved tree (new content, new key;
 * same content, same key, nothing uploaded). Restoring looks up the newest
 * entry for the same key files first, then the newest for the mount and
 * platform whatever the key files were (a lockfile change keeps most of a
 * package cache useful).
 */
export interface MountKeys {
  /** Everything but the content digest; also the lookup's primary key. */
  base: string
  /** Prefixes tried after the primary key, most specific first. */
  restoreKeys: string[]
}

const MAX_KEY_LENGTH = 512
const DIGEST_LENGTH = 16
/** What a delta adds to its base's key: `-d<sequence>-<12 hex>`. */
const DELTA_SUFFIX_LENGTH = 18

/** A cache id as a key segment: readable, and unique even after replacing characters. */
export function idSegment(id: string): string {
  const slug = id.replace(/^\/+/, '').replace(/[^A-Za-z0-9._-]+/g, '_') || 'root'
  if (slug === id) return slug
  return `${slug}_${createHash('sha256').update(id).digest('hex').slice(0, 8)}`
}

/** `linux/arm64/v8` → `linux-arm64-v8`. */
export function platformSegment(platform: string): string {
  return platform.replace(/[^A-Za-z0-9._]+/g, '-')
}

const NODE_ARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64'
}

/** The runner's platform in Docker's notation (`linux/amd64`). */
export function runnerPlatform(platform: string = process.platform, arch: string = process.arch): string {
  return `${platform}/${NODE_ARCH[arch] ?? arch}`
}

export function mountKeys(prefix: string, id: string, platform: string, filesHash: string): MountKeys {
  const family = `${prefix}-${idSegment(id)}-${platformSegment(platform)}-`
  const base = `${family}${filesHash === '' ? 'nofiles' : filesHash}`
  if (base.length + 1 + DIGEST_LENGTH + DELTA_SUFFIX_LENGTH > MAX_KEY_LENGTH) {
    throw new Error(`cache key for "${id}" would exceed ${MAX_KEY_LENGTH} characters`)
  }
  return { base, restoreKeys: [`${base}-`, family] }
}

/**
 * The restore keys a lookup tries. `exact` (input exact-match): only the
 * first, the entries saved for the same key prefix, id, platform and key
 * files (any content digest: the digest of a tree not yet restored is not
 * known), the ones that make `cache-hit` true; no fallback to an entry of
 * other key files.
 */
export function lookupKeys(keys: MountKeys, exact: boolean): string[] {
  return exact ? keys.restoreKeys.slice(0, 1) : keys.restoreKeys
}

export function saveKey(keys: MountKeys, digest: string): string {
  return `${keys.base}-${digest.slice(0, DIGEST_LENGTH)}`
}

/** True when `matchedKey` was saved for exactly this content. */
export function keyHasDigest(matchedKey: string | undefined, keys: MountKeys, digest: string): boolean {
  return matchedKey === saveKey(keys, digest)
}

/**
 * A delta's key: its base's key, its place in the chain, and a hash of its
 * parent's key and its own digest (the same change on another parent is
 * another entry). It starts with the base's key, so the restore keys that
 * find the base find its newest delta first.
 */
export function deltaKey(chainKeys: readonly string[], digest: string): string {
  const [base] = chainKeys
  const parent = chainKeys.at(-1)
  if (base === undefined || parent === undefined) throw new Error('a delta needs the chain it continues')
  const hash = createHash('sha256').update(parent).update('\n').update(digest).digest('hex').slice(0, 12)
  return `${base}-d${chainKeys.length}-${hash}`
}
